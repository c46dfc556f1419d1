import XCTest
@testable import DOConvGraph

/// The reference executor on small cases computed by hand.
final class ExecutorTests: XCTestCase {
    func f(_ shape: [Int], _ values: [Double]) -> TensorValue { TensorValue(.float, shape: shape, floats: values) }
    func i(_ shape: [Int], _ values: [Int64]) -> TensorValue { TensorValue(.int64, shape: shape, ints: values) }

    /// Runs one node on `inputs` (graph inputs in order) and returns its outputs.
    func run(_ op: String, _ inputs: [TensorValue], attributes: [(name: String, value: Attribute)] = [], outputs: Int = 1, opset: Int64 = 17,
             file: StaticString = #filePath, line: UInt = #line) throws -> [TensorValue] {
        let names = inputs.indices.map { "in\($0)" }
        let outs = (0..<outputs).map { "out\($0)" }
        let graph = Graph(nodes: [Node(opType: op, inputs: names, outputs: outs, attributes: attributes)],
                          inputs: names.map { ValueInfo(name: $0, type: nil, shape: nil) },
                          outputs: outs.map { ValueInfo(name: $0, type: nil, shape: nil) }, opsets: ["": opset])
        let result = try ReferenceExecutor(graph: graph).run(Dictionary(uniqueKeysWithValues: zip(names, inputs)))
        return outs.map { result[$0]! }
    }

    func testConvWithPaddingStrideAndBias() throws {
        // 1x1x3x3 input 1..9, a 2x2 kernel of ones.
        let x = f([1, 1, 3, 3], (1...9).map(Double.init))
        let w = f([1, 1, 2, 2], [1, 1, 1, 1])
        XCTAssertEqual(try run("Conv", [x, w])[0], f([1, 1, 2, 2], [12, 16, 24, 28]))
        // pads 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1) plus bias 10.
        let y = try run("Conv", [x, w, f([1], [10])], attributes: [("pads", .ints([1, 1, 1, 1])), ("strides", .ints([2, 2]))])[0]
        XCTAssertEqual(y, f([1, 1, 2, 2], [11, 15, 21, 38]))
    }

    func testGroupedConvKeepsGroupsApart() throws {
        // Two channels, two groups, 1x1 kernels 2 and 3: each channel scaled on its own.
        let x = f([1, 2, 1, 2], [1, 2, 3, 4])
        let w = f([2, 1, 1, 1], [2, 3])
        XCTAssertEqual(try run("Conv", [x, w], attributes: [("group", .int(2))])[0], f([1, 2, 1, 2], [2, 4, 9, 12]))
    }

    func testSameUpperPadsTheEnd() throws {
        // Width 4, kernel 2, stride 1, SAME_UPPER: one zero column at the end.
        let x = f([1, 1, 1, 4], [1, 2, 3, 4])
        let w = f([1, 1, 1, 2], [1, 10])
        let y = try run("Conv", [x, w], attributes: [("auto_pad", .string("SAME_UPPER"))])[0]
        XCTAssertEqual(y, f([1, 1, 1, 4], [21, 32, 43, 4]))
    }

    func testConvTransposeScattersEachInput() throws {
        let x = f([1, 1, 1, 2], [1, 2])
        let w = f([1, 1, 1, 2], [1, 10])
        // stride 2: [1, 10, 2, 20]
        XCTAssertEqual(try run("ConvTranspose", [x, w], attributes: [("strides", .ints([1, 2]))])[0], f([1, 1, 1, 4], [1, 10, 2, 20]))
    }

    func testPooling() throws {
        let x = f([1, 1, 2, 3], [1, 5, 2, 4, 3, 6])
        let max = try run("MaxPool", [x], attributes: [("kernel_shape", .ints([2, 2]))])[0]
        XCTAssertEqual(max, f([1, 1, 1, 2], [5, 6]))
        // Average with a padded border: count_include_pad decides the divisor.
        let padded: [(name: String, value: Attribute)] = [("kernel_shape", .ints([2, 2])), ("pads", .ints([0, 1, 0, 0]))]
        XCTAssertEqual(try run("AveragePool", [x], attributes: padded)[0].doubles.first, 2.5) // (1 + 4) / 2
        XCTAssertEqual(try run("AveragePool", [x], attributes: padded + [("count_include_pad", .int(1))])[0].doubles.first, 1.25)
        XCTAssertEqual(try run("GlobalAveragePool", [x])[0], f([1, 1, 1, 1], [3.5]))
    }

