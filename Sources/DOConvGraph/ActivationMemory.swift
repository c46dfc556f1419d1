import CMemorySupport

/// How the process's allocator treats the executor's activations.
public enum ActivationMemory {
    /// Makes freed activations stay in the process for the next ones, rather than go back to
    /// the kernel: glibc maps every block above its mmap threshold (at most 32 MB) afresh and
    /// unmaps it when freed, so each node's output was faulted in and zeroed page by page
    /// again. On DeepLabv3 at 256x512 that was 929,000 page faults and 1.7 s of system time
    /// in a 10.4 s verification (8.7 s without, for 12% more peak memory: the heap keeps its
    /// high mark). Process-wide, and meant for the verifier's process: the end-to-end
    /// comparison calls it once before its runs. Returns whether the allocator took it.
    @discardableResult
    public static func keepFreedMemory() -> Bool { once }

    private static let once: Bool = doconv_keep_freed_memory() == 1
}
