import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import DOConvGraph
import DOConvGraphKernels
import DOConvGraphKernelsAVX2
import DOConvGraphKernelsAVX512
import CCPUSupport

/// The executor's GEMM and permutes against plain loops, on shapes that cross every tile and
/// panel edge, with each option (B transposed, a row bias, accumulation) and thread count.
final class MatrixMultiplyTests: XCTestCase {
    var random = SystemRandomNumberGenerator()

    func randomMatrix(_ count: Int) -> [Double] { (0..<count).map { _ in Double.random(in: -1...1, using: &random) } }

    /// The builds this machine can run: portable, AVX2 + FMA and AVX-512 where the CPU has them.
    var multipliers: [TileMultiplier] {
        [.portable] + [doconv_cpu_has_avx2_fma() != 0 ? TileMultiplier.fused : nil, doconv_cpu_has_avx512() != 0 ? TileMultiplier.avx512 : nil].compactMap { $0 }
    }

    /// The AVX2 and AVX-512 builds run every element's sum as the same chain of fused
    /// multiply-adds in the same order: their results are the same bits (the portable build,
    /// with separate multiplies and adds, is not).
    func testAVX2AndAVX512GiveTheSameBits() throws {
        guard doconv_cpu_has_avx512() != 0, let avx512 = TileMultiplier.avx512, let avx2 = TileMultiplier.fused else {
            throw XCTSkip("this CPU has no AVX-512")
        }
        for (m, n, k, transposed) in [(70, 201, 300, false), (131, 45, 17, true), (256, 520, 600, false), (5, 17, 3, true)] {
            let a = randomMatrix(m * k), b = randomMatrix(k * n), bias = randomMatrix(m)
            var outputs: [[Double]] = []
            for multiplier in [avx2, avx512] {
                for threads in [1, 2] {
                    var c = [Double](repeating: 0, count: m * n)
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            bias.withUnsafeBufferPointer { bias in
                                c.withUnsafeMutableBufferPointer { c in
                                    MatrixMultiply.multiply(multiplier, m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: transposed ? k : n,
                                                            transposedB: transposed, c: c.baseAddress!, ldc: n, rowBias: bias.baseAddress, threads: threads)
                                }
                            }
                        }
                    }
                    outputs.append(c)
                }
            }
            XCTAssertEqual(outputs[0], outputs[2], "\(m)x\(n)x\(k): AVX2 and AVX-512 differ")
            XCTAssertEqual(outputs[2], outputs[3], "\(m)x\(n)x\(k): the thread count changed AVX-512's result")
        }
    }

    func testProductsMatchPlainLoopsForEveryOption() {
        // Rows over a tile (64), columns over a tile (192) and not a multiple of 8, K over a
        // block (256); and a shallow K, which makes taller tiles.
        for (m, n, k) in [(70, 201, 300), (131, 45, 17), (3, 5, 1)] {
            let a = randomMatrix(m * k), b = randomMatrix(k * n), bias = randomMatrix(m), start = randomMatrix(m * n)
            let bt = (0..<(n * k)).map { b[($0 % k) * n + $0 / k] } // B transposed, row j = column j
            for multiplier in multipliers {
                for transposed in [false, true] {
                    for withBias in [false, true] {
                        for accumulate in [false, true] {
                            var results: [[Double]] = []
                            for threads in [1, 3] {
                                var c = start
                                a.withUnsafeBufferPointer { a in
                                    (transposed ? bt : b).withUnsafeBufferPointer { b in
                                        bias.withUnsafeBufferPointer { bias in
                                            c.withUnsafeMutableBufferPointer { c in
                                                MatrixMultiply.multiply(multiplier, m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: b.baseAddress!,
                                                                        ldb: transposed ? k : n, transposedB: transposed, c: c.baseAddress!, ldc: n,
                                                                        accumulate: accumulate, rowBias: withBias ? bias.baseAddress : nil, threads: threads)
                                            }
                                        }
                                    }
                                }
                                results.append(c)
                            }
                            XCTAssertEqual(results[0], results[1], "\(multiplier.name) \(m)x\(n)x\(k): the thread count changed the result")
                            var worst = 0.0
                            for i in 0..<m {
                                for j in 0..<n {
                                    var sum = 0.0
                                    for p in 0..<k { sum += a[i * k + p] * b[p * n + j] }
                                    let expected = (accumulate ? start[i * n + j] : 0) + sum + (withBias ? bias[i] : 0)
                                    worst = max(worst, abs(expected - results[0][i * n + j]))
                                }
                            }
                            XCTAssertLessThan(worst, 1e-12, "\(multiplier.name) \(m)x\(n)x\(k) transposed \(transposed) bias \(withBias) accumulate \(accumulate)")
                        }
                    }
                }
            }
        }
    }

    func testPermuteMatchesIndexArithmetic() {
        let shape = [3, 20, 1, 37]
        let labels: [Character] = ["a", "b", "c", "d"]
        let data = randomMatrix(shape.reduce(1, *))
        let strides = TensorValue.strides(of: shape)
        for target in [["d", "a", "c", "b"], ["b", "d", "a", "c"], ["a", "c", "d", "b"], ["c", "a", "b", "d"]] as [[Character]] {
            let result = EinsumContraction.permute(data, labels: labels, shape: shape, to: target)
            let dims = target.map { shape[labels.firstIndex(of: $0)!] }
            for flat in 0..<data.count {
                let index = TensorValue.index(of: flat, in: dims)
                var source = 0
                for (axis, label) in target.enumerated() { source += index[axis] * strides[labels.firstIndex(of: label)!] }
                if result[flat] != data[source] { return XCTFail("permute to \(String(target)) differs at \(index)") }
            }
        }
    }

    func testShortAndLongContractionsAgree() throws {
        // One summed label of 9 (summed in place) and of 80 (through the GEMM), against a plain loop.
        for depth in [9, 80] {
            let (i, m, o) = (7, 9, 20)
            let d = TensorValue(.float, shape: [i, m, depth], floats: randomMatrix(i * m * depth))
            let w = TensorValue(.float, shape: [o, i, depth], floats: randomMatrix(o * i * depth))
            let result = try XCTUnwrap(EinsumContraction.contract("ims,ois->oim", [d, w], threads: 2))
            XCTAssertEqual(result.shape, [o, i, m])
            let (dv, wv, rv) = (d.doubles, w.doubles, result.doubles)
            for a in 0..<o {
                for b in 0..<i {
                    for c in 0..<m {
                        var sum = 0.0
                        for s in 0..<depth { sum += dv[(b * m + c) * depth + s] * wv[(a * i + b) * depth + s] }
                        XCTAssertEqual(rv[(a * i + b) * m + c], sum, accuracy: 1e-12)
                    }
                }
            }
        }
    }
}

