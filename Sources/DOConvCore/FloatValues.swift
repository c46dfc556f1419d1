/// A read-only run of `Float` values that either owns its storage or borrows little-endian
/// float32 bytes that another object keeps alive (a mapped file, a message arena).
///
/// Borrowing is what lets a float32 tensor be folded straight from the bytes it was read
/// into, without decoding it into a new array first. The bytes may be unaligned (tensor
/// data sits at arbitrary offsets in a protobuf message), so every read is an unaligned
/// load, which costs nothing extra on the machines Swift runs on.
public struct FloatValues: RandomAccessCollection, @unchecked Sendable {
    // @unchecked: the bytes are never written after creation and `owner` keeps them alive.
    public let count: Int
    /// The first byte, nil when empty.
    private let base: UnsafeRawPointer?
    /// Whatever keeps `base` valid; retained for as long as any copy of this value lives.
    private let owner: AnyObject?

    /// Values copied into storage of their own.
    public init(_ values: [Float]) {
        self.init(count: values.count) { out in
            values.withUnsafeBufferPointer { source in
                if let from = source.baseAddress, let to = out.baseAddress { to.initialize(from: from, count: source.count) }
            }
        }
    }

    /// Values written by `initialize` into fresh storage of `count` elements, which it must
    /// fill completely.
    public init(count: Int, initializingWith initialize: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let storage = OwnedFloats(count: count)
        try initialize(storage.buffer)
        self.count = count
        self.base = storage.buffer.baseAddress.map(UnsafeRawPointer.init)
        self.owner = storage
    }

    /// Borrows `bytes` (little-endian float32, any alignment), which must stay valid and
    /// unchanged for as long as `owner` lives. Fails when the byte count is not 4 * `count`.
    public init(borrowing bytes: UnsafeRawBufferPointer, count: Int, owner: AnyObject) throws(TensorError) {
        let (expected, overflow) = count.multipliedReportingOverflow(by: 4)
        guard !overflow, bytes.count == expected else {
            throw .byteCountMismatch(expected: overflow ? Int.max : expected, actual: bytes.count)
        }
        #if _endian(big)
        // Stored bytes are little-endian: a big-endian machine needs them decoded.
        self = FloatValues(count: count) { out in
            for k in 0..<count { out[k] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
        }
        #else
        self.count = count
        self.base = count == 0 ? nil : bytes.baseAddress
        self.owner = owner
        #endif
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    @inline(__always)
    public subscript(position: Int) -> Float {
        base.unsafelyUnwrapped.loadUnaligned(fromByteOffset: position &* 4, as: Float.self)
    }

    /// Calls `body` with the values' bytes (native-endian floats, possibly unaligned), keeping
    /// the storage alive for the duration.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(owner) {
            try body(UnsafeRawBufferPointer(start: base, count: count * 4))
        }
    }

    /// The values as an array (a copy).
    public var array: [Float] { Array(self) }
}

/// Heap storage for owned `FloatValues`.
private final class OwnedFloats {
    let buffer: UnsafeMutableBufferPointer<Float>

    /// Uninitialized storage (Float is trivial): `FloatValues(count:initializingWith:)` fills it.
    init(count: Int) {
        buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
    }

    deinit { buffer.deallocate() }
}
