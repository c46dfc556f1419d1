import CProtobufC
import DOConvCore
import DOConvFileIO

/// A `ProtobufCBuffer` that protobuf-c packs a message into, forwarding every append to an
/// `AtomicFileWriter`: a model is never assembled in memory before it is written, and its
/// large unchanged tensors are copied by the kernel (see the writer's sources). Bytes that
/// `pending` is still computing are waited for before they are appended.
final class ProtoFileSink {
    /// The buffer protobuf-c appends to, followed in the same allocation by a pointer back to
    /// this sink (C layout, so the callback can find its owner).
    let buffer: UnsafeMutablePointer<ProtobufCBuffer>
    let file: AtomicFileWriter
    let pending: PendingKernels?
    private static let ownerOffset = MemoryLayout<ProtobufCBuffer>.stride

    init(file: AtomicFileWriter, pending: PendingKernels? = nil) {
        self.file = file
        self.pending = pending
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.ownerOffset + MemoryLayout<UnsafeRawPointer>.stride, alignment: 16)
        buffer = raw.bindMemory(to: ProtobufCBuffer.self, capacity: 1)
        buffer.initialize(to: ProtobufCBuffer(append: { base, count, data in
            guard let base, let data else { return }
            let owner = UnsafeRawPointer(base).load(fromByteOffset: ProtoFileSink.ownerOffset, as: UnsafeRawPointer.self)
            let sink = Unmanaged<ProtoFileSink>.fromOpaque(owner).takeUnretainedValue()
            sink.pending?.waitForBytes(at: data)
            sink.file.write(UnsafeRawBufferPointer(start: data, count: count))
        }))
        raw.storeBytes(of: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), toByteOffset: Self.ownerOffset, as: UnsafeRawPointer.self)
    }

    deinit { UnsafeMutableRawPointer(buffer).deallocate() }
}
