import Dispatch

/// A loop over items spread over the cores. Worker w takes items w, w + workers, w + 2
/// workers, ...: which worker computes an item never changes what it computes, so results
/// do not depend on the number of threads.
public enum ParallelLoop {
    /// Workers worth starting for `items` items of `work` rough operations in all: one per
    /// `grain` operations, at most `threads` and `items`, at least one.
    public static func workers(threads: Int, items: Int, work: Int, grain: Int = 200_000) -> Int {
        max(1, min(threads, items, work / grain + 1))
    }

    /// `body(i)` for i in 0..<items on `workers` cores (on this thread when one); `body` must
    /// write only what item i owns.
    public static func run(_ items: Int, workers: Int, _ body: (Int) -> Void) {
        if workers <= 1 {
            for i in 0..<items { body(i) }
            return
        }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let run = body
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                var i = worker
                while i < items {
                    run(i)
                    i += workers
                }
            }
        }
    }

    /// `body(range)` over 0..<count cut into one contiguous range per worker (for loops over
    /// elements, where each item alone is too small to hand out).
    public static func run(ranges count: Int, threads: Int, grain: Int = 1 << 16, _ body: (Range<Int>) -> Void) {
        let workers = max(1, min(threads, count / grain))
        run(workers, workers: workers) { w in body((count * w / workers)..<(count * (w + 1) / workers)) }
    }
}
