/// What a fold kernel may assume about the CPU it is compiled for: how lanes multiply and
/// add, and how many accumulators fit in registers.
///
/// The kernels are written once, generic over this, and compiled twice: `PortableTarget` for
/// any x86-64 or ARM CPU, and `AVX2FMATarget` in a module built for AVX2 + FMA (picked at run
/// time). A fused multiply-add without hardware support is a libm call per lane, so
/// `AVX2FMATarget` must only be used where FMA is compiled in.
public protocol VectorTarget {
    /// `acc + a * b`.
    static func multiplyAdd<V: SIMD>(_ acc: V, _ a: V, _ b: V) -> V where V.Scalar: FloatingPoint
    /// Whether the PyTorch kernel may fold two output channels per pass (16 accumulators
    /// of eight floats: one register each with 256-bit vectors, too many with 128-bit ones).
    static var pairsOutputChannels: Bool { get }
}

/// Separate multiply and add, two roundings, 128-bit registers: what every CPU can do.
public enum PortableTarget: VectorTarget {
    @inlinable @inline(__always)
    public static func multiplyAdd<V: SIMD>(_ acc: V, _ a: V, _ b: V) -> V where V.Scalar: FloatingPoint {
        acc + a * b
    }

    @inlinable public static var pairsOutputChannels: Bool { false }
}

/// Fused multiply-add (one rounding, one instruction) and sixteen 256-bit registers.
public enum AVX2FMATarget: VectorTarget {
    @inlinable @inline(__always)
    public static func multiplyAdd<V: SIMD>(_ acc: V, _ a: V, _ b: V) -> V where V.Scalar: FloatingPoint {
        acc.addingProduct(a, b)
    }

    @inlinable public static var pairsOutputChannels: Bool { true }
}
