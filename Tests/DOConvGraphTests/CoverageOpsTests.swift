import XCTest
@testable import DOConvGraph

/// The ops added for segmentation and detection models (issue 13) on small cases computed by
/// hand: control flow with outer-scope reads, Resize modes, detection and indexing ops.
final class CoverageOpsTests: XCTestCase {
    func f(_ shape: [Int], _ values: [Double]) -> TensorValue { TensorValue(.float, shape: shape, floats: values) }
    func i(_ shape: [Int], _ values: [Int64]) -> TensorValue { TensorValue(.int64, shape: shape, ints: values) }
    func b(_ value: Bool) -> TensorValue { TensorValue(.bool, shape: [], ints: [value ? 1 : 0]) }

    /// Runs one node on `inputs` (graph inputs in order; nil for an omitted input).
    func run(_ op: String, _ inputs: [TensorValue?], attributes: [(name: String, value: Attribute)] = [], outputs: Int = 1,
             opset: Int64 = 19) throws -> [TensorValue] {
        let names = inputs.indices.map { inputs[$0] == nil ? "" : "in\($0)" }
        let outs = (0..<outputs).map { "out\($0)" }
        var feeds: [String: TensorValue] = [:]
        for (name, value) in zip(names, inputs) { if let value { feeds[name] = value } }
        let graph = Graph(nodes: [Node(opType: op, inputs: names, outputs: outs, attributes: attributes)],
                          inputs: names.filter { !$0.isEmpty }.map { ValueInfo(name: $0, type: nil, shape: nil) },
                          outputs: outs.map { ValueInfo(name: $0, type: nil, shape: nil) }, opsets: ["": opset])
        let result = try ReferenceExecutor(graph: graph).run(feeds)
        return try outs.map { try XCTUnwrap(result[$0]) }
    }

