import DOConvCore
import XCTest
import DOConvGraph
@testable import DOConvVerify
@testable import DOConvVerifyONNX

/// The structural comparison on hand-built graphs, and the naive float64 fold against the
/// project's scalar fold.
final class StructureDiffTests: XCTestCase {
    func f(_ shape: [Int], _ values: [Double]) -> TensorValue { TensorValue(.float, shape: shape, floats: values) }
    func i(_ values: [Int64]) -> TensorValue { TensorValue(.int64, shape: [values.count], ints: values) }

    let x = ValueInfo(name: "x", type: .float, shape: [.fixed(1), .fixed(2), .fixed(4), .fixed(4)])
    let y = ValueInfo(name: "y", type: .float, shape: nil)

    /// A DO-Conv layer as exporters write it: Einsum(D, W) -> Reshape -> Conv -> Relu, plus an
    /// unrelated Mul by a constant.
    func original() -> Graph {
        Graph(
            nodes: [
                Node(opType: "Einsum", name: "einsum", inputs: ["D", "W"], outputs: ["e"], attributes: [("equation", .string("ims,ois->oim"))]),
                Node(opType: "Reshape", name: "reshape", inputs: ["e", "kshape"], outputs: ["kernel"]),
                Node(opType: "Conv", name: "conv", inputs: ["x", "kernel"], outputs: ["c"], attributes: [("pads", .ints([0, 0, 0, 0]))]),
                Node(opType: "Relu", name: "relu", inputs: ["c"], outputs: ["r"]),
                Node(opType: "Mul", name: "mul", inputs: ["r", "scale"], outputs: ["y"]),
            ],
            initializers: [("D", f([2, 1, 1], [1, 1])), ("W", f([3, 2, 1], [1, 2, 3, 4, 5, 6])), ("kshape", i([3, 2, 1, 1])), ("scale", f([1], [2]))],
            inputs: [x], outputs: [y], metadata: [(key: "author", value: "me")])
    }

    /// What a correct fold writes.
    func folded() -> Graph {
        Graph(
            nodes: [
                Node(opType: "Conv", name: "conv", inputs: ["x", "conv.weight"], outputs: ["c"], attributes: [("pads", .ints([0, 0, 0, 0]))]),
                Node(opType: "Relu", name: "relu", inputs: ["c"], outputs: ["r"]),
                Node(opType: "Mul", name: "mul", inputs: ["r", "scale"], outputs: ["y"]),
            ],
            initializers: [("scale", f([1], [2])), ("conv.weight", f([3, 2, 1, 1], [1, 2, 3, 4, 5, 6]))],
            inputs: [x], outputs: [y], metadata: [(key: "author", value: "me"), (key: "doconv.folded", value: "[]")])
    }

    func compare(_ folded: Graph) -> StructureComparison { StructureDiff(original: original(), folded: folded).compare() }

    func testTrueFoldHasNoDifferences() {
        let result = compare(folded())
        XCTAssertEqual(result.differences, [])
        XCTAssertEqual(result.replaced.count, 1)
        XCTAssertEqual(result.replaced.first?.originalWeight, "kernel")
        XCTAssertEqual(result.replaced.first?.foldedWeight, "conv.weight")
    }

    func testChangedOpIsReported() {
        var graph = folded()
        graph.nodes[1].opType = "Sigmoid"
        XCTAssertEqual(compare(graph).differences, ["node producing 'r' changed from Relu to Sigmoid"])
    }

    func testChangedAttributeIsReported() {
        var graph = folded()
        graph.nodes[0].attributes = [("pads", .ints([1, 1, 1, 1]))]
        XCTAssertEqual(compare(graph).differences, ["Conv 'conv' attribute pads changed: [0, 0, 0, 0] -> [1, 1, 1, 1]"])
    }

    func testChangedConnectionIsReported() {
        var graph = folded()
        graph.nodes[2].inputs = ["c", "scale"]
        XCTAssertEqual(compare(graph).differences, ["Mul 'mul' input 0 changed: 'r' -> 'c'"])
    }

    func testChangedUnrelatedWeightIsReported() {
        var graph = folded()
        graph.initializers["scale"] = f([1], [3])
        XCTAssertEqual(compare(graph).differences, ["initializer 'scale' changed: value at [0] 2.0 -> 3.0"])
    }

    func testRemovedNodeThatIsNotKernelWorkIsReported() {
        var graph = folded()
        graph.nodes.remove(at: 1)
        graph.nodes[1].inputs = ["c", "scale"]
        let differences = compare(graph).differences
        XCTAssertTrue(differences.contains("node Relu 'relu' of ORIGINAL is missing from FOLDED (it is not part of a DO-Conv kernel computation)"), "\(differences)")
    }

