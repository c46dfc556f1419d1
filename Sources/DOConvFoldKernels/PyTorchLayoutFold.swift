import CCPUSupport

/// einsum('ims,ois->oim'), PyTorch's DO-Conv composition: each kernel row p = (o, i) is a
/// small matrix-vector product, out[p, :MN] = D[i] (MN x Dmul) * W[p, :Dmul], i = p mod Cin.
///
/// Rows are taken eight at a time along i, so the eight W rows and the eight output rows of
/// a block are each one contiguous run (two sequential streams over the whole layer) and the
/// SIMD lanes are the eight rows: every lane does useful work whatever MN is. D is repacked
/// once per layer with the eight channels of a block interleaved. Rows that do not fill a
/// block, and layers whose D rows serve fewer than four output channels (depthwise ones,
/// where repacking D would cost more than it saves), are dot products over D's rows.
///
/// Each element is the same float sum in the same order whatever the split of the output
/// channels, so results do not depend on the thread count.
public enum PyTorchLayoutFold {
    public typealias Lanes = SIMD8<Float>
    public typealias Quad = SIMD4<Float>

    /// Input channels in one block, one per lane.
    @inlinable public static var blockWidth: Int { 8 }

    /// Whether the layer is folded in channel blocks (with an interleaved D) rather than as
    /// dot products.
    @inlinable
    public static func usesBlocks(_ dims: FoldDimensions) -> Bool {
        dims.outChannelsPerGroup >= 4 && dims.inChannels >= blockWidth
    }

    /// Elements of the interleaved D table `interleave` fills.
    @inlinable
    public static func tableCount(_ dims: FoldDimensions) -> Int {
        dims.inChannels / blockWidth * dims.kernelArea * dims.depthMultiplier
    }

    /// table[(b * MN + m) * Dmul + s] = D[8b ..< 8b + 8, m, s].
    public static func interleave(d: UnsafeRawPointer, into table: UnsafeMutablePointer<Lanes>, _ dims: FoldDimensions) {
        let (mn, dmul) = (dims.kernelArea, dims.depthMultiplier)
        for b in 0..<(dims.inChannels / blockWidth) {
            for m in 0..<mn {
                for s in 0..<dmul {
                    var v = Lanes()
                    for lane in 0..<blockWidth {
                        v[lane] = d.loadUnaligned(fromByteOffset: (((blockWidth * b + lane) * mn + m) * dmul + s) * 4, as: Float.self)
                    }
                    (table + (b * mn + m) * dmul + s).initialize(to: v)
                }
            }
        }
    }

    /// Folds the kernel rows of output channels `channels` (all their input channels).
    /// `table` is the interleaved D when `usesBlocks`, else ignored.
    @inlinable
    public static func fold<T: VectorTarget>(_ target: T.Type, d: UnsafeRawPointer, table: UnsafePointer<Lanes>, w: UnsafeRawPointer,
                                             out: UnsafeMutablePointer<Float>, channels: Range<Int>, _ dims: FoldDimensions) {
        let (mn, dmul, cin) = (dims.kernelArea, dims.depthMultiplier, dims.inChannels)
        guard usesBlocks(dims) else {
            for p in (channels.lowerBound * cin)..<(channels.upperBound * cin) {
                dotRow(T.self, d: d, w: w, out: out, row: p, dims)
            }
            return
        }
        let blocks = cin / blockWidth
        let transposed = UnsafeMutablePointer<Lanes>.allocate(capacity: 2 * dmul)
        defer { transposed.deallocate() }
        var o = channels.lowerBound
        while o < channels.upperBound {
            // Two output channels at once where registers allow: each D vector loaded then
            // serves two multiply-adds, which halves the traffic of the interleaved table.
            let pair = T.pairsOutputChannels && o + 1 < channels.upperBound
            for b in 0..<blocks {
                let p = o * cin + blockWidth * b
                let (dBlock, wBlock, outBlock) = (table + b * mn * dmul, w + p * dmul * 4, out + p * mn)
                prefetch(w: wBlock, out: outBlock, rowsApart: pair ? cin : 0, mn: mn, dmul: dmul)
                if pair {
                    pairOfBlocks(T.self, d: dBlock, w: wBlock, out: outBlock, rowsApart: cin, mn: mn, dmul: dmul, transposed: transposed)
                } else {
                    block(T.self, d: dBlock, w: wBlock, out: outBlock, mn: mn, dmul: dmul, transposed: transposed)
                }
            }
            for oo in o...(pair ? o + 1 : o) {
                for i in (blockWidth * blocks)..<cin { dotRow(T.self, d: d, w: w, out: out, row: oo * cin + i, dims) }
            }
            o += pair ? 2 : 1
        }
    }

    /// Blocks folded ahead of the one being folded, whose W and output lines are asked for.
    @inlinable static var prefetchDistance: Int { 2 }