/// The allocator setting the verifier's end-to-end runs rely on to reuse activations.
final class ActivationMemoryTests: XCTestCase {
    func testTheAllocatorKeepsFreedMemory() throws {
        #if canImport(Glibc)
        // A sanitizer's allocator replaces glibc's, and its mallopt takes nothing.
        let symbols: [String] = ["__asan_init", "__tsan_init"]
        let sanitized = symbols.contains { name in dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) != nil }
        try XCTSkipIf(sanitized, "glibc's allocator is replaced by the sanitizer's")
        XCTAssertTrue(ActivationMemory.keepFreedMemory(), "mallopt did not take the thresholds")
        #endif
    }
}

/// The im2col matrix the GEMM packs from the image: every panel it packs holds what a matrix
/// built by index arithmetic holds, across strides, dilations, padding on every side, output
/// rows that a panel crosses, and K blocks and column ranges that start anywhere.
final class Im2ColViewTests: XCTestCase {
    func testPanelsMatchTheMatrixBuiltByIndexArithmetic() {
        var random = SystemRandomNumberGenerator()
        let cases: [(c: Int, h: Int, w: Int, kernel: (Int, Int), stride: (Int, Int), dilation: (Int, Int), pad: (Int, Int))] = [
            (3, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1)),
            (2, 12, 13, (3, 3), (1, 1), (2, 3), (2, 3)),
            (4, 10, 9, (3, 2), (2, 3), (1, 1), (0, 1)),
            (2, 7, 40, (1, 5), (1, 2), (1, 2), (0, 4)),
            (1, 5, 5, (7, 7), (1, 1), (1, 1), (3, 3)),
        ]
        for (channels, height, width, kernel, stride, dilation, pad) in cases {
            let outH = (height + 2 * pad.0 - dilation.0 * (kernel.0 - 1) - 1) / stride.0 + 1
            let outW = (width + 2 * pad.1 - dilation.1 * (kernel.1 - 1) - 1) / stride.1 + 1
            let image = (0..<(channels * height * width)).map { _ in Double.random(in: -1...1, using: &random) }
            let k = channels * kernel.0 * kernel.1, n = outH * outW
            var matrix = [Double](repeating: 0, count: k * n)
            for c in 0..<channels {
                for i in 0..<kernel.0 {
                    for j in 0..<kernel.1 {
                        for oy in 0..<outH {
                            for ox in 0..<outW {
                                let y = oy * stride.0 + i * dilation.0 - pad.0, x = ox * stride.1 + j * dilation.1 - pad.1
                                let row = (c * kernel.0 + i) * kernel.1 + j
                                matrix[row * n + oy * outW + ox] = y >= 0 && y < height && x >= 0 && x < width ? image[(c * height + y) * width + x] : 0
                            }
                        }
                    }
                }
            }
            image.withUnsafeBufferPointer { image in
                let view = Im2ColView(image: image.baseAddress!, height: height, width: width, kernel: kernel, stride: stride, dilation: dilation,
                                      padBegin: pad, outputWidth: outW)
                let panel = 16
                for (k0, depth) in [(0, k), (1, min(5, k - 1)), (k / 2, k - k / 2)] where depth > 0 {
                    for columns in [0..<n, 3..<min(n, 45), (n / 2)..<n] where !columns.isEmpty {
                        let panels = (columns.count + panel - 1) / panel
                        var packed = [Double](repeating: .nan, count: panels * depth * panel)
                        packed.withUnsafeMutableBufferPointer { view.pack(k0: k0, depth: depth, columns: columns, panelColumns: panel, blockRows: 4, into: $0.baseAddress!) }
                        for p in 0..<depth {
                            for q in 0..<(panels * panel) {
                                let column = columns.lowerBound + q
                                let expected = q < columns.count ? matrix[(k0 + p) * n + column] : 0
                                let got = packed[((q / panel) * depth + p) * panel + q % panel]
                                XCTAssertEqual(got, expected, "\(channels)x\(height)x\(width) kernel \(kernel) row \(k0 + p) column \(column)")
                            }
                        }
                    }
                }
            }
        }
    }
}