    func testBroadcastingAndIntegerDivision() throws {
        let a = f([2, 1], [1, 2])
        let b = f([3], [10, 20, 30])
        XCTAssertEqual(try run("Add", [a, b])[0], f([2, 3], [11, 21, 31, 12, 22, 32]))
        XCTAssertEqual(try run("Div", [i([2], [-7, 7]), i([1], [2])])[0], i([2], [-3, 3])) // toward zero, as C++
        XCTAssertThrowsError(try run("Add", [f([2], [1, 2]), f([3], [1, 2, 3])]))
    }

    func testEinsumForms() throws {
        let a = f([2, 2], [1, 2, 3, 4])
        let b = f([2, 2], [5, 6, 7, 8])
        XCTAssertEqual(try LinearAlgebraOps.einsum("ij,jk->ik", [a, b]), f([2, 2], [19, 22, 43, 50]))
        XCTAssertEqual(try LinearAlgebraOps.einsum("ij,jk", [a, b]), f([2, 2], [19, 22, 43, 50]))  // implicit output
        XCTAssertEqual(try LinearAlgebraOps.einsum("ii->i", [a]), f([2], [1, 4]))                 // diagonal
        XCTAssertEqual(try LinearAlgebraOps.einsum("ij->", [a]), f([], [10]))
        XCTAssertEqual(try LinearAlgebraOps.einsum("ji", [a]), f([2, 2], [1, 3, 2, 4]))           // implicit transpose
        XCTAssertEqual(try LinearAlgebraOps.einsum("...j,j->...", [a, f([2], [1, 1])]), f([2], [3, 7]))
        let c = f([2], [1, 2])
        XCTAssertEqual(try LinearAlgebraOps.einsum("i,ij,j->", [c, a, c]), f([], [27]))          // three operands
        XCTAssertThrowsError(try LinearAlgebraOps.einsum("ij,jk->ik", [a, f([3, 2], [1, 2, 3, 4, 5, 6])]))
    }

