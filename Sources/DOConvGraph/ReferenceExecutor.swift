/// Why the executor could not run a graph.
public enum ExecutionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An op (or an op mode) the executor does not implement.
    case unsupported(op: String, reason: String)
    /// The graph or a value is inconsistent (shapes, missing inputs, bad attributes).
    case invalid(op: String, reason: String)
    /// A value is read that nothing defines.
    case missingValue(String)

    public var description: String {
        switch self {
        case let .unsupported(op, reason): return "\(op): not supported: \(reason)"
        case let .invalid(op, reason): return "\(op): \(reason)"
        case let .missingValue(name): return "value '\(name)' is not defined"
        }
    }
}

/// The inputs, attributes and opset of one node being run.
struct OpContext {
    let node: Node
    let inputs: [TensorValue?]
    let opset: Int64
    /// The enclosing scopes' values the node's subgraphs read (If, Loop, Scan bodies), by name.
    var captured: [String: TensorValue] = [:]
    /// Threads the node's kernels may use.
    var threads = FastKernels.threads

    var op: String { node.opType }

    /// Input `k`, required.
    func input(_ k: Int) throws -> TensorValue {
        guard k < inputs.count, let value = inputs[k] else { throw invalid("input \(k) is missing") }
        return value
    }

    /// Input `k` when present (optional inputs may be omitted or "").
    func optionalInput(_ k: Int) -> TensorValue? { k < inputs.count ? inputs[k] : nil }

    func int(_ name: String, default value: Int64) throws -> Int64 {
        switch node[attribute: name] {
        case nil: return value
        case .int(let v)?: return v
        default: throw invalid("attribute \(name) is not an int")
        }
    }

    func float(_ name: String, default value: Double) throws -> Double {
        switch node[attribute: name] {
        case nil: return value
        case .float(let v)?: return v
        case .int(let v)?: return Double(v)
        default: throw invalid("attribute \(name) is not a float")
        }
    }

    func ints(_ name: String) throws -> [Int64]? {
        switch node[attribute: name] {
        case nil: return nil
        case .ints(let v)?: return v
        case .int(let v)?: return [v]
        default: throw invalid("attribute \(name) is not a list of ints")
        }
    }

    func floats(_ name: String) throws -> [Double]? {
        switch node[attribute: name] {
        case nil: return nil
        case .floats(let v)?: return v
        default: throw invalid("attribute \(name) is not a list of floats")
        }
    }

    func string(_ name: String, default value: String) throws -> String {
        switch node[attribute: name] {
        case nil: return value
        case .string(let v)?: return v
        default: throw invalid("attribute \(name) is not a string")
        }
    }

    func invalid(_ reason: String) -> ExecutionError { .invalid(op: nodeLabel, reason: reason) }
    func unsupported(_ reason: String) -> ExecutionError { .unsupported(op: nodeLabel, reason: reason) }

    /// The node as error lines name it; control characters in a name are escaped, so that
    /// an error stays one line whatever the model calls its nodes.
    var nodeLabel: String {
        let name = String(node.name.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return name.isEmpty ? node.opType : "\(node.opType) '\(name)'"
    }

    /// A float tensor input as doubles, with a check on the element type.
    func floatInput(_ k: Int) throws -> TensorValue {
        let value = try input(k)
        guard value.type.isFloat else { throw invalid("input \(k) must be a float tensor, not \(value.type)") }
        return value
    }
}

/// Computes one node's outputs from its inputs.
typealias OpKernel = @Sendable (OpContext) throws -> [TensorValue]

/// A small reference interpreter for the ONNX ops of common CNNs.
///
/// Deliberately simple: plain loops, no vectorization, float tensors computed in Float64
/// (float32 values are not rounded back to float32 between ops; float16/bfloat16 casts do
/// round). It shares no code with the fold, so it can check one.
public struct ReferenceExecutor {
    public let graph: Graph
    /// The default-domain opset the nodes run under (a subgraph runs under its model's).
    let opset: Int64
    /// For each node that holds subgraphs (by index): the outer-scope names they read.
    let captures: [Int: [String]]
    /// Called after each node of a run with (nodes done, nodes to run), for progress reports.
    public var progress: ((Int, Int) -> Void)?
    /// Threads each node's kernels may use: all online cores (or `DOCONV_THREADS`) unless
    /// several runs share the cores. Results do not depend on it.
    public var threads = FastKernels.threads

