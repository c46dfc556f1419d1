/// Control flow: If, Loop and Scan, whose bodies are subgraphs that may read the values of
/// enclosing scopes by name (ONNX's outer-scope references).
enum ControlFlow {
    static let kernels: [String: OpKernel] = [
        "If": ifThenElse,
        "Loop": loop,
        "Scan": scan,
    ]

    /// The most iterations one Loop may run (real models' loops, over boxes, classes or
    /// a batch, run far fewer): a loop with neither a trip count nor a condition that ever
    /// turns false, or a trip count of billions, must end with an error, not hang the tool.
    static let maxIterations: Int64 = 1 << 16

    /// If: runs then_branch or else_branch (no inputs, outer values visible) by `cond`.
    static func ifThenElse(_ ctx: OpContext) throws -> [TensorValue] {
        let condition = try ctx.input(0)
        guard condition.count == 1, let flag = condition.int64s.first else {
            throw ctx.invalid("cond must hold one element, not shape \(condition.shape)")
        }
        let branch = flag != 0 ? "then_branch" : "else_branch"
        let body = try ctx.subgraph(branch)
        let outputs = try ctx.runSubgraph(body, label: branch, inputs: [])
        guard outputs.count >= ctx.node.outputs.count else {
            throw ctx.invalid("\(branch) has \(outputs.count) outputs, the node \(ctx.node.outputs.count)")
        }
        return Array(outputs.prefix(ctx.node.outputs.count))
    }

    /// Loop: `M` (trip count) and `cond` are optional; the body maps (iteration, cond,
    /// carried...) to (cond, carried..., scan outputs...). As in onnxruntime, the body's cond
    /// output is honored even when the cond input is omitted.
    static func loop(_ ctx: OpContext) throws -> [TensorValue] {
        let body = try ctx.subgraph("body")
        var tripCount: Int64?
        if let m = ctx.optionalInput(0) {
            guard m.count == 1, let value = m.int64s.first else { throw ctx.invalid("M must hold one element, not shape \(m.shape)") }
            tripCount = value
        }
        if let tripCount, tripCount > maxIterations {
            throw ctx.unsupported("a trip count of \(tripCount), more than the \(maxIterations) iterations the reference executor runs")
        }
        var running = true
        if let c = ctx.optionalInput(1) {
            guard c.count == 1, let value = c.int64s.first else { throw ctx.invalid("cond must hold one element, not shape \(c.shape)") }
            running = value != 0
        }
        var carried = try (2..<max(ctx.inputs.count, 2)).map { try ctx.input($0) }
        guard body.inputs.count == carried.count + 2 else {
            throw ctx.invalid("the body takes \(body.inputs.count) inputs, the node gives \(carried.count) loop-carried values (plus iteration and cond)")
        }
        let scanCount = body.outputs.count - 1 - carried.count
        guard scanCount >= 0 else { throw ctx.invalid("the body has \(body.outputs.count) outputs for \(carried.count) loop-carried values") }
        var scans = [[TensorValue]](repeating: [], count: scanCount)
        var scanTotals = [Int](repeating: 0, count: scanCount)
        var iteration: Int64 = 0
        while running, tripCount.map({ iteration < $0 }) ?? true {
            guard iteration < maxIterations else { throw ctx.unsupported("more than \(maxIterations) iterations") }
            let feeds = [TensorValue.scalar(iteration), TensorValue(.bool, shape: [], ints: [1])] + carried
            let outputs = try ctx.runSubgraph(body, label: "body", inputs: feeds)
            guard outputs[0].count == 1, let next = outputs[0].int64s.first else {
                throw ctx.invalid("the body's cond output must hold one element, not shape \(outputs[0].shape)")
            }
            running = next != 0
            carried = Array(outputs[1..<(1 + carried.count)])
            for k in 0..<scanCount { try collect(ctx, outputs[1 + carried.count + k], into: &scans[k], total: &scanTotals[k]) }
            iteration += 1
        }
        var results = carried
        for k in 0..<scanCount {
            results.append(try stack(ctx, scans[k], declared: body.outputs[1 + carried.count + k], axis: 0, reversed: false))
        }
        return results
    }

