#if canImport(Glibc)
import Glibc
#endif
import DOConvCore

/// Folded kernels in their stored form: little-endian elements of the layer's type.
enum KernelStorage {
    /// Memory for a kernel's raw_data, freed with free like the rest of the message tree;
    /// nil when there is none to be had (the caller reports it, rather than abort).
    ///
    /// Large kernels are aligned to 2 MiB and populated now: huge pages where the kernel has
    /// them, and one system call instead of a page fault per 4 KiB while the fold writes.
    static func allocate(byteCount: Int) -> UnsafeMutableRawPointer? {
        let huge = 2 << 20
        guard byteCount >= huge else { return malloc(max(byteCount, 1)) }
        var memory: UnsafeMutableRawPointer?
        guard posix_memalign(&memory, huge, byteCount) == 0, let memory else { return nil }
        let whole = byteCount / huge * huge
        _ = madvise(memory, whole, MADV_HUGEPAGE)
        _ = madvise(memory, whole, populateWrite)
        return memory
    }

    /// MADV_POPULATE_WRITE (Linux 5.14), which the C headers Swift sees may not name yet;
    /// older kernels reject it and the pages are then faulted in as the fold writes them.
    private static let populateWrite: Int32 = 23

    /// Folds `layer` into `raw` (kernelCount elements of `type`). float32 is written in place
    /// by the fold itself; the other types go through one float32 buffer and are rounded.
    static func fold(_ layer: DOConvLayer, as type: ElementType, into raw: UnsafeMutableRawBufferPointer) {
        #if _endian(little)
        if type == .float32 {
            layer.fold(into: raw.bindMemory(to: Float.self))
            return
        }
        #endif
        let values = layer.foldedKernel().values
        values.withUnsafeBufferPointer { ElementCodec.encode($0, as: type, into: raw) }
    }

    /// Calls `body` with the stored kernel as floats: the bytes themselves for float32, else
    /// a decoded copy.
    static func withStoredValues<R>(_ raw: UnsafeRawBufferPointer, as type: ElementType, _ body: (UnsafeBufferPointer<Float>) -> R) -> R {
        let count = raw.count / type.byteWidth
        #if _endian(little)
        if type == .float32, raw.baseAddress.map({ Int(bitPattern: $0) % MemoryLayout<Float>.alignment == 0 }) ?? true {
            return body(raw.bindMemory(to: Float.self))
        }
        #endif
        // The byte count is the tensor's own, made for `type`: decoding cannot fail.
        let values = (try? ElementCodec.decode(raw, as: type, count: count)) ?? []
        return values.withUnsafeBufferPointer(body)
    }
}
