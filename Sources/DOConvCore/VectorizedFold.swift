import Dispatch

extension DOConvLayer {
    /// The layer's composite kernel in OIHW order (Cout, Cin/g, M, N), computed with SIMD
    /// over contiguous memory and spread over the cores for large layers.
    ///
    /// Same arithmetic as `ScalarFold.kernel(of:)` up to the order of float additions.
    public func foldedKernel(maxThreads: Int = ParallelWork.defaultThreads) -> Tensor {
        let g = geometry
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        var out = [Float](repeating: 0, count: g.kernelCount)
        w.withUnsafeBufferPointer { wBuf in
            out.withUnsafeMutableBufferPointer { outBuf in
                guard let wp = wBuf.baseAddress, let op = outBuf.baseAddress else { return }
                let threads = ParallelWork.threads(forMultiplyAdds: g.kernelCount * g.depthMultiplier, max: maxThreads)
                switch (layout, d) {
                case (.pytorch, nil):
                    op.update(from: wp, count: g.kernelCount) // a reshape of W
                case let (.pytorch, d?):
                    PyTorchFoldKernel.run(d: d, w: wp, out: op, geometry: g, threads: threads)
                case (.keras, _):
                    KerasFoldKernel.run(d: d, w: wp, out: op, geometry: g, threads: threads)
                }
            }
        }
        return try! Tensor(shape: shape, values: out) // counts equal by construction
    }
}

/// Splits work over the cores when a layer is big enough for threads to pay.
public enum ParallelWork {
    /// All cores of the machine.
    public static let defaultThreads = max(1, System.activeProcessorCount)

    /// Threads worth starting for a job of this many multiply-adds.
    static func threads(forMultiplyAdds work: Int, max limit: Int) -> Int {
        Swift.max(1, Swift.min(limit, work / 2_000_000))
    }

    /// Runs `body` on `count` contiguous slices of `0..<total`, concurrently when count > 1.
    static func forEachSlice(of total: Int, count: Int, _ body: (Range<Int>) -> Void) {
        let count = Swift.max(1, Swift.min(count, total))
        if count == 1 { body(0..<total); return }
        DispatchQueue.concurrentPerform(iterations: count) { k in
            body((total * k / count)..<(total * (k + 1) / count))
        }
    }
}

/// einsum('ims,ois->oim') as one small matrix-vector product per output row p = (o, i):
/// out[p, :MN] = D[i] (MN x Dmul) * W[p, :Dmul]. D[i] is repacked column-major in 8-lane
/// blocks so each row is Dmul broadcast-multiply-adds per block.
enum PyTorchFoldKernel {
    typealias Lanes = SIMD8<Float>

    static func run(d: [Float], w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, geometry g: DOConvGeometry, threads: Int) {
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        let blocks = (mn + Lanes.scalarCount - 1) / Lanes.scalarCount
        let padded = blocks * Lanes.scalarCount
        // columns[(i * Dmul + s) * padded + m] = D[i, m, s], zero past MN.
        var columns = [Float](repeating: 0, count: cin * dmul * padded)
        for i in 0..<cin {
            for m in 0..<mn {
                for s in 0..<dmul { columns[(i * dmul + s) * padded + m] = d[(i * mn + m) * dmul + s] }
            }
        }
        let rows = g.outChannelsPerGroup * cin
        columns.withUnsafeBufferPointer { colBuf in
            let cols = UnsafeRawPointer(colBuf.baseAddress!)
            ParallelWork.forEachSlice(of: rows, count: threads) { slice in
                guard !slice.isEmpty else { return }
                var i = slice.lowerBound % cin
                let sliceEnd = slice.upperBound * mn
                for p in slice {
                    let wRow = w + p * dmul
                    let dBase = cols + i * dmul * padded * 4
                    let outRow = UnsafeMutableRawPointer(out + p * mn)
                    // Full-width stores may spill into the following rows, which this slice
                    // writes later anyway; never past the slice's own end.
                    let rowStart = p * mn
                    for b in 0..<blocks {
                        var acc = Lanes()
                        for s in 0..<dmul {
                            let column = dBase.loadUnaligned(fromByteOffset: ((s * padded) + b * 8) * 4, as: Lanes.self)
                            acc += Lanes(repeating: wRow[s]) * column
                        }
                        let valid = min(8, mn - b * 8)
                        if valid == 8 || rowStart + b * 8 + 8 <= sliceEnd {
                            outRow.storeBytes(of: acc, toByteOffset: b * 32, as: Lanes.self)
                        } else {
                            for lane in 0..<valid { outRow.storeBytes(of: acc[lane], toByteOffset: (b * 8 + lane) * 4, as: Float.self) }
                        }
                    }
                    i += 1
                    if i == cin { i = 0 }
                }
            }
        }
    }
}

/// einsum('msi,sio->mio') then the reshape to HWIO and the transpose to OIHW, fused:
/// for each D channel i, a tile of MN rows of Cout/g values is accumulated with SIMD over the
/// contiguous o axis, then written out transposed so each (o, c) kernel gets MN contiguous values.
enum KerasFoldKernel {
    typealias Lanes = SIMD8<Float>

    static func run(d: [Float]?, w: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, geometry g: DOConvGeometry, threads: Int) {
        let (mn, dmul, cin, cout) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels)
        let outPerGroup = g.outChannelsPerGroup
        let inPerGroup = g.inChannelsPerGroup
        let vectorEnd = outPerGroup - outPerGroup % Lanes.scalarCount
        ParallelWork.forEachSlice(of: cin, count: threads) { slice in
            var tile = [Float](repeating: 0, count: mn * outPerGroup)
            tile.withUnsafeMutableBufferPointer { tileBuf in
                let t = tileBuf.baseAddress!
                for i in slice {
                    for m in 0..<mn {
                        let row = t + m * outPerGroup
                        row.update(repeating: 0, count: outPerGroup)
                        for s in 0..<dmul {
                            let coefficient: Float = d.map { $0[(m * dmul + s) * cin + i] } ?? (m == s ? 1 : 0)
                            let wRow = w + (s * cin + i) * outPerGroup
                            let factor = Lanes(repeating: coefficient)
                            var o = 0
                            while o < vectorEnd {
                                let acc = UnsafeRawPointer(row + o).loadUnaligned(as: Lanes.self)
                                let wv = UnsafeRawPointer(wRow + o).loadUnaligned(as: Lanes.self)
                                UnsafeMutableRawPointer(row + o).storeBytes(of: acc + factor * wv, as: Lanes.self)
                                o += 8
                            }
                            while o < outPerGroup { row[o] += coefficient * wRow[o]; o += 1 }
                        }
                    }
                    // E[m, i, o] sits at HWIO flat (m, c, o') with c * Cout + o' = i * Cout/g + o.
                    for o in 0..<outPerGroup {
                        let flat = i * outPerGroup + o
                        let (c, oo) = (flat / cout, flat % cout)
                        let dst = out + (oo * inPerGroup + c) * mn
                        for m in 0..<mn { dst[m] = t[m * outPerGroup + o] }
                    }
                }
            }
        }
    }
}