    /// Scan (opset 9 and later): the body maps (state..., one slice of each scan input...)
    /// to (state..., one slice of each scan output...).
    static func scan(_ ctx: OpContext) throws -> [TensorValue] {
        guard ctx.opset >= 9 else { throw ctx.unsupported("opset \(ctx.opset) (Scan-8 with sequence_lens)") }
        let body = try ctx.subgraph("body")
        let scanInputs = Int(try ctx.int("num_scan_inputs", default: 0))
        let all = try (0..<ctx.inputs.count).map { try ctx.input($0) }
        guard scanInputs >= 1, scanInputs <= all.count else { throw ctx.invalid("num_scan_inputs \(scanInputs) for \(all.count) inputs") }
        var state = Array(all.prefix(all.count - scanInputs))
        let sequences = Array(all.suffix(scanInputs))
        guard sequences.allSatisfy({ $0.rank >= 1 }) else { throw ctx.invalid("scan inputs must have rank 1 or more") }
        let scanOutputs = body.outputs.count - state.count
        guard body.inputs.count == all.count, scanOutputs >= 0 else {
            throw ctx.invalid("the body's \(body.inputs.count) inputs and \(body.outputs.count) outputs do not fit \(state.count) states and \(scanInputs) scan inputs")
        }
        func list(_ name: String, _ count: Int) throws -> [Int64] {
            let given = try ctx.ints(name) ?? []
            guard given.isEmpty || given.count == count else { throw ctx.invalid("\(name) has \(given.count) entries for \(count) tensors") }
            return given.isEmpty ? [Int64](repeating: 0, count: count) : given
        }
        let inputAxes = try zip(try list("scan_input_axes", scanInputs), sequences).map { try TensorMath.axis($0, rank: $1.rank, op: ctx.nodeLabel) }
        let inputReversed = try list("scan_input_directions", scanInputs).map { $0 != 0 }
        let outputAxes = try list("scan_output_axes", scanOutputs)
        let outputReversed = try list("scan_output_directions", scanOutputs).map { $0 != 0 }
        let length = sequences.first.map { $0.shape[inputAxes[0]] } ?? 0
        for (k, sequence) in sequences.enumerated() where sequence.shape[inputAxes[k]] != length {
            throw ctx.invalid("scan input \(k) has \(sequence.shape[inputAxes[k]]) steps, the first \(length)")
        }
        // An empty scan input's steps hold no values, so nothing in the file bounds their
        // number (the 2^40-long axis of a [0, 2^40] input): no more than a Loop's iterations.
        if sequences.allSatisfy({ $0.count == 0 }), Int64(length) > maxIterations {
            throw ctx.unsupported("\(length) steps over empty scan inputs, more than the \(maxIterations) iterations the reference executor runs")
        }
        var collected = [[TensorValue]](repeating: [], count: scanOutputs)
        var totals = [Int](repeating: 0, count: scanOutputs)
        for step in 0..<length {
            let slices = try sequences.enumerated().map { k, sequence in
                try slice(sequence, axis: inputAxes[k], at: inputReversed[k] ? length - 1 - step : step, op: ctx.nodeLabel)
            }
            let outputs = try ctx.runSubgraph(body, label: "body", inputs: state + slices)
            state = Array(outputs.prefix(state.count))
            for k in 0..<scanOutputs { try collect(ctx, outputs[state.count + k], into: &collected[k], total: &totals[k]) }
        }
        var results = state
        for k in 0..<scanOutputs {
            let declared = body.outputs[state.count + k]
            let rank = (collected[k].first?.rank ?? declared.shape?.count ?? 0) + 1
            let axis = try TensorMath.axis(outputAxes[k], rank: rank, op: ctx.nodeLabel)
            results.append(try stack(ctx, collected[k], declared: declared, axis: axis, reversed: outputReversed[k]))
        }
        return results
    }

    /// Appends one iteration's scan output to `parts` (which `stack` joins into one tensor),
    /// `total` counting their elements: a body's output times a trip count from the file may
    /// pass `maxElements` long before the last iteration, so it is checked as it grows.
    static func collect(_ ctx: OpContext, _ value: TensorValue, into parts: inout [TensorValue], total: inout Int) throws {
        total += value.count
        guard total <= TensorMath.maxElements else {
            throw ctx.unsupported("scan outputs of more than \(TensorMath.maxElements) elements are too large for the reference executor")
        }
        parts.append(value)
    }

    /// The slice of `x` at `index` along `axis`, that axis removed.
    static func slice(_ x: TensorValue, axis: Int, at index: Int, op: String) throws -> TensorValue {
        let part = try ShapeOps.range(x, axis: axis, start: index, end: index + 1, op: op)
        var shape = part.shape
        shape.remove(at: axis)
        return ShapeOps.with(part, shape: shape)
    }