    func testShapeOps() throws {
        let x = f([2, 3], [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try run("Reshape", [x, i([2], [0, -1])])[0].shape, [2, 3])
        XCTAssertEqual(try run("Transpose", [x])[0], f([3, 2], [0, 3, 1, 4, 2, 5]))
        XCTAssertEqual(try run("Gather", [x, i([], [-1])], attributes: [("axis", .int(1))])[0], f([2], [2, 5]))
        let sliced = try run("Slice", [x, i([1], [-1]), i([1], [Int64.min]), i([1], [1]), i([1], [-2])])[0]
        XCTAssertEqual(sliced, f([2, 2], [2, 0, 5, 3]))
        XCTAssertEqual(try run("Pad", [f([1, 2], [1, 2]), i([4], [0, 1, 0, 2]), f([], [9])])[0], f([1, 5], [9, 1, 2, 9, 9]))
        XCTAssertEqual(try run("Pad", [f([1, 3], [1, 2, 3]), i([4], [0, 2, 0, 1])], attributes: [("mode", .string("reflect"))])[0],
                       f([1, 6], [3, 2, 1, 2, 3, 2]))
        XCTAssertEqual(try run("Unsqueeze", [x, i([1], [0])])[0].shape, [1, 2, 3])
        XCTAssertEqual(try run("Unsqueeze", [x], attributes: [("axes", .ints([-1]))], opset: 11)[0].shape, [2, 3, 1])
        XCTAssertEqual(try run("Shape", [x])[0], i([2], [2, 3]))
        XCTAssertEqual(try run("Concat", [x, f([2, 1], [8, 9])], attributes: [("axis", .int(1))])[0], f([2, 4], [0, 1, 2, 8, 3, 4, 5, 9]))
        XCTAssertEqual(try run("Expand", [f([2, 1], [1, 2]), i([2], [2, 2])])[0], f([2, 2], [1, 1, 2, 2]))
        XCTAssertEqual(try run("Range", [i([], [1]), i([], [8]), i([], [3])])[0], i([3], [1, 4, 7]))
    }

    func testResizeNearestAsymmetric() throws {
        let x = f([1, 1, 1, 2], [1, 2])
        let y = try run("Resize", [x, f([0], []), f([4], [1, 1, 1, 2])],
                        attributes: [("coordinate_transformation_mode", .string("asymmetric")), ("nearest_mode", .string("floor"))])[0]
        XCTAssertEqual(y, f([1, 1, 1, 4], [1, 1, 2, 2]))
    }

    func testSoftmaxGemmBatchNormAndCast() throws {
        let s = try run("Softmax", [f([1, 2], [0, log(3)])])[0].doubles
        XCTAssertEqual(s[0], 0.25, accuracy: 1e-12)
        XCTAssertEqual(s[1], 0.75, accuracy: 1e-12)
        let gemm = try run("Gemm", [f([1, 2], [1, 2]), f([2, 2], [1, 2, 3, 4]), f([1], [1])],
                           attributes: [("transB", .int(1)), ("alpha", .float(2)), ("beta", .float(3))])[0]
        XCTAssertEqual(gemm, f([1, 2], [13, 25])) // 2 * [5, 11] + 3
        let bn = try run("BatchNormalization", [f([1, 1, 1, 2], [3, 5]), f([1], [2]), f([1], [1]), f([1], [1]), f([1], [4])],
                         attributes: [("epsilon", .float(0))])[0]
        XCTAssertEqual(bn, f([1, 1, 1, 2], [3, 5]))  // (x - 1) / 2 * 2 + 1
        XCTAssertEqual(try run("Cast", [f([3], [-1.7, 0.5, 2.9])], attributes: [("to", .int(7))])[0], i([3], [-1, 0, 2]))
        XCTAssertEqual(try run("Cast", [f([1], [0.1])], attributes: [("to", .int(10))])[0].doubles, [Double(Float16(0.1))])
    }

    func testConstantSubgraphEvaluatesWithoutFeeds() throws {
        // kernel = Reshape(Einsum(D, W)) from initializers; the Conv needs the feed, the kernel does not.
        let graph = Graph(
            nodes: [
                Node(opType: "Einsum", inputs: ["d", "w"], outputs: ["e"], attributes: [("equation", .string("i,j->ij"))]),
                Node(opType: "Reshape", inputs: ["e", "shape"], outputs: ["k"]),
                Node(opType: "Conv", inputs: ["x", "k"], outputs: ["y"]),
            ],
            initializers: [("d", f([2], [1, 2])), ("w", f([2], [3, 4])), ("shape", i([4], [1, 1, 2, 2]))],
            inputs: [ValueInfo(name: "x", type: .float, shape: [.fixed(1), .fixed(1), .fixed(2), .fixed(2)])],
            outputs: [ValueInfo(name: "y", type: .float, shape: nil)])
        let executor = ReferenceExecutor(graph: graph)
        XCTAssertEqual(try executor.evaluate(["k"])["k"], f([1, 1, 2, 2], [3, 4, 6, 8]))
        XCTAssertThrowsError(try executor.evaluate(["y"])) { XCTAssertEqual($0 as? ExecutionError, .missingValue("x")) }
        XCTAssertEqual(try executor.run(["x": f([1, 1, 2, 2], [1, 1, 1, 1])])["y"], f([1, 1, 1, 1], [21]))
    }

    func testUnsupportedOpsAreNamed() throws {
        let graph = Graph(nodes: [Node(opType: "LSTM", inputs: ["x"], outputs: ["y"]), Node(opType: "Foo", domain: "com.x", inputs: ["y"], outputs: ["z"])])
        XCTAssertEqual(ReferenceExecutor(graph: graph).unsupportedOps, ["LSTM", "com.x:Foo"])
        XCTAssertThrowsError(try run("LSTM", [f([1], [1])])) { error in
            XCTAssertTrue("\(error)".contains("LSTM"))
        }
        XCTAssertTrue(ReferenceExecutor.supportedOps.contains("Einsum"))
    }
}
