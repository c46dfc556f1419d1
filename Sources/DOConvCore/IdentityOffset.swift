/// The fixed identity offset the frameworks add to the trained D before composing:
/// I[m, s] = 1 if s < MN * floor(Dmul / MN) and s mod MN == m, else 0, tiled over channels.
///
/// Exported graphs compute D + I themselves (an `Add`, or a pre-folded constant); weight
/// files store only the trained D, so their adapters add it here.
public enum IdentityOffset {
    /// Adds I to `d` laid out as `layout` stores D.
    public static func add<T: BinaryFloatingPoint>(to d: inout [T], layout: DOConvLayout, geometry g: DOConvGeometry) {
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        precondition(d.count == g.dCount, "D does not match the geometry")
        let tiled = mn * (dmul / mn)
        for s in 0..<tiled {
            let m = s % mn
            switch layout {
            case .pytorch: // (Cin, MN, Dmul)
                for i in 0..<cin { d[(i * mn + m) * dmul + s] += 1 }
            case .keras: // (MN, Dmul, Cin)
                let row = (m * dmul + s) * cin
                for i in 0..<cin { d[row + i] += 1 }
            }
        }
    }
}
