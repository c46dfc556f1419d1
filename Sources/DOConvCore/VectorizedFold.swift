extension DOConvLayer {
    /// The layer's composite kernel in OIHW order (Cout, Cin/g, M, N), computed with SIMD
    /// over contiguous memory and spread over the cores for large layers.
    ///
    /// Same arithmetic as `ScalarFold.kernel(of:)` up to the order of float additions.
    public func foldedKernel(maxThreads: Int = ParallelWork.defaultThreads) -> Tensor {
        let g = geometry
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        let values = [Float](unsafeUninitializedCapacity: g.kernelCount) { buffer, initialized in
            fold(into: buffer, maxThreads: maxThreads)
            initialized = g.kernelCount
        }
        return try! Tensor(shape: shape, values: values) // counts equal by construction
    }

    /// Writes the composite kernel, OIHW, into `out`, which must hold exactly
    /// `geometry.kernelCount` elements; every element is written.
    ///
    /// This is the fold without an intermediate array: callers pass the memory the kernel
    /// is stored in (a new tensor's raw bytes). The result does not depend on `maxThreads`.
    public func fold(into out: UnsafeMutableBufferPointer<Float>, maxThreads: Int = ParallelWork.defaultThreads) {
        let g = geometry
        precondition(out.count == g.kernelCount, "output does not match the layer geometry")
        guard let op = out.baseAddress else { return }
        let threads = ParallelWork.threads(forMultiplyAdds: g.kernelCount * g.depthMultiplier, max: maxThreads)
        w.withUnsafeBytes { wBytes in
            guard let wp = wBytes.baseAddress else { return }
            switch (layout, d) {
            case (.pytorch, nil):
                UnsafeMutableRawPointer(op).copyMemory(from: wp, byteCount: g.kernelCount * 4) // a reshape of W
            case let (.pytorch, d?):
                d.withUnsafeBytes { dBytes in
                    guard let dp = dBytes.baseAddress else { return }
                    PyTorchFoldKernel.run(d: dp, w: wp, out: op, geometry: g, threads: threads)
                }
            case (.keras, nil):
                KerasFoldKernel.run(d: nil, w: wp, out: op, geometry: g, threads: threads)
            case let (.keras, d?):
                d.withUnsafeBytes { dBytes in
                    KerasFoldKernel.run(d: dBytes.baseAddress, w: wp, out: op, geometry: g, threads: threads)
                }
            }
        }
    }
}

/// einsum('ims,ois->oim'): each kernel row p = (o, i) is a small matrix-vector product,
/// out[p, :MN] = D[i] (MN x Dmul) * W[p, :Dmul], with i = p mod Cin.
///
/// Rows are taken four at a time along i, so the four W rows and the four output rows of a
/// quad are each one contiguous block (two sequential streams over the whole layer) and the
/// SIMD lanes are the four rows: every lane does useful work whatever MN is. D is repacked
/// once per layer with the four channels of a quad interleaved. Rows that do not fill a
/// quad, and layers whose D rows serve fewer than four output channels (depthwise ones,
/// where repacking D would cost more than it saves), are dot products over D's rows.
///
/// Each element is the same float sum in the same order whatever the thread count.
enum PyTorchFoldKernel {
    typealias Quad = SIMD4<Float>

    static func run(d: UnsafeRawPointer, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, geometry g: DOConvGeometry, threads: Int) {
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        let outPerGroup = g.outChannelsPerGroup
        guard outPerGroup >= 4, cin >= 4 else {
            ParallelWork.forEachSlice(of: outPerGroup * cin, count: threads) { rows in
                for p in rows { dotRow(d: d, w: w, out: out, row: p, geometry: g) }
            }
            return
        }
        let quads = cin / 4
        // interleaved[(q * MN + m) * Dmul + s] = D[4q ..< 4q + 4, m, s].
        let interleaved = UnsafeMutablePointer<Quad>.allocate(capacity: quads * mn * dmul)
        defer { interleaved.deallocate() }
        for q in 0..<quads {
            for m in 0..<mn {
                for s in 0..<dmul {
                    var v = Quad()
                    for lane in 0..<4 { v[lane] = d.loadUnaligned(fromByteOffset: (((4 * q + lane) * mn + m) * dmul + s) * 4, as: Float.self) }
                    (interleaved + (q * mn + m) * dmul + s).initialize(to: v)
                }
            }
        }
        let table = UnsafePointer(interleaved)
        ParallelWork.forEachSlice(of: outPerGroup, count: threads) { channels in
            let transposed = UnsafeMutablePointer<Quad>.allocate(capacity: dmul)
            defer { transposed.deallocate() }
            for o in channels {
                for q in 0..<quads {
                    let p = o * cin + 4 * q
                    quad(d: table + q * mn * dmul, w: w + p * dmul * 4, out: out + p * mn, mn: mn, dmul: dmul, transposed: transposed)
                }
                for i in (4 * quads)..<cin { dotRow(d: d, w: w, out: out, row: o * cin + i, geometry: g) }
            }
        }
    }

