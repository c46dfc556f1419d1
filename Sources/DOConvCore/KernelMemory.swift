#if canImport(Glibc)
import Glibc
#endif

/// Memory for folded kernels, which can be large (ResNet-50's last layers: 9 MiB each).
public enum KernelMemory {
    /// `byteCount` bytes (at least 1), freed with `free`; nil when there is none to be had
    /// (the caller reports it, rather than abort). Large kernels are aligned to 2 MiB, for
    /// huge pages where the kernel has them (`populate` faults them in).
    public static func allocate(byteCount: Int) -> UnsafeMutableRawPointer? {
        guard byteCount >= hugePage else { return malloc(max(byteCount, 1)) }
        var memory: UnsafeMutableRawPointer?
        guard posix_memalign(&memory, hugePage, byteCount) == 0, let memory else { return nil }
        _ = madvise(memory, byteCount / hugePage * hugePage, MADV_HUGEPAGE)
        return memory
    }

    /// Populates the whole huge pages of bytes from `allocate` before they are written: one
    /// system call instead of a page fault per 4 KiB while the fold writes.
    public static func populate(_ raw: UnsafeMutableRawBufferPointer) {
        guard raw.count >= hugePage, let base = raw.baseAddress, Int(bitPattern: base) % hugePage == 0 else { return }
        _ = madvise(base, raw.count / hugePage * hugePage, populateWrite)
    }

    private static let hugePage = 2 << 20

    /// MADV_POPULATE_WRITE (Linux 5.14), which the C headers Swift sees may not name yet;
    /// older kernels reject it and the pages are then faulted in as the fold writes them.
    private static let populateWrite: Int32 = 23
}

/// A folded kernel's bytes from `KernelMemory`, freed with this object.
public final class KernelBuffer: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer

    /// nil when the memory cannot be had.
    public init?(byteCount: Int) {
        guard let memory = KernelMemory.allocate(byteCount: byteCount) else { return nil }
        bytes = UnsafeMutableRawBufferPointer(start: memory, count: byteCount)
    }

    deinit { free(bytes.baseAddress) }
}