    func testUnexplainedNewInitializerAndMetadataAreReported() {
        var graph = folded()
        graph.initializerOrder.append("extra")
        graph.initializers["extra"] = f([1], [0])
        graph.metadata[0] = (key: "author", value: "someone else")
        XCTAssertEqual(Set(compare(graph).differences), [
            "initializer 'extra' of FOLDED is new and is not a folded kernel or bias",
            "metadata changed: 'author'",
        ])
    }

    func testKernelThatDependsOnTheInputIsNotAConstant() {
        var source = original()
        source.nodes[0].inputs = ["D", "x"] // the "kernel" now depends on the graph input
        let result = StructureDiff(original: source, folded: folded()).compare()
        XCTAssertTrue(result.differences.contains { $0.contains("depends on the graph input 'x'") }, "\(result.differences)")
    }

    func testDepthwisePointwisePairIsOneReplacement() {
        let source = Graph(
            nodes: [
                Node(opType: "Conv", name: "dw", inputs: ["x", "wd"], outputs: ["mid"], attributes: [("group", .int(2)), ("pads", .ints([1, 1, 1, 1]))]),
                Node(opType: "Conv", name: "pw", inputs: ["mid", "wp"], outputs: ["y"]),
            ],
            initializers: [("wd", f([4, 1, 3, 3], [Double](repeating: 0.5, count: 36))), ("wp", f([3, 4, 1, 1], [Double](repeating: 1, count: 12)))],
            inputs: [x], outputs: [y])
        let target = Graph(
            nodes: [Node(opType: "Conv", name: "dw", inputs: ["x", "wp.folded"], outputs: ["y"], attributes: [("group", .int(1)), ("pads", .ints([1, 1, 1, 1]))])],
            initializers: [("wp.folded", f([3, 2, 3, 3], [Double](repeating: 1, count: 54)))],
            inputs: [x], outputs: [y])
        let result = StructureDiff(original: source, folded: target).compare()
        XCTAssertEqual(result.differences, [])
        XCTAssertEqual(result.replaced.first?.chain, [0, 1])
        XCTAssertEqual(result.replaced.first?.isPair, true)
        // The pair's kernel is the composition: each output sums its group's 2 features per channel.
        let check = LayerCheck(original: source, folded: target, detected: [], tolerance: nil, patches: 2, seed: 1)
        let layers = check.check(result.replaced)
        XCTAssertEqual(layers.first?.passed, true, "\(String(describing: layers.first))")
        // A wrong stride on the folded conv is a structural difference.
        var wrong = target
        wrong.nodes[0].attributes.append(("strides", .ints([2, 2])))
        XCTAssertEqual(StructureDiff(original: source, folded: wrong).compare().differences, ["Conv 'dw' gained attribute strides=[2, 2]"])
    }

    func testLayerCheckFindsANudgedKernel() throws {
        var target = folded()
        // The composed kernel: e[o, i] = D[i] * W[o, i] with D = 1 (no identity offset here): W itself.
        let layer = try DOConvLayer(layout: .pytorch, geometry: DOConvGeometry(inChannels: 2, outChannels: 3, groups: 1, kernelHeight: 1, kernelWidth: 1, depthMultiplier: 1),
                                    d: [1, 1], w: [1, 2, 3, 4, 5, 6])
        let detected = DetectedLayer(name: "conv", form: .kernelComposition, layer: layer, elementType: .float32, stride: [1, 1], dilation: [1, 1])
        let replaced = StructureDiff(original: original(), folded: target).compare().replaced
        var results = LayerCheck(original: original(), folded: target, detected: [detected], tolerance: nil, patches: 2, seed: 1).check(replaced)
        XCTAssertEqual(results.first?.passed, true)
        XCTAssertEqual(results.first?.name, "conv")
        target.initializers["conv.weight"] = f([3, 2, 1, 1], [1, 2, 3, 4.001, 5, 6])
        results = LayerCheck(original: original(), folded: target, detected: [detected], tolerance: nil, patches: 2, seed: 1).check(replaced)
        XCTAssertEqual(results.first?.passed, false)
        XCTAssertEqual(results.first?.kernel?.first?.index, [1, 1, 0, 0])
        XCTAssertEqual(results.first?.kernel?.first?.expected, 4)
    }

