// Built with -target-cpu haswell (Package.swift): this module's copy of DoubleGEMM.swift (a
// symbolic link) compiles for 256-bit vectors with fused multiply-add. Only use it on a CPU
// that has AVX2 and FMA (CCPUSupport says so).
import DOConvGraphKernels

extension TileMultiplier {
    /// The GEMM tile with AVX2 and FMA, or nil when this build has none (not x86-64).
    public static let fused: TileMultiplier? = {
        #if arch(x86_64)
        return TileMultiplier(name: "avx2-fma", panelColumns: DoubleGEMMTile.panelColumns) { operands, rows, columns, scratch in
            DoubleGEMMTile.multiply(operands, rows: rows, columns: columns, scratch: scratch)
        }
        #else
        return nil
        #endif
    }()
}