    /// Asks for the W and output lines of the block `prefetchDistance` blocks ahead (of both
    /// channels of a pair), so the multiply-adds of this block run while memory delivers
    /// them: without it, a layer larger than the caches folds at half the speed, compute and
    /// memory stalls taking turns. Lines past the end of the tensor are harmless hints.
    @inlinable @inline(__always)
    static func prefetch(w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, rowsApart: Int, mn: Int, dmul: Int) {
        let ahead = prefetchDistance * blockWidth
        let (wAhead, outAhead) = (w + ahead * dmul * 4, UnsafeRawPointer(out + ahead * mn))
        var line = 0
        while line < blockWidth * max(dmul, mn) * 4 {
            if line < blockWidth * dmul * 4 { doconv_prefetch_read(wAhead + line) }
            if line < blockWidth * mn * 4 { doconv_prefetch_write(outAhead + line) }
            if rowsApart > 0 {
                if line < blockWidth * dmul * 4 { doconv_prefetch_read(wAhead + rowsApart * dmul * 4 + line) }
                if line < blockWidth * mn * 4 { doconv_prefetch_write(outAhead + rowsApart * mn * 4 + line) }
            }
            line += 64
        }
    }

    /// Eight consecutive rows: W's 8 x Dmul block is transposed so lane k holds row k, then
    /// each output m is Dmul lane-wise multiply-adds, four (or five) m at a time so the
    /// additions form independent chains, and the results are transposed back into the rows.
    ///
    /// Every output is one chain over s in increasing order, as in `pairOfBlocks`, so a
    /// row's values do not depend on whether it was folded alone or in a pair.
    @inlinable @inline(__always)
    static func block<T: VectorTarget>(_: T.Type, d: UnsafePointer<Lanes>, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>,
                                       mn: Int, dmul: Int, transposed wt: UnsafeMutablePointer<Lanes>) {
        transposeRows(w, dmul: dmul, into: wt)
        // MN = 9, 25, 49 end with a group of five rather than a lone m waiting on its chain.
        let fiveAtEnd = mn % 4 == 1 && mn >= 5
        let fourEnd = fiveAtEnd ? mn - 5 : mn - mn % 4
        var m = 0
        while m < fourEnd {
            var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
            let r = d + m * dmul
            for s in 0..<dmul {
                let x = wt[s]
                a0 = T.multiplyAdd(a0, r[s], x)
                a1 = T.multiplyAdd(a1, r[dmul + s], x)
                a2 = T.multiplyAdd(a2, r[2 * dmul + s], x)
                a3 = T.multiplyAdd(a3, r[3 * dmul + s], x)
            }
            storeColumns(a0, a1, a2, a3, out: out + m, rowLength: mn)
            m += 4
        }
        if fiveAtEnd {
            var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes(), a4 = Lanes()
            let r = d + m * dmul
            for s in 0..<dmul {
                let x = wt[s]
                a0 = T.multiplyAdd(a0, r[s], x)
                a1 = T.multiplyAdd(a1, r[dmul + s], x)
                a2 = T.multiplyAdd(a2, r[2 * dmul + s], x)
                a3 = T.multiplyAdd(a3, r[3 * dmul + s], x)
                a4 = T.multiplyAdd(a4, r[4 * dmul + s], x)
            }
            storeColumns(a0, a1, a2, a3, out: out + m, rowLength: mn)
            scatter(a4, out: out + m + 4, rowLength: mn)
            m += 5
        }
        while m < mn {
            var a = Lanes()
            let r = d + m * dmul
            for s in 0..<dmul { a = T.multiplyAdd(a, r[s], wt[s]) }
            scatter(a, out: out + m, rowLength: mn)
            m += 1
        }
    }

