import DOConvCore
import DOConvGraph

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
enum EndToEnd {
    /// Dim names taken for a batch when no --dim gives them (and any dim 0).
    static func isBatchLike(_ name: String, axis: Int) -> Bool {
        axis == 0 || name.lowercased().contains("batch") || ["n", "b", "bs"].contains(name.lowercased())
    }

    /// The concrete shape of every input ORIGINAL must be fed.
    static func shapes(of graph: Graph, dims: [String: Int]) throws(VerifyError) -> [(ValueInfo, [Int])] {
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
    static func feeds(for graph: Graph, dims: [String: Int], count: Int, seed: UInt64) throws(VerifyError) -> [[String: TensorValue]] {
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

    /// Compares every output of ORIGINAL with FOLDED's over all feeds.
    /// `skipped` says why ORIGINAL could not be run (then nothing is compared); `problems`
    /// are FOLDED's failures.
    static func compare(original: Graph, folded: Graph, feeds: [[String: TensorValue]], tolerance: Double?) -> (outputs: [OutputResult], skipped: String?, problems: [String]) {
        var results: [String: OutputResult] = [:]
        var problems: [String] = []
        // The callers pass graphs with their constant work done (`precomputingConstants`), so
        // kernels composed from D and W are not recomputed for every input.
        var (a, b) = (ReferenceExecutor(graph: original), ReferenceExecutor(graph: folded))
        let line = ProgressLine()
        defer { line.finish() }
        for (k, feed) in feeds.enumerated() {
            a.progress = { done, total in line.update("verify-equivalence: end to end: input \(k + 1) of \(feeds.count), ORIGINAL: node \(done) of \(total)") }
            b.progress = { done, total in line.update("verify-equivalence: end to end: input \(k + 1) of \(feeds.count), FOLDED: node \(done) of \(total)") }
            let context = feeds.count > 1 ? "input \(k + 1) of \(feeds.count)" : nil
            let expected: [String: TensorValue]
            do { expected = try a.run(feed) } catch {
                return ([], "the reference executor cannot run ORIGINAL: \(error)", problems)
            }
            let actual: [String: TensorValue]
            do { actual = try b.run(feed) } catch {
                problems.append("FOLDED does not run on ORIGINAL's inputs: \(error)")
                break
            }
            for output in original.outputs {
                guard let e = expected[output.name] else { continue }
                guard let f = actual[output.name] else {
                    problems.append("FOLDED does not produce output '\(output.name)'")
                    continue
                }
                guard e.shape == f.shape, e.type == f.type else {
                    problems.append("output '\(output.name)' is \(f.type) \(f.shape) in FOLDED, \(e.type) \(e.shape) in ORIGINAL")
                    continue
                }
                let tol = tolerance ?? (e.type.isFloat ? LayerCheck.defaultTolerance(e.type) : 0)
                var result = results[output.name] ?? OutputResult(name: output.name, stats: ErrorStats(tolerance: tol))
                result.stats.add(expected: e.doubles, actual: f.doubles, shape: e.shape, context: context)
                results[output.name] = result
            }
        }
        return (original.outputs.compactMap { results[$0.name] }, nil, problems)
    }
}