    func testNaiveFoldAgreesWithTheScalarFold() throws {
        var random = SeededGenerator(seed: 42)
        let shapes: [(cin: Int, cout: Int, groups: Int, m: Int, n: Int, dmul: Int)] = [
            (3, 8, 1, 3, 3, 9), (8, 8, 8, 3, 3, 9), (8, 16, 4, 3, 3, 12), (4, 6, 2, 1, 3, 5), (6, 6, 3, 2, 2, 4), (4, 8, 1, 1, 1, 1),
        ]
        for layout in [DOConvLayout.pytorch, .keras] {
            for s in shapes {
                let g = DOConvGeometry(inChannels: s.cin, outChannels: s.cout, groups: s.groups, kernelHeight: s.m, kernelWidth: s.n, depthMultiplier: s.dmul)
                let d = (0..<g.dCount).map { _ in Float.random(in: -1...1, using: &random) }
                let w = (0..<g.wCount).map { _ in Float.random(in: -1...1, using: &random) }
                let layer = try DOConvLayer(layout: layout, geometry: g, d: d, w: w)
                let naive = NaiveFold.kernel(layer)
                let scalar = ScalarFold.kernel(of: layer).values.map(Double.init)
                let stats = ErrorStats.compare(expected: naive, actual: scalar, shape: [naive.count], tolerance: 1e-6)
                XCTAssertTrue(stats.passed, "\(layout) \(s): \(stats)")
                // The feature route of the probe agrees with the naive kernel.
                XCTAssertTrue(NaiveFold.probe(layer, kernel: naive, scale: nil, patches: 2, seed: 3, tolerance: 1e-12).passed, "\(layout) \(s)")
            }
        }
    }

    func testErrorStatsReportTheFirstDisagreement() {
        var stats = ErrorStats.compare(expected: [1, 2, 3, 4], actual: [1, 2, 3.5, 5], shape: [2, 2], tolerance: 1e-3, context: "input 1")
        XCTAssertEqual(stats.worstAbsolute, 1)
        XCTAssertEqual(stats.worstRelative, 0.25)
        XCTAssertEqual(stats.first, Disagreement(index: [1, 0], expected: 3, actual: 3.5, context: "input 1"))
        stats = ErrorStats.compare(expected: [.nan, 1], actual: [.nan, 1], shape: [2], tolerance: 0)
        XCTAssertTrue(stats.passed)
    }

    /// The comparison runs eight values at a time where they are finite: it must give what a
    /// value-by-value loop gives, with infinities and NaNs anywhere, disagreements inside a
    /// run of eight, and lengths that are not a multiple of eight.
    func testErrorStatsMatchAValueByValueLoop() {
        var random = SystemRandomNumberGenerator()
        for trial in 0..<200 {
            let count = Int.random(in: 0...70, using: &random)
            var expected = (0..<count).map { _ in Double.random(in: -3...3, using: &random) }
            var actual = expected.map { $0 + Double.random(in: -1e-9...1e-9, using: &random) }
            for _ in 0..<Int.random(in: 0...3, using: &random) where count > 0 {
                let k = Int.random(in: 0..<count, using: &random)
                switch Int.random(in: 0..<5, using: &random) {
                case 0: actual[k] += 0.5 // a disagreement
                case 1: expected[k] = .infinity; actual[k] = .infinity
                case 2: actual[k] = .nan
                case 3: expected[k] = -.infinity; actual[k] = 1
                default: expected[k] = .nan; actual[k] = .nan
                }
            }
            let tolerance = 1e-6
            var scale = 0.0, worst = 0.0, first: Int?
            for v in expected where v.isFinite { scale = max(scale, abs(v)) }
            for k in 0..<count {
                let (e, a) = (expected[k], actual[k])
                let delta: Double = e.isNaN || a.isNaN ? (e.isNaN && a.isNaN ? 0 : .infinity)
                    : e.isInfinite || a.isInfinite ? (e == a ? 0 : .infinity) : abs(a - e)
                worst = max(worst, delta)
                if delta > tolerance * (scale > 0 ? scale : 1), first == nil { first = k }
            }
            let stats = ErrorStats.compare(expected: expected, actual: actual, shape: [count], tolerance: tolerance)
            XCTAssertEqual(stats.worstAbsolute, worst, "trial \(trial)")
            XCTAssertEqual(stats.scale, scale, "trial \(trial)")
            XCTAssertEqual(stats.first?.index, first.map { [$0] }, "trial \(trial)")
            XCTAssertEqual(stats.worstAbsolute.sign, .plus, "trial \(trial)")
        }
    }
}
