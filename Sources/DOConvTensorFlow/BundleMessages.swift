import CProtobufC
import CTFProto
import DOConvCore

/// The value of a bundle index's key "": how many data files there are and how the tensor
/// bytes are laid out.
public struct BundleHeader: Sendable, Equatable {
    public enum Endianness: Int32, Sendable, Equatable { case little = 0, big = 1 }

    public var numShards: Int
    public var endianness: Endianness
    /// The format version: the writer's and the oldest reader it allows.
    public var producer: Int32
    public var minConsumer: Int32
    public var badConsumers: [Int32]

    /// The bundle format version this reader implements (TensorFlow's kTensorBundleVersion).
    public static let readerVersion: Int32 = 1

    public init(numShards: Int, endianness: Endianness = .little, producer: Int32 = readerVersion, minConsumer: Int32 = 0, badConsumers: [Int32] = []) {
        self.numShards = numShards
        self.endianness = endianness
        self.producer = producer
        self.minConsumer = minConsumer
        self.badConsumers = badConsumers
    }

    init(serialized: [UInt8], path: String) throws(TensorFlowError) {
        typealias Fields = (shards: Int32, endianness: Int32, producer: Int32, minConsumer: Int32, bad: [Int32])
        let fields: Fields? = serialized.withUnsafeBufferPointer { buffer in
            guard let message = tensorflow__bundle_header_proto__unpack(nil, buffer.count, buffer.baseAddress) else { return nil }
            defer { tensorflow__bundle_header_proto__free_unpacked(message, nil) }
            let header = message.pointee
            let version = header.version?.pointee
            let bad = version.map { v in (0..<v.n_bad_consumers).map { v.bad_consumers[$0] } } ?? []
            return (header.num_shards, Int32(bitPattern: header.endianness.rawValue), version?.producer ?? 0, version?.min_consumer ?? 0, bad)
        }
        guard let fields else { throw .corruptIndex(path: path, reason: "the header (key \"\") is not a BundleHeaderProto") }
        guard let endianness = Endianness(rawValue: fields.endianness) else {
            throw .corruptIndex(path: path, reason: "the header names an unknown endianness \(fields.endianness)")
        }
        self.init(numShards: Int(fields.shards), endianness: endianness, producer: fields.producer, minConsumer: fields.minConsumer, badConsumers: fields.bad)
    }

    func encode() -> [UInt8] {
        var bad = badConsumers
        return bad.withUnsafeMutableBufferPointer { badBuffer in
            var version = Tensorflow__VersionDef()
            tensorflow__version_def__init(&version)
            version.producer = producer
            version.min_consumer = minConsumer
            version.n_bad_consumers = badBuffer.count
            version.bad_consumers = badBuffer.baseAddress
            return withUnsafeMutablePointer(to: &version) { versionPointer in
                var header = Tensorflow__BundleHeaderProto()
                tensorflow__bundle_header_proto__init(&header)
                header.num_shards = Int32(clamping: numShards)
                header.endianness = Tensorflow__BundleHeaderProto__Endianness(UInt32(endianness.rawValue))
                header.version = versionPointer
                return packedBytes(tensorflow__bundle_header_proto__get_packed_size(&header)) { tensorflow__bundle_header_proto__pack(&header, $0) }
            }
        }
    }
}

/// One slice of a partitioned tensor: per dim its start and length (nil: the whole dim).
public struct TensorSlice: Sendable, Equatable {
    public var extents: [(start: Int64, length: Int64?)]

    public static func == (a: TensorSlice, b: TensorSlice) -> Bool {
        a.extents.count == b.extents.count && zip(a.extents, b.extents).allSatisfy { $0.start == $1.start && $0.length == $1.length }
    }
}

