// verify-equivalence's float64 GEMM on the shapes its convolutions run (im2col: M = output
// channels, K = input channels x kernel area, N = output pixels), in each build this CPU can
// run (portable, AVX2 + FMA, AVX-512), on all cores, as GFLOP/s; bench/gemm_bench.py prints
// them next to numpy's dgemm (OpenBLAS) on the same shapes.
//
// A package target only when DOCONV_BENCH is set (bench/run.sh style): never in the build or tests.
//
//   gemm-bench [--rounds N]      prints one JSON object per line: {shape, build, seconds, gflops}
import CCPUSupport
import DOConvGraphKernels
import DOConvGraphKernelsAVX2
import DOConvGraphKernelsAVX512
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// (name, M, N, K): ResNet-50 at 224x224, DeepLabv3 (dilated 3x3, output stride 8) at
/// 256x512, and a Faster R-CNN FPN level.
let shapes: [(name: String, m: Int, n: Int, k: Int)] = [
    ("resnet50 layer1 3x3 64", 64, 56 * 56, 64 * 9),
    ("resnet50 layer3 3x3 256", 256, 14 * 14, 256 * 9),
    ("resnet50 layer4 1x1 2048", 2048, 7 * 7, 512),
    ("deeplabv3 layer4 dilated 3x3 512", 512, 32 * 64, 512 * 9),
    ("deeplabv3 aspp 3x3 256", 256, 32 * 64, 2048 * 9),
    ("fasterrcnn fpn 3x3 256", 256, 50 * 67, 256 * 9),
]

let rounds = CommandLine.arguments.firstIndex(of: "--rounds").flatMap { Int(CommandLine.arguments[$0 + 1]) } ?? 5
let threads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
let builds: [TileMultiplier] = [.portable] + [doconv_cpu_has_avx2_fma() != 0 ? TileMultiplier.fused : nil,
                                              doconv_cpu_has_avx512() != 0 ? TileMultiplier.avx512 : nil].compactMap { $0 }
var generator = SystemRandomNumberGenerator()
for shape in shapes {
    let a = (0..<(shape.m * shape.k)).map { _ in Double.random(in: -1...1, using: &generator) }
    let b = (0..<(shape.k * shape.n)).map { _ in Double.random(in: -1...1, using: &generator) }
    var c = [Double](repeating: 0, count: shape.m * shape.n)
    for build in builds {
        var times: [Double] = []
        for _ in 0..<rounds {
            let start = DispatchTime.now().uptimeNanoseconds
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        MatrixMultiply.multiply(build, m: shape.m, n: shape.n, k: shape.k, a: a.baseAddress!, lda: shape.k, b: b.baseAddress!,
                                                ldb: shape.n, c: c.baseAddress!, ldc: shape.n, threads: threads)
                    }
                }
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let median = times.sorted()[times.count / 2]
        let gflops = 2.0 * Double(shape.m * shape.n * shape.k) / median / 1e9
        print("{\"shape\": \"\(shape.name)\", \"m\": \(shape.m), \"n\": \(shape.n), \"k\": \(shape.k), \"build\": \"\(build.name)\", \"seconds\": \(median), \"gflops\": \(gflops)}")
    }
}
