// Built for AVX-512 (Package.swift): this module's copy of DoubleGEMM.swift (a symbolic link)
// compiles for 512-bit vectors with fused multiply-add. Only use it on a CPU that has
// AVX-512 F, DQ, BW and VL and an OS that saves the ZMM registers (CCPUSupport says so).
import DOConvGraphKernels

extension TileMultiplier {
    /// The GEMM tile with AVX-512, or nil when this build has none (not x86-64).
    public static let avx512: TileMultiplier? = {
        #if arch(x86_64)
        return TileMultiplier(name: "avx512", panelColumns: DoubleGEMMTile.panelColumns) { operands, rows, columns, scratch in
            DoubleGEMMTile.multiply(operands, rows: rows, columns: columns, scratch: scratch)
        }
        #else
        return nil
        #endif
    }()
}
