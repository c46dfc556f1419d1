/// einsum('msi,sio->mio'), Keras's DO-Conv composition, then the reshape to HWIO and the
/// transpose to OIHW, fused: for each D channel i, a tile of MN rows of Cout/g values is
/// accumulated in registers, eight output channels at a time over the contiguous o axis of
/// W, then written out transposed so each (o, c) kernel gets MN contiguous values.
///
/// Each element is the same float sum in the same order whatever the split of the channels.
public enum KerasLayoutFold {
    public typealias Lanes = SIMD8<Float>

    /// Folds the kernel values that D channels `channels` produce. A nil `d` is the identity
    /// (a 1x1 layer, which has no D).
    @inlinable
    public static func fold<T: VectorTarget>(_: T.Type, d: UnsafeRawPointer?, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>,
                                               channels: Range<Int>, _ dims: FoldDimensions) {
        let (mn, dmul, cin, cout) = (dims.kernelArea, dims.depthMultiplier, dims.inChannels, dims.outChannels)
        let outPerGroup = dims.outChannelsPerGroup
        let inPerGroup = dims.inChannelsPerGroup
        let vectorEnd = outPerGroup - outPerGroup % Lanes.scalarCount
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: mn * outPerGroup)
        let coefficients = UnsafeMutablePointer<Float>.allocate(capacity: mn * dmul)
        defer { tile.deallocate(); coefficients.deallocate() }
        for i in channels {
            // D[m, s, i] for this channel, gathered once.
            for m in 0..<mn {
                for s in 0..<dmul {
                    coefficients[m * dmul + s] = d.map { $0.loadUnaligned(fromByteOffset: ((m * dmul + s) * cin + i) * 4, as: Float.self) } ?? (m == s ? 1 : 0)
                }
            }
            let wChannel = w + i * outPerGroup * 4
            let wStride = cin * outPerGroup * 4 // from W[s, i, :] to W[s + 1, i, :]
            for m in 0..<mn {
                let row = tile + m * outPerGroup
                let coefficientRow = coefficients + m * dmul
                var o = 0
                while o < vectorEnd {
                    var acc = Lanes()
                    for s in 0..<dmul {
                        acc = T.multiplyAdd(acc, Lanes(repeating: coefficientRow[s]), wChannel.loadUnaligned(fromByteOffset: s * wStride + o * 4, as: Lanes.self))
                    }
                    UnsafeMutableRawPointer(row + o).storeBytes(of: acc, as: Lanes.self)
                    o += Lanes.scalarCount
                }
                while o < outPerGroup {
                    var acc: Float = 0
                    for s in 0..<dmul { acc += coefficientRow[s] * wChannel.loadUnaligned(fromByteOffset: s * wStride + o * 4, as: Float.self) }
                    row[o] = acc
                    o += 1
                }
            }
            // E[m, i, o] sits at HWIO flat (m, c, o') with c * Cout + o' = i * Cout/g + o.
            for o in 0..<outPerGroup {
                let flat = i * outPerGroup + o
                let (c, oo) = (flat / cout, flat % cout)
                let dst = out + (oo * inPerGroup + c) * mn
                for m in 0..<mn { dst[m] = tile[m * outPerGroup + o] }
            }
        }
    }
}