    /// Four consecutive rows: W's 4 x Dmul block is transposed so lane k holds row k, then
    /// each output m is Dmul lane-wise multiply-adds, four m at a time so the additions
    /// form independent chains, and the four results are transposed back into the rows.
    @inline(__always)
    static func quad(d: UnsafePointer<Quad>, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, mn: Int, dmul: Int,
                     transposed wt: UnsafeMutablePointer<Quad>) {
        var s = 0
        while s + 4 <= dmul {
            let (c0, c1, c2, c3) = transpose(w.loadUnaligned(fromByteOffset: s * 4, as: Quad.self),
                                             w.loadUnaligned(fromByteOffset: (dmul + s) * 4, as: Quad.self),
                                             w.loadUnaligned(fromByteOffset: (2 * dmul + s) * 4, as: Quad.self),
                                             w.loadUnaligned(fromByteOffset: (3 * dmul + s) * 4, as: Quad.self))
            wt[s] = c0; wt[s + 1] = c1; wt[s + 2] = c2; wt[s + 3] = c3
            s += 4
        }
        while s < dmul {
            wt[s] = Quad(w.loadUnaligned(fromByteOffset: s * 4, as: Float.self),
                         w.loadUnaligned(fromByteOffset: (dmul + s) * 4, as: Float.self),
                         w.loadUnaligned(fromByteOffset: (2 * dmul + s) * 4, as: Float.self),
                         w.loadUnaligned(fromByteOffset: (3 * dmul + s) * 4, as: Float.self))
            s += 1
        }
        // Groups of four m, so four independent chains of additions are in flight; MN = 9,
        // 25, 49 end with a group of five rather than a lone m waiting on its own chain.
        let fiveAtEnd = mn % 4 == 1 && mn >= 5
        let fourEnd = fiveAtEnd ? mn - 5 : mn - mn % 4
        var m = 0
        while m < fourEnd {
            var a0 = Quad(), a1 = Quad(), a2 = Quad(), a3 = Quad()
            let (r0, r1, r2, r3) = (d + m * dmul, d + (m + 1) * dmul, d + (m + 2) * dmul, d + (m + 3) * dmul)
            for s in 0..<dmul {
                let x = wt[s]
                a0 += r0[s] * x
                a1 += r1[s] * x
                a2 += r2[s] * x
                a3 += r3[s] * x
            }
            storeRows(a0, a1, a2, a3, out: out + m, rowLength: mn)
            m += 4
        }
        if fiveAtEnd {
            var a0 = Quad(), a1 = Quad(), a2 = Quad(), a3 = Quad(), a4 = Quad()
            let (r0, r1, r2, r3, r4) = (d + m * dmul, d + (m + 1) * dmul, d + (m + 2) * dmul, d + (m + 3) * dmul, d + (m + 4) * dmul)
            for s in 0..<dmul {
                let x = wt[s]
                a0 += r0[s] * x
                a1 += r1[s] * x
                a2 += r2[s] * x
                a3 += r3[s] * x
                a4 += r4[s] * x
            }
            storeRows(a0, a1, a2, a3, out: out + m, rowLength: mn)
            scatter(a4, out: out + m + 4, rowLength: mn)
            m += 5
        }
        while m < mn {
            // Even and odd s in two chains, so the additions do not wait on each other.
            var even = Quad(), odd = Quad()
            let r = d + m * dmul
            var s = 0
            while s + 2 <= dmul {
                even += r[s] * wt[s]
                odd += r[s + 1] * wt[s + 1]
                s += 2
            }
            if s < dmul { even += r[s] * wt[s] }
            scatter(even + odd, out: out + m, rowLength: mn)
            m += 1
        }
    }

