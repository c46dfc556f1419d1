import Dispatch

/// Splits work over the cores when a job is big enough for threads to pay.
public enum ParallelWork {
    /// All cores of the machine.
    public static let defaultThreads = max(1, System.activeProcessorCount)

    /// Threads worth starting for a job of this many multiply-adds (about a millisecond of
    /// work per thread, so the cost of waking a thread stays small).
    static func threads(forMultiplyAdds work: Int, max limit: Int) -> Int {
        Swift.max(1, Swift.min(limit, work / 2_000_000))
    }

    /// Runs `body` on `count` contiguous slices of `0..<total`, concurrently when count > 1.
    static func forEachSlice(of total: Int, count: Int, _ body: (Range<Int>) -> Void) {
        let count = Swift.max(1, Swift.min(count, total))
        if count == 1 { body(0..<total); return }
        // Each worker gets its own slice; the callers' bodies write disjoint ranges.
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: count) { k in
            body((total * k / count)..<(total * (k + 1) / count))
        }
    }
}
