/// Converts between little-endian element bytes and `Float` values.
///
/// This is the only place that knows the bit layouts of the stored types, so format
/// adapters never convert elements by hand.
public enum ElementCodec {
    /// Decodes `count` elements of `type` from `bytes`.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, as type: ElementType, count: Int
    ) throws(TensorError) -> [Float] {
        let (expected, overflow) = count.multipliedReportingOverflow(by: type.byteWidth)
        guard !overflow, bytes.count == expected else {
            throw .byteCountMismatch(expected: overflow ? Int.max : expected, actual: bytes.count)
        }
        guard count > 0, let base = bytes.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            switch type {
            case .float32:
                for k in 0..<count { out[k] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
            case .float64:
                for k in 0..<count { out[k] = Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self)))) }
            case .float16:
                for k in 0..<count { out[k] = Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self)))) }
            case .bfloat16:
                for k in 0..<count { out[k] = bfloat16ToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))) }
            }
            initialized = count
        }
    }

    /// Encodes `values` as little-endian elements of `type`.
    public static func encode(_ values: [Float], as type: ElementType) -> [UInt8] {
        let count = values.count
        return [UInt8](unsafeUninitializedCapacity: count * type.byteWidth) { out, initialized in
            values.withUnsafeBufferPointer { encode($0, as: type, into: UnsafeMutableRawBufferPointer(out)) }
            initialized = count * type.byteWidth
        }
    }

    /// Encodes `values` as little-endian elements of `type` into `out`, which must hold
    /// exactly `values.count * type.byteWidth` bytes (a tensor's raw data, for example).
    public static func encode(_ values: UnsafeBufferPointer<Float>, as type: ElementType, into out: UnsafeMutableRawBufferPointer) {
        let count = values.count
        precondition(out.count == count * type.byteWidth, "output size does not match the values")
        guard count > 0, let base = out.baseAddress else { return }
        switch type {
        case .float32:
            for k in 0..<count { base.storeBytes(of: values[k].bitPattern.littleEndian, toByteOffset: 4 * k, as: UInt32.self) }
        case .float64:
            for k in 0..<count { base.storeBytes(of: Double(values[k]).bitPattern.littleEndian, toByteOffset: 8 * k, as: UInt64.self) }
        case .float16:
            for k in 0..<count { base.storeBytes(of: Float16(values[k]).bitPattern.littleEndian, toByteOffset: 2 * k, as: UInt16.self) }
        case .bfloat16:
            for k in 0..<count { base.storeBytes(of: floatToBFloat16(values[k]).littleEndian, toByteOffset: 2 * k, as: UInt16.self) }
        }
    }

    /// A float16 or bfloat16 value from its bit pattern (other types: the bits as an integer).
    public static func float(halfBits bits: UInt16, as type: ElementType) -> Float {
        switch type {
        case .float16: return Float(Float16(bitPattern: bits))
        case .bfloat16: return bfloat16ToFloat(bits)
        case .float32, .float64: return Float(bits)
        }
    }

    /// bfloat16 is the upper half of a Float's bits.
    @inline(__always)
    static func bfloat16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Rounds to nearest even, as PyTorch and numpy's ml_dtypes do; NaN stays a quiet NaN.
    @inline(__always)
    static func floatToBFloat16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }
}