    func assertClose(_ got: TensorValue, _ expected: [Double], shape: [Int], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.shape, shape, file: file, line: line)
        XCTAssertEqual(got.doubles.count, expected.count, file: file, line: line)
        for (a, e) in zip(got.doubles, expected) { XCTAssertEqual(a, e, accuracy: 1e-12, file: file, line: line) }
    }

    // MARK: Control flow

    /// then: y = h * w; else: y = x - h; h is computed by the main graph and read only by the
    /// branches, so evaluate must count it as a dependency of the If.
    func ifGraph() -> Graph {
        let thenBranch = Graph(name: "then", nodes: [Node(opType: "Mul", inputs: ["h", "w"], outputs: ["t"])],
                               outputs: [ValueInfo(name: "t", type: .float, shape: nil)])
        let elseBranch = Graph(name: "else", nodes: [Node(opType: "Sub", inputs: ["x", "h"], outputs: ["e"])],
                               outputs: [ValueInfo(name: "e", type: .float, shape: nil)])
        return Graph(nodes: [
            Node(opType: "Add", inputs: ["x", "w"], outputs: ["h"]),
            Node(opType: "If", inputs: ["c"], outputs: ["y"], attributes: [("then_branch", .graph(thenBranch)), ("else_branch", .graph(elseBranch))]),
        ], initializers: [("w", f([2], [10, 20]))],
        inputs: [ValueInfo(name: "c", type: .bool, shape: []), ValueInfo(name: "x", type: .float, shape: [.fixed(2)])],
        outputs: [ValueInfo(name: "y", type: .float, shape: nil)])
    }

    func testIfReadsOuterScopeValues() throws {
        let executor = ReferenceExecutor(graph: ifGraph())
        XCTAssertEqual(executor.captures[1]?.sorted(), ["h", "w", "x"])
        XCTAssertEqual(try executor.run(["c": b(true), "x": f([2], [1, 2])])["y"], f([2], [110, 440]))
        XCTAssertEqual(try executor.run(["c": b(false), "x": f([2], [1, 2])])["y"], f([2], [-10, -20]))
        // Only the If's dependencies run, outer reads included.
        XCTAssertEqual(try executor.evaluate(["y"], feeds: ["c": b(true), "x": f([2], [0, 0])])["y"], f([2], [100, 400]))
    }

    func testSubgraphErrorsNameTheirNode() throws {
        // The then branch adds a 3-vector to the outer 2-vector x.
        let bad = Graph(name: "then", nodes: [Node(opType: "Add", inputs: ["x", "three"], outputs: ["t"])],
                        initializers: [("three", f([3], [1, 2, 3]))], outputs: [ValueInfo(name: "t", type: .float, shape: nil)])
        let graph = Graph(nodes: [Node(opType: "If", name: "choose", inputs: ["c"], outputs: ["y"],
                                       attributes: [("then_branch", .graph(bad)), ("else_branch", .graph(bad))])],
                          outputs: [ValueInfo(name: "y", type: .float, shape: nil)])
        XCTAssertThrowsError(try ReferenceExecutor(graph: graph).run(["c": b(true), "x": f([2], [1, 2])])) { error in
            XCTAssertTrue("\(error)".contains("Add (in If 'choose' then_branch)"), "\(error)")
        }
    }

    func testUnsupportedOpsInsideSubgraphsAreNamed() {
        let body = Graph(nodes: [Node(opType: "LSTM", inputs: ["x"], outputs: ["y"])], outputs: [ValueInfo(name: "y", type: nil, shape: nil)])
        let graph = Graph(nodes: [Node(opType: "If", inputs: ["c"], outputs: ["y"], attributes: [("then_branch", .graph(body)), ("else_branch", .graph(body))])])
        XCTAssertEqual(ReferenceExecutor(graph: graph).unsupportedOps, ["LSTM"])
    }

    /// acc = acc * w + i (w read from the outer scope), count += 1, scan output acc; runs while
    /// i < M and the body's cond (sum(acc) < limit) holds.
    func loopGraph(tripCount: Int64?, condition: Bool?) -> (Graph, [String: TensorValue]) {
        let body = Graph(name: "body", nodes: [
            Node(opType: "Cast", inputs: ["i"], outputs: ["fi"], attributes: [("to", .int(1))]),
            Node(opType: "Mul", inputs: ["acc_in", "w"], outputs: ["scaled"]),
            Node(opType: "Add", inputs: ["scaled", "fi"], outputs: ["acc_out"]),
            Node(opType: "ReduceSum", inputs: ["acc_out"], outputs: ["total"], attributes: [("keepdims", .int(0))]),
            Node(opType: "Less", inputs: ["total", "limit"], outputs: ["cond_out"]),
            Node(opType: "Identity", inputs: ["acc_out"], outputs: ["scan"]),
        ], inputs: [ValueInfo(name: "i", type: .int64, shape: []), ValueInfo(name: "cond_in", type: .bool, shape: []),
                    ValueInfo(name: "acc_in", type: .float, shape: [.fixed(2)])],
        outputs: [ValueInfo(name: "cond_out", type: .bool, shape: []), ValueInfo(name: "acc_out", type: .float, shape: [.fixed(2)]),
                  ValueInfo(name: "scan", type: .float, shape: [.fixed(2)])])
        var feeds: [String: TensorValue] = ["x": f([2], [1, 2])]
        if let tripCount { feeds["M"] = TensorValue.scalar(tripCount) }
        if let condition { feeds["cond"] = b(condition) }
        let graph = Graph(nodes: [
            Node(opType: "Loop", inputs: [tripCount == nil ? "" : "M", condition == nil ? "" : "cond", "x"], outputs: ["acc", "scans"],
                 attributes: [("body", .graph(body))]),
        ], initializers: [("w", f([2], [2, 3])), ("limit", TensorValue.scalar(100.0))],
        outputs: [ValueInfo(name: "acc", type: .float, shape: nil), ValueInfo(name: "scans", type: .float, shape: nil)])
        return (graph, feeds)
    }

    func testLoopCarriesValuesAndStacksScanOutputs() throws {
        // i = 0: [2, 6]; i = 1: [5, 19]; i = 2: [12, 59] (sum 71 < 100); M = 3 stops.
        let (graph, feeds) = loopGraph(tripCount: 3, condition: true)
        let result = try ReferenceExecutor(graph: graph).run(feeds)
        XCTAssertEqual(result["acc"], f([2], [12, 59]))
        XCTAssertEqual(result["scans"], f([3, 2], [2, 6, 5, 19, 12, 59]))
        // Without M the body's cond ends it: i = 3 gives [27, 180], sum 207 >= 100.
        let (whileGraph, whileFeeds) = loopGraph(tripCount: nil, condition: true)
        XCTAssertEqual(try ReferenceExecutor(graph: whileGraph).run(whileFeeds)["scans"]?.shape, [4, 2])
        // Zero iterations: the initial values, an empty scan output shaped by the body.
        let (none, noneFeeds) = loopGraph(tripCount: 0, condition: nil)
        let empty = try ReferenceExecutor(graph: none).run(noneFeeds)
        XCTAssertEqual(empty["acc"], f([2], [1, 2]))
        XCTAssertEqual(empty["scans"], f([0, 2], []))
    }

    func testScanRunsBackwardsAndStacksOnAnAxis() throws {
        let body = Graph(name: "body", nodes: [Node(opType: "Add", inputs: ["s_in", "item"], outputs: ["s_out"]),
                                               Node(opType: "Identity", inputs: ["s_out"], outputs: ["emit"])],
                         inputs: [ValueInfo(name: "s_in", type: .float, shape: [.fixed(2)]), ValueInfo(name: "item", type: .float, shape: [.fixed(2)])],
                         outputs: [ValueInfo(name: "s_out", type: .float, shape: nil), ValueInfo(name: "emit", type: .float, shape: nil)])
        let y = try run("Scan", [f([2], [0, 0]), f([2, 3], [1, 2, 3, 4, 5, 6])], attributes: [
            ("body", .graph(body)), ("num_scan_inputs", .int(1)), ("scan_input_axes", .ints([1])), ("scan_input_directions", .ints([1])),
            ("scan_output_axes", .ints([1])),
        ], outputs: 2)
        XCTAssertEqual(y[0], f([2], [6, 15]))
        XCTAssertEqual(y[1], f([2, 3], [3, 5, 6, 6, 11, 15]))  // running sums of 3, 2, 1 and 6, 5, 4, stacked on axis 1
    }

    // MARK: Resize

    func testResizeLinearHalfPixelAndAlignCorners() throws {
        let x = f([1, 1, 1, 2], [0, 10])
        // half_pixel, scale 2: sources -0.25, 0.25, 0.75, 1.25 (clamped to the edges).
        let half = try run("Resize", [x, nil, f([4], [1, 1, 1, 2])], attributes: [("mode", .string("linear"))])[0]
        assertClose(half, [0, 2.5, 7.5, 10], shape: [1, 1, 1, 4])
        let corners = try run("Resize", [x, nil, nil, i([4], [1, 1, 1, 3])],
                              attributes: [("mode", .string("linear")), ("coordinate_transformation_mode", .string("align_corners"))])[0]
        assertClose(corners, [0, 5, 10], shape: [1, 1, 1, 3])
    }

    func testResizeCubicAndAntialias() throws {
        let x = f([4], [0, 1, 2, 3])
        // Cubic with a = -0.5 reproduces linear data where all four taps are inside; at 0.5
        // and 2.5 one tap reads the edge value instead of -1 (or 4), with weight c(1.5) = -1/16.
        let cubic = try run("Resize", [x, nil, nil, i([1], [7])],
                            attributes: [("mode", .string("cubic")), ("cubic_coeff_a", .float(-0.5)), ("coordinate_transformation_mode", .string("align_corners"))])[0]
        assertClose(cubic, [0, 0.4375, 1, 1.5, 2, 2.5625, 3], shape: [7])
        // Antialias, scale 0.5, half_pixel: a triangle filter two pixels wide on each side of
        // 0.5 and 2.5, edges clamped: (0.75 * 0 + 0.75 * 1 + 0.25 * 0 + 0.25 * 2) / 2 and so on.
        let aa = try run("Resize", [x, nil, f([1], [0.5])], attributes: [("mode", .string("linear")), ("antialias", .int(1))])[0]
        assertClose(aa, [0.625, 2.375], shape: [2])
    }

    func testResizeCropAndResizeExtrapolates() throws {
        let x = f([3], [1, 2, 3])
        let y = try run("Resize", [x, f([2], [-0.5, 1.5]), nil, i([1], [5])],
                        attributes: [("mode", .string("linear")), ("coordinate_transformation_mode", .string("tf_crop_and_resize")),
                                     ("extrapolation_value", .float(-1))])[0]
        // Sources -1, 0, 1, 2, 3.
        assertClose(y, [-1, 1, 2, 3, -1], shape: [5])
    }

    func testResizeNearestModesAndAspectRatio() throws {
        let x = f([1, 1, 2, 2], [1, 2, 3, 4])
        // not_larger: sizes (3, 6) allow scale min(1.5, 3) = 1.5, so 3 x 3.
        let y = try run("Resize", [x, nil, nil, i([2], [3, 6])],
                        attributes: [("axes", .ints([2, 3])), ("keep_aspect_ratio_policy", .string("not_larger"))])[0]
        XCTAssertEqual(y.shape, [1, 1, 3, 3])
        let ceil = try run("Resize", [f([2], [1, 2]), nil, f([1], [2])], attributes: [("nearest_mode", .string("ceil"))])[0]
        XCTAssertEqual(ceil, f([4], [1, 2, 2, 2]))
    }

    // MARK: Detection

    func testNonZeroAndTopKTies() throws {
        XCTAssertEqual(try run("NonZero", [f([2, 2], [0, 3, 4, 0])])[0], i([2, 2], [0, 1, 1, 0]))
        XCTAssertEqual(try run("NonZero", [f([3], [0, 0, 0])])[0], i([1, 0], []))
        let top = try run("TopK", [f([5], [1, 3, 2, 3, 1]), i([1], [3])], outputs: 2)
        XCTAssertEqual(top[0], f([3], [3, 3, 2]))
        XCTAssertEqual(top[1], i([3], [1, 3, 2]))
        let bottom = try run("TopK", [f([5], [1, 3, 2, 3, 1]), i([1], [2])], attributes: [("largest", .int(0))], outputs: 2)
        XCTAssertEqual(bottom[1], i([2], [0, 4]))
        XCTAssertEqual(try run("TopK", [f([2], [1, 2]), i([1], [0])], outputs: 2)[0].shape, [0])
    }

    func testNonMaxSuppression() throws {
        // Boxes (y1, x1, y2, x2): 0 and 1 overlap with IoU 0.6; 2 is apart.
        let boxes = f([1, 3, 4], [0, 0, 10, 10, 0, 2.5, 10, 12.5, 20, 20, 30, 30])
        let scores = f([1, 1, 3], [0.9, 0.8, 0.7])
        let keepBoth = try run("NonMaxSuppression", [boxes, scores, i([1], [10]), f([1], [0.7])])[0]
        XCTAssertEqual(keepBoth, i([3, 3], [0, 0, 0, 0, 0, 1, 0, 0, 2]))
        let suppress = try run("NonMaxSuppression", [boxes, scores, i([1], [10]), f([1], [0.5]), f([1], [0.75])])[0]
        XCTAssertEqual(suppress, i([1, 3], [0, 0, 0]))
        XCTAssertEqual(try run("NonMaxSuppression", [f([1, 0, 4], []), f([1, 1, 0], []), i([1], [5])])[0], i([0, 3], []))
    }

    func testRoiAlignAveragesBilinearSamples() throws {
        // A ramp x + 10 y; one bin over the whole 4 x 4 map, 2 x 2 samples (output_half_pixel):
        // samples at 1 and 3 on each axis, mean x = 2, mean y = 2.
        let ramp = f([1, 1, 4, 4], (0..<16).map { Double($0 % 4) + 10 * Double($0 / 4) })
        let y = try run("RoiAlign", [ramp, f([1, 4], [0, 0, 4, 4]), i([1], [0])],
                        attributes: [("sampling_ratio", .int(2)), ("coordinate_transformation_mode", .string("output_half_pixel"))], opset: 16)[0]
        assertClose(y, [22], shape: [1, 1, 1, 1])
    }

    // MARK: Indexing

    func testScatterGatherAndCumSum() throws {
        let scattered = try run("ScatterElements", [f([3], [1, 1, 1]), i([3], [0, 2, 0]), f([3], [5, 6, 7])],
                                attributes: [("reduction", .string("add"))])[0]
        XCTAssertEqual(scattered, f([3], [13, 1, 7]))
        XCTAssertEqual(try run("ScatterND", [f([2, 2], [0, 0, 0, 0]), i([1, 1], [1]), f([1, 2], [8, 9])])[0], f([2, 2], [0, 0, 8, 9]))
        XCTAssertEqual(try run("GatherElements", [f([2, 2], [1, 2, 3, 4]), i([2, 2], [1, 0, -1, 1])], attributes: [("axis", .int(1))])[0],
                       f([2, 2], [2, 1, 4, 4]))
        XCTAssertEqual(try run("GatherND", [f([2, 2], [1, 2, 3, 4]), i([2, 1], [1, 0])], attributes: [("batch_dims", .int(1))])[0],
                       f([2], [2, 3]))
        XCTAssertEqual(try run("CumSum", [i([4], [1, 2, 3, 4]), i([], [0])], attributes: [("exclusive", .int(1)), ("reverse", .int(1))])[0],
                       i([4], [9, 7, 4, 0]))
        XCTAssertThrowsError(try run("GatherElements", [f([2], [1, 2]), i([1], [2])]))
    }
}