    /// All online cores, or `DOCONV_THREADS`.
    public static var defaultThreads: Int { FastKernels.threads }

    public init(graph: Graph) {
        self.init(graph: graph, opset: graph.opset)
    }

    init(graph: Graph, opset: Int64) {
        self.graph = graph
        self.opset = opset
        var captures: [Int: [String]] = [:]
        for (k, node) in graph.nodes.enumerated() {
            let names = Subgraphs.outerReads(of: node)
            if !names.isEmpty { captures[k] = names }
        }
        self.captures = captures
    }

    /// Every op family's kernels, by op type (default domain only).
    static let kernels: [String: OpKernel] = {
        var table: [String: OpKernel] = [:]
        for family in [ElementwiseOps.kernels, ConvPoolOps.kernels, ShapeOps.kernels, ReductionOps.kernels, LinearAlgebraOps.kernels,
                       ResizeOps.kernels, DetectionOps.kernels, IndexingOps.kernels, ControlFlow.kernels] {
            table.merge(family) { first, _ in first }
        }
        return table
    }()

    /// Op types the executor implements (default ONNX domain).
    public static var supportedOps: [String] { kernels.keys.sorted() }

    /// Op types of the graph, its subgraphs included, the executor cannot run ("domain:op"
    /// for other domains), sorted.
    public var unsupportedOps: [String] {
        var result = Set<String>()
        func visit(_ g: Graph) {
            for node in g.nodes {
                if !node.isStandardDomain { result.insert("\(node.domain):\(node.opType)") } else if Self.kernels[node.opType] == nil { result.insert(node.opType) }
                Subgraphs.each(in: node) { _, body in visit(body) }
            }
        }
        visit(graph)
        return result.sorted()
    }

    /// Runs the graph on `feeds` (by input name) and returns every graph output.
    public func run(_ feeds: [String: TensorValue]) throws(ExecutionError) -> [String: TensorValue] {
        try evaluate(graph.outputs.map(\.name), feeds: feeds)
    }

    /// `run`, also returning the most bytes the run's activations (values computed from the
    /// feeds, initializers excluded) held at once.
    public func runMeasuringMemory(_ feeds: [String: TensorValue]) throws(ExecutionError) -> (outputs: [String: TensorValue], peakActivationBytes: Int) {
        var peak = 0
        let outputs = try evaluate(graph.outputs.map(\.name), feeds: feeds, outer: [:], peakBytes: &peak)
        return (outputs, peak)
    }

    /// Computes the named values (graph outputs or intermediates), running only the nodes
    /// they depend on. Constant subgraphs (a composed kernel, say) need no feeds.
    public func evaluate(_ names: [String], feeds: [String: TensorValue] = [:]) throws(ExecutionError) -> [String: TensorValue] {
        try evaluate(names, feeds: feeds, outer: [:])
    }

    /// `evaluate` with the values of enclosing scopes visible (a subgraph's run): the graph's
    /// own initializers and feeds shadow them.
    func evaluate(_ names: [String], feeds: [String: TensorValue], outer: [String: TensorValue]) throws(ExecutionError) -> [String: TensorValue] {
        var peak = 0
        return try evaluate(names, feeds: feeds, outer: outer, peakBytes: &peak)
    }

