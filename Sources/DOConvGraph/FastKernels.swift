#if canImport(Glibc)
import Glibc
#endif
import CCPUSupport
import DOConvGraphKernels
import DOConvGraphKernelsAVX2
import DOConvGraphKernelsAVX512

/// The executor's optimized float64 kernels: which GEMM build runs, and on how many threads.
enum FastKernels {
    /// AVX-512 where the CPU has it, else AVX2 + FMA where it has both, else the portable
    /// build. `DOCONV_GEMM=avx512|avx2|portable` picks one (the benchmarks measure each build
    /// on one machine); a build the CPU cannot run is never picked.
    static let multiplier: TileMultiplier = {
        let avx512 = doconv_cpu_has_avx512() != 0 ? TileMultiplier.avx512 : nil
        let avx2 = doconv_cpu_has_avx2_fma() != 0 ? TileMultiplier.fused : nil
        switch getenv("DOCONV_GEMM").map({ String(cString: $0) }) {
        case "portable": return .portable
        case "avx2": return avx2 ?? .portable
        default: return avx512 ?? avx2 ?? .portable
        }
    }()

    /// All online cores, or `DOCONV_THREADS` (results are the same for any count).
    static let threads: Int = {
        if let text = getenv("DOCONV_THREADS").map({ String(cString: $0) }), let n = Int(text), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()
}