/// The value of every other key of a bundle index: a tensor's type and shape, and where its
/// bytes are.
public struct BundleEntry: Sendable, Equatable {
    /// The key as stored. Keys are object paths (UTF-8) except those of slices, which are
    /// binary (TensorFlow's OrderedCode: a 0 byte, the full tensor's key, the extents).
    public var keyBytes: [UInt8]
    /// The key as text; lossy for the binary keys of slices (`keyBytes` is exact).
    public var key: String { String(decoding: keyBytes, as: UTF8.self) }
    /// For the entry of one slice of a partitioned tensor: the full tensor's key.
    public var sliceOf: String? { SliceKey.fullTensorKey(keyBytes) }
    public var dtype: TensorFlowDataType
    public var shape: [Int]
    /// Elements, the product of `shape` (checked when the entry is read).
    public var elementCount: Int
    public var shardID: Int
    public var offset: Int
    public var size: Int
    /// The masked CRC32C TensorFlow stored (`CRC32C.unmask` gives the checksum).
    public var maskedCRC32C: UInt32
    /// Non-empty for a partitioned tensor, whose bytes are in its slices' own entries.
    public var slices: [TensorSlice]

    public init(key: [UInt8], dtype: TensorFlowDataType, shape: [Int], shardID: Int, offset: Int, size: Int, maskedCRC32C: UInt32, slices: [TensorSlice] = []) {
        self.keyBytes = key
        self.dtype = dtype
        self.shape = shape
        self.elementCount = Tensor.elementCount(of: shape) ?? 0
        self.shardID = shardID
        self.offset = offset
        self.size = size
        self.maskedCRC32C = maskedCRC32C
        self.slices = slices
    }

    public var isSliced: Bool { !slices.isEmpty }

    /// Decodes and checks what an entry says of itself: a known type, a shape whose element
    /// count and byte size fit in an Int, and no negative location. Whether the location
    /// lies in a shard is the bundle's to check.
    init(key: [UInt8], serialized: [UInt8], path: String) throws(TensorFlowError) {
        struct Fields {
            var dtype: Int32 = 0, dims: [Int64] = [], unknownRank = false
            var shard: Int32 = 0, offset: Int64 = 0, size: Int64 = 0, crc: UInt32 = 0
            var slices: [TensorSlice] = []
        }
        let fields: Fields? = serialized.withUnsafeBufferPointer { buffer in
            guard let message = tensorflow__bundle_entry_proto__unpack(nil, buffer.count, buffer.baseAddress) else { return nil }
            defer { tensorflow__bundle_entry_proto__free_unpacked(message, nil) }
            let entry = message.pointee
            var fields = Fields(dtype: Int32(bitPattern: entry.dtype.rawValue), shard: entry.shard_id, offset: entry.offset, size: entry.size, crc: entry.crc32c)
            if let shape = entry.shape?.pointee {
                fields.unknownRank = shape.unknown_rank != 0
                fields.dims = (0..<shape.n_dim).map { shape.dim[$0]?.pointee.size ?? 0 }
            }
            fields.slices = (0..<entry.n_slices).map { k in
                guard let slice = entry.slices[k]?.pointee else { return TensorSlice(extents: []) }
                return TensorSlice(extents: (0..<slice.n_extent).map { e in
                    guard let extent = slice.extent[e]?.pointee else { return (0, nil) }
                    return (extent.start, extent.has_length_case == TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH ? extent.length : nil)
                })
            }
            return fields
        }
        func corrupt(_ reason: String) -> TensorFlowError { .corruptIndex(path: path, reason: "entry '\(printable(key))': \(reason)") }
        guard let fields else { throw corrupt("not a BundleEntryProto") }
        guard fields.dtype != 0 else { throw corrupt("no element type (DT_INVALID)") }
        guard let dtype = TensorFlowDataType(rawValue: fields.dtype) else {
            throw .unsupported(path: path, reason: "entry '\(printable(key))' has element type code \(fields.dtype), unknown to this reader")
        }
        guard !fields.unknownRank else { throw corrupt("a stored tensor of unknown rank") }
        // TensorFlow's TensorShape allows at most 254 dims.
        guard fields.dims.count <= 254 else { throw corrupt("\(fields.dims.count) dims") }
        var shape: [Int] = []
        for dim in fields.dims {
            guard dim >= 0, let size = Int(exactly: dim) else { throw corrupt("a dim of \(dim)") }
            shape.append(size)
        }
        guard Tensor.elementCount(of: shape) != nil else { throw corrupt("shape \(shape) has more elements than an Int counts") }
        guard fields.shard >= 0, fields.offset >= 0, fields.size >= 0 else {
            throw corrupt("a negative location (shard \(fields.shard), offset \(fields.offset), size \(fields.size))")
        }
        self.init(key: key, dtype: dtype, shape: shape, shardID: Int(fields.shard), offset: Int(fields.offset), size: Int(fields.size), maskedCRC32C: fields.crc, slices: fields.slices)
    }