    /// Four m columns of the quad's four rows, lane k being row k: transposed, they are four
    /// contiguous runs of four values.
    @inline(__always)
    static func storeRows(_ a0: Quad, _ a1: Quad, _ a2: Quad, _ a3: Quad, out: UnsafeMutablePointer<Float>, rowLength: Int) {
        let (row0, row1, row2, row3) = transpose(a0, a1, a2, a3)
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: row0, as: Quad.self)
        o.storeBytes(of: row1, toByteOffset: rowLength * 4, as: Quad.self)
        o.storeBytes(of: row2, toByteOffset: 2 * rowLength * 4, as: Quad.self)
        o.storeBytes(of: row3, toByteOffset: 3 * rowLength * 4, as: Quad.self)
    }

    /// One m column: lane k goes to row k.
    @inline(__always)
    static func scatter(_ a: Quad, out: UnsafeMutablePointer<Float>, rowLength: Int) {
        out[0] = a[0]
        out[rowLength] = a[1]
        out[2 * rowLength] = a[2]
        out[3 * rowLength] = a[3]
    }

    /// The 4 x 4 transpose: result k holds lane k of each argument.
    @inline(__always)
    static func transpose(_ r0: Quad, _ r1: Quad, _ r2: Quad, _ r3: Quad) -> (Quad, Quad, Quad, Quad) {
        let t0 = Quad(lowHalf: r0.lowHalf, highHalf: r1.lowHalf)   // r00 r01 r10 r11
        let t1 = Quad(lowHalf: r2.lowHalf, highHalf: r3.lowHalf)   // r20 r21 r30 r31
        let t2 = Quad(lowHalf: r0.highHalf, highHalf: r1.highHalf) // r02 r03 r12 r13
        let t3 = Quad(lowHalf: r2.highHalf, highHalf: r3.highHalf) // r22 r23 r32 r33
        return (Quad(t0[0], t0[2], t1[0], t1[2]), Quad(t0[1], t0[3], t1[1], t1[3]),
                Quad(t2[0], t2[2], t3[0], t3[2]), Quad(t2[1], t2[3], t3[1], t3[3]))
    }

    /// One row as MN dot products of D[i]'s rows with W[p].
    @inline(__always)
    static func dotRow(d: UnsafeRawPointer, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, row p: Int, geometry g: DOConvGeometry) {
        let (mn, dmul, cin) = (g.kernelArea, g.depthMultiplier, g.inChannels)
        let i = p % cin
        let wRow = w + p * dmul * 4
        let dRows = d + i * mn * dmul * 4
        for m in 0..<mn {
            out[p * mn + m] = dot(dRows + m * dmul * 4, wRow, count: dmul)
        }
    }

    /// The dot product of two float32 vectors (any alignment).
    @inline(__always)
    static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Float {
        var wide = SIMD8<Float>()
        var k = 0
        while k + 8 <= count {
            wide += a.loadUnaligned(fromByteOffset: k * 4, as: SIMD8<Float>.self) * b.loadUnaligned(fromByteOffset: k * 4, as: SIMD8<Float>.self)
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

/// einsum('msi,sio->mio') then the reshape to HWIO and the transpose to OIHW, fused:
/// for each D channel i, a tile of MN rows of Cout/g values is accumulated in registers,
/// eight output channels at a time over the contiguous o axis of W, then written out
/// transposed so each (o, c) kernel gets MN contiguous values.
enum KerasFoldKernel {
    typealias Lanes = SIMD8<Float>

    static func run(d: UnsafeRawPointer?, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>, geometry g: DOConvGeometry, threads: Int) {
        let (mn, dmul, cin, cout) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels)
        let outPerGroup = g.outChannelsPerGroup
        let inPerGroup = g.inChannelsPerGroup
        let vectorEnd = outPerGroup - outPerGroup % Lanes.scalarCount
        ParallelWork.forEachSlice(of: cin, count: threads) { slice in
            let tile = UnsafeMutablePointer<Float>.allocate(capacity: mn * outPerGroup)
            let coefficients = UnsafeMutablePointer<Float>.allocate(capacity: mn * dmul)
            defer { tile.deallocate(); coefficients.deallocate() }
            for i in slice {
                // (D + I)[m, s, i] for this channel, gathered once.
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
                            acc += Lanes(repeating: coefficientRow[s]) * wChannel.loadUnaligned(fromByteOffset: s * wStride + o * 4, as: Lanes.self)
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
}