    /// `evaluate`, with the most bytes its activations held at once in `peakBytes`.
    func evaluate(_ names: [String], feeds: [String: TensorValue], outer: [String: TensorValue], peakBytes: inout Int) throws(ExecutionError) -> [String: TensorValue] {
        var values = outer
        values.merge(graph.initializers) { _, own in own }
        for (name, value) in feeds { values[name] = value }
        let producers = graph.producers
        // The nodes the requested values need; a node with subgraphs also needs the outer
        // values its subgraphs read.
        var needed = Set<Int>()
        var stack = names
        var seen = Set<String>()
        while let name = stack.popLast() {
            guard !name.isEmpty, seen.insert(name).inserted else { continue }
            if values[name] != nil { continue }
            guard let k = producers[name] else { throw .missingValue(name) }
            if needed.insert(k).inserted { stack.append(contentsOf: graph.nodes[k].inputs + (captures[k] ?? [])) }
        }
        // Each value is dropped after its last reader, so a run holds only the activations
        // still to be read (plus the constants, which the graph holds anyway).
        let order = needed.sorted()
        let requested = Set(names)
        var lastReader: [String: Int] = [:]
        for k in order { for name in graph.nodes[k].inputs + (captures[k] ?? []) where !name.isEmpty { lastReader[name] = k } }
        var liveBytes = feeds.values.reduce(0) { $0 + $1.byteCount }
        peakBytes = max(peakBytes, liveBytes)
        for (position, k) in order.enumerated() {
            defer {
                for name in graph.nodes[k].inputs + (captures[k] ?? []) + graph.nodes[k].outputs
                where !name.isEmpty && !requested.contains(name) && (lastReader[name] ?? -1) <= k && graph.initializers[name] == nil {
                    // Enclosing scopes' values were not counted as this run's activations.
                    if let value = values.removeValue(forKey: name), outer[name] == nil || feeds[name] != nil { liveBytes -= value.byteCount }
                }
                progress?(position + 1, order.count)
            }
            let node = graph.nodes[k]
            var inputs: [TensorValue?] = []
            for name in node.inputs {
                if name.isEmpty { inputs.append(nil); continue }
                guard let value = values[name] else { throw .missingValue(name) }
                inputs.append(value)
            }
            var captured: [String: TensorValue] = [:]
            for name in captures[k] ?? [] {
                guard let value = values[name] else { throw .missingValue(name) }
                captured[name] = value
            }
            let outputs = try Self.run(node, inputs: inputs, opset: opset, captured: captured, threads: threads)
            for (output, value) in zip(node.outputs, outputs) where !output.isEmpty {
                values[output] = value
                liveBytes += value.byteCount
            }
            peakBytes = max(peakBytes, liveBytes)
        }
        var result: [String: TensorValue] = [:]
        for name in names {
            guard let value = values[name] else { throw .missingValue(name) }
            result[name] = value
        }
        return result
    }

    /// The ops that may take strings and complex numbers (opaque bytes): they pass values
    /// through in their order, without computing on them or reordering them.
    static let carriesOpaqueData: Set<String> = [
        "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Size", "If", "Loop", "Scan", "Constant",
    ]

    /// Runs one node.
    static func run(_ node: Node, inputs: [TensorValue?], opset: Int64, captured: [String: TensorValue] = [:],
                    threads: Int = FastKernels.threads) throws(ExecutionError) -> [TensorValue] {
        guard node.isStandardDomain else { throw .unsupported(op: node.opType, reason: "custom domain '\(node.domain)'") }
        guard let kernel = kernels[node.opType] else { throw .unsupported(op: node.opType, reason: "no reference implementation") }
        let context = OpContext(node: node, inputs: inputs, opset: opset, captured: captured, threads: max(1, threads))
        // Strings and complex numbers are carried as opaque bytes: only ops that move data
        // without computing on it may take them.
        if !carriesOpaqueData.contains(node.opType), let value = inputs.lazy.compactMap({ $0 }).first(where: { if case .opaque = $0.storage { true } else { false } }) {
            throw context.unsupported("\(value.type) inputs")
        }
        do {
            let outputs = try kernel(context)
            guard node.outputs.dropFirst(outputs.count).allSatisfy(\.isEmpty) else {
                throw context.unsupported("output \(outputs.count) and beyond")
            }
            for output in outputs {
                // Checked for every output, opaque ones too: a shape an op built from a file's
                // dims (a transpose moving an empty tensor's 0 last) may not have a count, and
                // the ops reading it take its `count` as checked here.
                let count = try TensorMath.elementCount(output.shape, op: context.nodeLabel)
                let expected: Int? = {
                    switch output.storage {
                    case .floats(let v): return v.count
                    case .ints(let v): return v.count
                    case .opaque: return nil
                    }
                }()
                if let expected, expected != count {
                    throw context.invalid("internal: produced \(expected) values for shape \(output.shape)")
                }
            }
            return outputs
        } catch let error as ExecutionError {
            throw error
        } catch {
            throw context.invalid("\(error)")
        }
    }
}