    /// The bytes a tensor of this type and shape takes stored raw; nil for types stored in
    /// an encoding of their own, or when the product overflows.
    public var rawByteCount: Int? {
        guard let width = dtype.byteWidth else { return nil }
        let (bytes, overflow) = elementCount.multipliedReportingOverflow(by: width)
        return overflow ? nil : bytes
    }

    /// The entry's wire bytes, as TensorFlow writes them (the shape always present, zero
    /// fields left out, a sliced tensor's slices listed).
    func encode() -> [UInt8] {
        // protobuf-c packs C structs that point at each other: made here, freed once packed.
        let arena = CArena()
        defer { arena.freeAll() }
        let dims = arena.pointers(shape) { (size, dim: UnsafeMutablePointer<Tensorflow__TensorShapeProto__Dim>) in
            tensorflow__tensor_shape_proto__dim__init(dim)
            dim.pointee.size = Int64(size)
        }
        let shapeProto = arena.message(Tensorflow__TensorShapeProto.self) {
            tensorflow__tensor_shape_proto__init($0)
            $0.pointee.n_dim = shape.count
            $0.pointee.dim = dims
        }
        let sliceProtos = arena.pointers(slices) { (given, slice: UnsafeMutablePointer<Tensorflow__TensorSliceProto>) in
            tensorflow__tensor_slice_proto__init(slice)
            slice.pointee.n_extent = given.extents.count
            slice.pointee.extent = arena.pointers(given.extents) { (range, extent: UnsafeMutablePointer<Tensorflow__TensorSliceProto__Extent>) in
                tensorflow__tensor_slice_proto__extent__init(extent)
                extent.pointee.start = range.start
                if let length = range.length {
                    extent.pointee.has_length_case = TENSORFLOW__TENSOR_SLICE_PROTO__EXTENT__HAS_LENGTH_LENGTH
                    extent.pointee.length = length
                }
            }
        }
        var proto = Tensorflow__BundleEntryProto()
        tensorflow__bundle_entry_proto__init(&proto)
        proto.dtype = Tensorflow__DataType(UInt32(dtype.rawValue))
        proto.shape = shapeProto
        proto.shard_id = Int32(clamping: shardID)
        proto.offset = Int64(offset)
        proto.size = Int64(size)
        proto.crc32c = maskedCRC32C
        proto.n_slices = slices.count
        proto.slices = sliceProtos
        return packedBytes(tensorflow__bundle_entry_proto__get_packed_size(&proto)) { tensorflow__bundle_entry_proto__pack(&proto, $0) }
    }
}

/// A message's wire bytes: protobuf-c packs into a buffer of the size it computed.
func packedBytes(_ size: Int, _ pack: (UnsafeMutablePointer<UInt8>) -> Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = buffer.baseAddress.map(pack) ?? 0
    }
}

/// The keys TensorFlow gives the slices of a partitioned tensor (EncodeTensorNameSlice):
/// OrderedCode's number 0 (one 0 byte), the full tensor's key as an OrderedCode string (0
/// written 00 FF, FF written FF 00, ended by 00 01), then the rank and each extent's start
/// and length as OrderedCode numbers (not decoded here).
enum SliceKey {
    /// The full tensor's key, nil for a key that is not a slice's.
    static func fullTensorKey(_ key: [UInt8]) -> String? {
        guard key.first == 0 else { return nil }
        var name: [UInt8] = []
        var k = 1
        while k < key.count {
            let byte = key[k]
            guard byte == 0x00 || byte == 0xFF else {
                name.append(byte)
                k += 1
                continue
            }
            guard k + 1 < key.count else { return nil }
            switch (byte, key[k + 1]) {
            case (0x00, 0x01): return String(decoding: name, as: UTF8.self)
            case (0x00, 0xFF): name.append(0x00)
            case (0xFF, 0x00): name.append(0xFF)
            default: return nil
            }
            k += 2
        }
        return nil
    }
}
