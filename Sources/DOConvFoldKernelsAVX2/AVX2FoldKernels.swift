// Built with -target-cpu haswell (Package.swift): the generic kernels of DOConvFoldKernels
// are inlined here and compiled for 256-bit vectors with fused multiply-add. Only call this
// set on a CPU that has AVX2 and FMA (CCPUSupport says so).
import DOConvFoldKernels

extension FoldKernelSet {
    /// The kernels with AVX2 and FMA, or nil when this build has none (not x86-64).
    public static let avx2FMA: FoldKernelSet? = {
        #if arch(x86_64)
        return FoldKernelSet(
            name: "avx2-fma",
            pytorch: { PyTorchLayoutFold.fold(AVX2FMATarget.self, d: $0, table: $1, w: $2, out: $3, channels: $4, $5) },
            keras: { KerasLayoutFold.fold(AVX2FMATarget.self, d: $0, w: $1, out: $2, channels: $3, $4) })
        #else
        return nil
        #endif
    }()
}
