internal import CCPUSupport
import DOConvFoldKernels
import DOConvFoldKernelsAVX2

extension FoldKernelSet {
    /// The fastest kernels this CPU runs: AVX2 with fused multiply-add where the CPU has both,
    /// else the portable ones. Decided once per process.
    public static let fastest: FoldKernelSet = {
        if doconv_cpu_has_avx2_fma() != 0, let set = avx2FMA { return set }
        return portable
    }()
}

extension FoldKernelSet {
    /// Every kernel set this CPU runs, the portable one first.
    public static var available: [FoldKernelSet] {
        fastest.name == portable.name ? [portable] : [portable, fastest]
    }
}
