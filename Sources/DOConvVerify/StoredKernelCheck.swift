import DOConvCore

/// What the checkpoint and MXNet checks share: stored floats read exactly, and a folded
/// kernel held against its float64 recomputation.
package enum StoredKernelCheck {
    /// `count` stored elements of `type`, exactly, as float64 (little-endian bytes).
    package static func doubles(_ bytes: UnsafeRawBufferPointer, count: Int, type: ElementType) throws -> [Double] {
        guard bytes.count >= count * type.byteWidth else { throw VerifyError("\(bytes.count) bytes do not hold \(count) \(type) elements") }
        switch type {
        case .float64: return (0..<count).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
        case .float32: return (0..<count).map { Double(bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self)) }
        case .float16, .bfloat16:
            return (0..<count).map { Double(ElementCodec.float(halfBits: bytes.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self), as: type)) }
        }
    }

    /// FOLDED's kernel against the recomputation `reference` (both computed by the caller,
    /// which reports a failure to read them as a problem), and random patches through both.
    package static func compare(_ result: inout LayerResult, reference: () throws -> [Double], kernel: () throws -> [Double], shape: [Int],
                        type: ElementType, options: VerifyOptions) {
        let expected: [Double]
        let actual: [Double]
        do {
            expected = try reference()
            actual = try kernel()
        } catch {
            result.problems.append("the kernels cannot be read: \(error)")
            return
        }
        let tolerance = options.tolerance ?? type.defaultTolerance
        result.kernel = ErrorStats.compare(expected: expected, actual: actual, shape: shape, tolerance: tolerance)
        result.probe = NaiveFold.probe(reference: expected, kernel: actual, shape: shape, patches: options.probePatches,
                                       seed: options.seed, tolerance: tolerance)
    }
}