    /// `block` for output channels o and o + 1 together (their rows `rowsApart` rows apart):
    /// eight accumulators, each D vector loaded once for both.
    @inlinable @inline(__always)
    static func pairOfBlocks<T: VectorTarget>(_: T.Type, d: UnsafePointer<Lanes>, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>,
                                              rowsApart: Int, mn: Int, dmul: Int, transposed wt: UnsafeMutablePointer<Lanes>) {
        let wt1 = wt + dmul
        transposeRows(w, dmul: dmul, into: wt)
        transposeRows(w + rowsApart * dmul * 4, dmul: dmul, into: wt1)
        let out1 = out + rowsApart * mn
        var m = 0
        while m + 4 <= mn {
            var a0 = Lanes(), a1 = Lanes(), a2 = Lanes(), a3 = Lanes()
            var b0 = Lanes(), b1 = Lanes(), b2 = Lanes(), b3 = Lanes()
            let r = d + m * dmul
            for s in 0..<dmul {
                let (x, y) = (wt[s], wt1[s])
                let (t0, t1, t2, t3) = (r[s], r[dmul + s], r[2 * dmul + s], r[3 * dmul + s])
                a0 = T.multiplyAdd(a0, t0, x); b0 = T.multiplyAdd(b0, t0, y)
                a1 = T.multiplyAdd(a1, t1, x); b1 = T.multiplyAdd(b1, t1, y)
                a2 = T.multiplyAdd(a2, t2, x); b2 = T.multiplyAdd(b2, t2, y)
                a3 = T.multiplyAdd(a3, t3, x); b3 = T.multiplyAdd(b3, t3, y)
            }
            storeColumns(a0, a1, a2, a3, out: out + m, rowLength: mn)
            storeColumns(b0, b1, b2, b3, out: out1 + m, rowLength: mn)
            m += 4
        }
        while m < mn {
            var a = Lanes(), b = Lanes()
            let r = d + m * dmul
            for s in 0..<dmul {
                a = T.multiplyAdd(a, r[s], wt[s])
                b = T.multiplyAdd(b, r[s], wt1[s])
            }
            scatter(a, out: out + m, rowLength: mn)
            scatter(b, out: out1 + m, rowLength: mn)
            m += 1
        }
    }

    /// W's 8 x Dmul block at `w` (rows Dmul floats apart) into Dmul vectors, lane k of
    /// vector s being W[row k, s].
    @inlinable @inline(__always)
    static func transposeRows(_ w: UnsafeRawPointer, dmul: Int, into wt: UnsafeMutablePointer<Lanes>) {
        let rowBytes = dmul * 4
        var s = 0
        while s + 4 <= dmul {
            func load(_ row: Int) -> Quad { w.loadUnaligned(fromByteOffset: row * rowBytes + s * 4, as: Quad.self) }
            let low = Transpose.quads(load(0), load(1), load(2), load(3))
            let high = Transpose.quads(load(4), load(5), load(6), load(7))
            wt[s] = Lanes(lowHalf: low.0, highHalf: high.0)
            wt[s + 1] = Lanes(lowHalf: low.1, highHalf: high.1)
            wt[s + 2] = Lanes(lowHalf: low.2, highHalf: high.2)
            wt[s + 3] = Lanes(lowHalf: low.3, highHalf: high.3)
            s += 4
        }
        while s < dmul {
            var column = Lanes()
            for lane in 0..<blockWidth { column[lane] = w.loadUnaligned(fromByteOffset: lane * rowBytes + s * 4, as: Float.self) }
            wt[s] = column
            s += 1
        }
    }

    /// Four m columns of the block's eight rows (lane k is row k): rows 0-3, then rows 4-7.
    @inlinable @inline(__always)
    static func storeColumns(_ a0: Lanes, _ a1: Lanes, _ a2: Lanes, _ a3: Lanes, out: UnsafeMutablePointer<Float>, rowLength: Int) {
        Transpose.storeRows(a0.lowHalf, a1.lowHalf, a2.lowHalf, a3.lowHalf, to: out, rowLength: rowLength)
        Transpose.storeRows(a0.highHalf, a1.highHalf, a2.highHalf, a3.highHalf, to: out + 4 * rowLength, rowLength: rowLength)
    }

    /// One m column: lane k goes to row k.
    @inlinable @inline(__always)
    static func scatter(_ a: Lanes, out: UnsafeMutablePointer<Float>, rowLength: Int) {
        for lane in 0..<blockWidth { out[lane * rowLength] = a[lane] }
    }

    /// One row as MN dot products of D[i]'s rows with W[p].
    @inlinable @inline(__always)
    static func dotRow<T: VectorTarget>(_: T.Type, d: UnsafeRawPointer, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, row p: Int,
                                           _ dims: FoldDimensions) {
        let (mn, dmul, cin) = (dims.kernelArea, dims.depthMultiplier, dims.inChannels)
        let wRow = w + p * dmul * 4
        let dRows = d + (p % cin) * mn * dmul * 4
        for m in 0..<mn {
            out[p * mn + m] = dot(T.self, dRows + m * dmul * 4, wRow, count: dmul)
        }
    }

    /// The dot product of two float32 vectors (any alignment).
    @inlinable @inline(__always)
    static func dot<T: VectorTarget>(_: T.Type, _ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Float {
        var wide = Lanes()
        var k = 0
        while k + 8 <= count {
            wide = T.multiplyAdd(wide, a.loadUnaligned(fromByteOffset: k * 4, as: Lanes.self), b.loadUnaligned(fromByteOffset: k * 4, as: Lanes.self))
            k += 8
        }
        var sum = wide.sum()
        while k < count {
            sum += a.loadUnaligned(fromByteOffset: k * 4, as: Float.self) * b.loadUnaligned(fromByteOffset: k * 4, as: Float.self)
            k += 1
        }
        return sum
    }
}
