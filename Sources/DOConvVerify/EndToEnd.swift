import DOConvCore
import DOConvGraph
import Dispatch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Why verification could not start: bad files or arguments (exit status 2).
public struct VerifyError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One graph output compared over all inputs.
public struct OutputResult: Sendable {
    public var name: String
    public var stats: ErrorStats
}

/// Runs ORIGINAL and FOLDED on the same seeded random inputs with the reference executor
/// and compares every graph output.
package enum EndToEnd {
    /// Dim names taken for a batch when no --dim gives them (and any dim 0).
    package static func isBatchLike(_ name: String, axis: Int) -> Bool {
        axis == 0 || name.lowercased().contains("batch") || ["n", "b", "bs"].contains(name.lowercased())
    }

    /// The concrete shape of every input ORIGINAL must be fed.
    package static func shapes(of graph: Graph, dims: [String: Int]) throws(VerifyError) -> [(ValueInfo, [Int])] {
        var result: [(ValueInfo, [Int])] = []
        for input in graph.feedInputs {
            guard let declared = input.shape else {
                throw VerifyError("input '\(input.name)' declares no shape, so no input can be made for it")
            }
            var shape: [Int] = []
            for (axis, dim) in declared.enumerated() {
                switch dim {
                case .fixed(let n):
                    guard n >= 0 else { throw VerifyError("input '\(input.name)' has negative dim \(n)") }
                    shape.append(n)
                case .symbolic(let name):
                    if let value = dims[name] { shape.append(value) } else if isBatchLike(name, axis: axis) { shape.append(1) } else {
                        throw VerifyError("input '\(input.name)' dim \(axis) is symbolic '\(name)': give its size with --dim \(name)=VALUE")
                    }
                case .unknown:
                    guard axis == 0 else {
                        throw VerifyError("input '\(input.name)' dim \(axis) has no size and no name, so no input can be made for it")
                    }
                    shape.append(1)
                }
            }
            guard let count = Tensor.elementCount(of: shape), count <= 1 << 26 else {
                throw VerifyError("input '\(input.name)' of shape \(shape) is too large for the reference executor")
            }
            result.append((input, shape))
        }
        return result
    }

    /// `count` seeded random feeds: floats uniform in [-1, 1] (rounded to the input's
    /// type), integers in [0, 4), booleans.
    package static func feeds(for graph: Graph, dims: [String: Int], count: Int, seed: UInt64) throws(VerifyError) -> [[String: TensorValue]] {
        let shapes = try shapes(of: graph, dims: dims)
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            var feed: [String: TensorValue] = [:]
            for (input, shape) in shapes {
                let n = shape.reduce(1, *)
                let type = input.type ?? .float
                if type.isFloat {
                    var values = (0..<n).map { _ in Double.random(in: -1...1, using: &random) }
                    if type == .float16 { values = values.map { Double(Float16($0)) } }
                    if type == .bfloat16 { values = values.map { Double(Float(bitPattern: Float($0).bitPattern & 0xFFFF_0000)) } }
                    if type == .float { values = values.map { Double(Float($0)) } }
                    feed[input.name] = TensorValue(type, shape: shape, floats: values)
                } else if type == .bool {
                    feed[input.name] = TensorValue(.bool, shape: shape, ints: (0..<n).map { _ in Int64.random(in: 0...1, using: &random) })
                } else {
                    feed[input.name] = TensorValue(type.isInteger ? type : .int64, shape: shape, ints: (0..<n).map { _ in Int64.random(in: 0..<4, using: &random) })
                }
            }
            return feed
        }
    }

    /// Activations that runs side by side may hold in all: small models run several at once,
    /// one core each (no per-layer hand-offs between cores); large ones one at a time on all
    /// cores, so memory stays that of one run.
    package static let sideBySideBytes = 128 << 20

    /// Compares every output of ORIGINAL with FOLDED's over all feeds.
    /// `skipped` says why ORIGINAL could not be run (then nothing is compared); `problems`
    /// are FOLDED's failures.
    ///
    /// The runs are ORIGINAL and FOLDED on each feed. The first runs alone on all cores and
    /// measures its activations; if several runs fit in `sideBySideBytes`, the rest run that
    /// many at a time. Outputs are compared a feed at a time, in feed order, as soon as both
    /// of a feed's runs are done, so the report does not depend on which run ends first.
    package static func compare(original: Graph, folded: Graph, feeds: [[String: TensorValue]], tolerance: Double?, threads: Int = ReferenceExecutor.defaultThreads) -> (outputs: [OutputResult], skipped: String?, problems: [String]) {
        // The callers pass graphs with their constant work done (`precomputingConstants`), so
        // kernels composed from D and W are not recomputed for every input.
        ActivationMemory.keepFreedMemory()
        var comparison = Comparison(names: original.outputs.map(\.name), feeds: feeds.count, tolerance: tolerance)
        let line = ProgressLine()
        defer { line.finish() }
        let runs = feeds.indices.flatMap { [($0, true), ($0, false)] }
        func run(_ job: Int, threads: Int) -> (Result<[String: TensorValue], ExecutionError>, Int) {
            let (k, isOriginal) = runs[job]
            var executor = ReferenceExecutor(graph: isOriginal ? original : folded)
            executor.threads = threads
            let label = "verify-equivalence: end to end: input \(k + 1) of \(feeds.count), \(isOriginal ? "ORIGINAL" : "FOLDED")"
            executor.progress = { done, total in line.update("\(label): node \(done) of \(total)") }
            do {
                let (outputs, peak) = try executor.runMeasuringMemory(feeds[k])
                return (.success(outputs), peak)
            } catch {
                return (.failure(error), 0)
            }
        }
        guard !runs.isEmpty else { return ([], nil, []) }
        let (first, peak) = run(0, threads: threads)
        comparison.record(first, of: 0)
        // Runs side by side, as many as fit, in rounds of `workers`; a last, incomplete round
        // runs alone on all cores rather than leave cores idle.
        let rest = runs.count - 1
        let workers = max(1, min(rest, threads, sideBySideBytes / max(peak, 1)))
        let sideBySide = workers > 1 ? rest / workers * workers : 0
        // The next job and the comparison are shared by the workers, behind one lock; `run`
        // reads only the graphs and feeds.
        let shared = Mutex((next: 1, comparison: comparison))
        nonisolated(unsafe) let runJob = run
        DispatchQueue.concurrentPerform(iterations: workers > 1 ? workers : 0) { _ in
            while true {
                let (job, stop) = shared.withLock { state -> (Int, Bool) in
                    defer { state.next += 1 }
                    return (state.next, state.comparison.finished)
                }
                guard job <= sideBySide, !stop else { return }
                let (outcome, _) = runJob(job, max(1, threads / workers))
                shared.withLock { $0.comparison.record(outcome, of: job) }
            }
        }
        comparison = shared.withLock { $0.comparison }
        for job in (sideBySide + 1)..<max(sideBySide + 1, runs.count) where !comparison.finished {
            comparison.record(run(job, threads: threads).0, of: job)
        }
        return comparison.result(original.outputs.map(\.name))
    }

    /// The outcomes of ORIGINAL's and FOLDED's runs, compared a feed at a time in feed order.
    package struct Comparison {
        let names: [String]
        let feeds: Int
        let tolerance: Double?
        /// Outcomes of runs not yet compared (run 2k is ORIGINAL on feed k, 2k + 1 FOLDED).
        var pending: [Int: Result<[String: TensorValue], ExecutionError>] = [:]
        /// The next feed to compare.
        var feed = 0
        var results: [String: OutputResult] = [:]
        var skipped: String?
        var problems: [String] = []
        /// ORIGINAL or FOLDED failed: no further feed is compared (nor run).
        var finished = false

        init(names: [String], feeds: Int, tolerance: Double?) {
            self.names = names
            self.feeds = feeds
            self.tolerance = tolerance
        }

        mutating func record(_ outcome: Result<[String: TensorValue], ExecutionError>, of run: Int) {
            pending[run] = outcome
            while !finished, feed < feeds, let a = pending[2 * feed], let b = pending[2 * feed + 1] {
                pending[2 * feed] = nil
                pending[2 * feed + 1] = nil
                compare(a, b)
                feed += 1
            }
            // ORIGINAL failing on the next feed stops the runs at once.
            if !finished, case .failure(let error)? = pending[2 * feed] {
                skipped = "the reference executor cannot run ORIGINAL: \(error)"
                results = [:]
                finished = true
            }
        }

        private mutating func compare(_ a: Result<[String: TensorValue], ExecutionError>, _ b: Result<[String: TensorValue], ExecutionError>) {
            let expected: [String: TensorValue]
            switch a {
            case .success(let values): expected = values
            case .failure(let error):
                skipped = "the reference executor cannot run ORIGINAL: \(error)"
                results = [:]
                finished = true
                return
            }
            let actual: [String: TensorValue]
            switch b {
            case .success(let values): actual = values
            case .failure(let error):
                problems.append("FOLDED does not run on ORIGINAL's inputs: \(error)")
                finished = true
                return
            }
            let context = feeds > 1 ? "input \(feed + 1) of \(feeds)" : nil
            for name in names {
                guard let e = expected[name] else { continue }
                guard let f = actual[name] else {
                    problems.append("FOLDED does not produce output '\(name)'")
                    continue
                }
                guard e.shape == f.shape, e.type == f.type else {
                    problems.append("output '\(name)' is \(f.type) \(f.shape) in FOLDED, \(e.type) \(e.shape) in ORIGINAL")
                    continue
                }
                let tol = tolerance ?? (e.type.isFloat ? e.type.defaultTolerance : 0)
                var result = results[name] ?? OutputResult(name: name, stats: ErrorStats(tolerance: tol))
                result.stats.add(expected: e.doubles, actual: f.doubles, shape: e.shape, context: context)
                results[name] = result
            }
        }

        func result(_ order: [String]) -> (outputs: [OutputResult], skipped: String?, problems: [String]) {
            if let skipped { return ([], skipped, problems) }
            return (order.compactMap { results[$0] }, nil, problems)
        }
    }
}
