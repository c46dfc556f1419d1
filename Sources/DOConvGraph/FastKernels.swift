#if canImport(Glibc)
import Glibc
#endif
import CCPUSupport
import DOConvGraphKernels
import DOConvGraphKernelsAVX2

/// The executor's optimized float64 kernels: which GEMM build runs, and on how many threads.
enum FastKernels {
    /// AVX2 + FMA where the CPU has both, else the portable build.
    static let multiplier: TileMultiplier = {
        if doconv_cpu_has_avx2_fma() != 0, let fused = TileMultiplier.fused { return fused }
        return .portable
    }()

    /// All online cores, or `DOCONV_THREADS` (results are the same for any count).
    static let threads: Int = {
        if let text = getenv("DOCONV_THREADS").map({ String(cString: $0) }), let n = Int(text), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()
}