    /// The per-iteration values stacked along a new `axis` (in reverse order when
    /// `reversed`); with no iteration, an empty tensor shaped by the body's declaration.
    static func stack(_ ctx: OpContext, _ parts: [TensorValue], declared: ValueInfo, axis: Int, reversed: Bool) throws -> TensorValue {
        guard let first = parts.first else {
            var shape = [0]
            if let dims = declared.shape {
                for dim in dims {
                    // A negative dim (an exporter's -1) is as good as unknown.
                    guard case .fixed(let n) = dim, n >= 0 else { shape = [0]; break }
                    shape.append(n)
                }
            }
            // The declared dims are the file's: their product checked like any shape's.
            _ = try TensorMath.elementCount(shape, op: ctx.nodeLabel)
            let type = declared.type ?? .float
            return type.isFloat ? TensorValue(type, shape: shape, floats: []) : TensorValue(type.isInteger ? type : .int64, shape: shape, ints: [])
        }
        for part in parts where part.shape != first.shape || part.type != first.type {
            throw ctx.invalid("scan output '\(declared.name)' changes from \(first.type) \(first.shape) to \(part.type) \(part.shape) between iterations")
        }
        let ordered = reversed ? parts.reversed() : parts
        // Stack along axis 0, then move that axis into place.
        var stacked: TensorValue
        switch first.storage {
        case .floats: stacked = TensorValue(first.type, shape: [parts.count] + first.shape, floats: ordered.flatMap(\.doubles))
        case .ints: stacked = TensorValue(first.type, shape: [parts.count] + first.shape, ints: ordered.flatMap(\.int64s))
        case .opaque: throw ctx.unsupported("non-numeric scan output '\(declared.name)'")
        }
        if axis != 0 {
            var perm = Array(1...first.rank)
            perm.insert(0, at: axis)
            stacked = try ShapeOps.transpose(ctx, stacked, perm)
        }
        return stacked
    }
}

/// Where subgraphs sit in nodes and which outer names they read.
enum Subgraphs {
    /// Calls `body` for every graph attribute of `node` (with the attribute's name).
    static func each(in node: Node, _ body: (String, Graph) -> Void) {
        for attribute in node.attributes {
            switch attribute.value {
            case .graph(let g): body(attribute.name, g)
            case .graphs(let list): for g in list { body(attribute.name, g) }
            default: continue
            }
        }
    }

    /// The names `node`'s subgraphs (at any depth) read from enclosing scopes, in first-read
    /// order: what the node depends on besides its inputs.
    static func outerReads(of node: Node) -> [String] {
        var result: [String] = []
        var seen = Set<String>()
        each(in: node) { _, g in
            for name in outerReads(of: g) where seen.insert(name).inserted { result.append(name) }
        }
        return result
    }

    /// The names graph `g` reads but does not define (as an input, an initializer or a
    /// node output), its nested subgraphs' reads included.
    static func outerReads(of g: Graph) -> [String] {
        var defined = Set(g.inputs.map(\.name))
        defined.formUnion(g.initializers.keys)
        for node in g.nodes { defined.formUnion(node.outputs) }
        var result: [String] = []
        var seen = Set<String>()
        func read(_ name: String) {
            if !name.isEmpty, !defined.contains(name), seen.insert(name).inserted { result.append(name) }
        }
        for node in g.nodes {
            node.inputs.forEach(read)
            outerReads(of: node).forEach(read)
        }
        g.outputs.map(\.name).forEach(read)
        return result
    }
}

extension OpContext {
    /// The graph attribute `name`, required.
    func subgraph(_ name: String) throws -> Graph {
        guard case .graph(let g)? = node[attribute: name] else { throw invalid("no graph attribute '\(name)'") }
        return g
    }

    /// Runs subgraph `body` (an attribute named `label`) with `inputs` bound to its inputs in
    /// order and the captured outer values visible; returns its outputs in order. Errors
    /// inside name the node and branch they come from.
    func runSubgraph(_ body: Graph, label: String, inputs: [TensorValue]) throws -> [TensorValue] {
        guard inputs.count == body.inputs.count else {
            throw invalid("\(label) declares \(body.inputs.count) inputs, \(inputs.count) given")
        }
        var feeds: [String: TensorValue] = [:]
        for (info, value) in zip(body.inputs, inputs) { feeds[info.name] = value }
        let names = body.outputs.map(\.name)
        let values: [String: TensorValue]
        do {
            var executor = ReferenceExecutor(graph: body, opset: opset)
            executor.threads = threads
            values = try executor.evaluate(names, feeds: feeds, outer: captured)
        } catch {
            switch error {
            case let .unsupported(op, reason): throw ExecutionError.unsupported(op: "\(op) (in \(nodeLabel) \(label))", reason: reason)
            case let .invalid(op, reason): throw ExecutionError.invalid(op: "\(op) (in \(nodeLabel) \(label))", reason: reason)
            case .missingValue(let name): throw invalid("\(label) reads '\(name)', which no scope defines")
            }
        }
        return try names.map { name in
            guard let value = values[name] else { throw invalid("\(label) does not compute its output '\(name)'") }
            return value
        }
    }
}
