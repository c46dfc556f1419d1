/// 4 x 4 float transposes, the building block for moving between rows of a kernel tensor
/// and SIMD lanes that each hold one row.
public enum Transpose {
    public typealias Quad = SIMD4<Float>

    /// Result k holds lane k of each argument.
    @inlinable @inline(__always)
    public static func quads(_ r0: Quad, _ r1: Quad, _ r2: Quad, _ r3: Quad) -> (Quad, Quad, Quad, Quad) {
        let t0 = Quad(lowHalf: r0.lowHalf, highHalf: r1.lowHalf)   // r00 r01 r10 r11
        let t1 = Quad(lowHalf: r2.lowHalf, highHalf: r3.lowHalf)   // r20 r21 r30 r31
        let t2 = Quad(lowHalf: r0.highHalf, highHalf: r1.highHalf) // r02 r03 r12 r13
        let t3 = Quad(lowHalf: r2.highHalf, highHalf: r3.highHalf) // r22 r23 r32 r33
        return (Quad(t0[0], t0[2], t1[0], t1[2]), Quad(t0[1], t0[3], t1[1], t1[3]),
                Quad(t2[0], t2[2], t3[0], t3[2]), Quad(t2[1], t2[3], t3[1], t3[3]))
    }

    /// Stores four columns of four rows (lane k of each argument belongs to row k) as four
    /// contiguous runs of four values, `rowLength` floats apart.
    @inlinable @inline(__always)
    public static func storeRows(_ a0: Quad, _ a1: Quad, _ a2: Quad, _ a3: Quad, to out: UnsafeMutablePointer<Float>, rowLength: Int) {
        let (row0, row1, row2, row3) = quads(a0, a1, a2, a3)
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: row0, as: Quad.self)
        o.storeBytes(of: row1, toByteOffset: rowLength * 4, as: Quad.self)
        o.storeBytes(of: row2, toByteOffset: 2 * rowLength * 4, as: Quad.self)
        o.storeBytes(of: row3, toByteOffset: 3 * rowLength * 4, as: Quad.self)
    }
}
