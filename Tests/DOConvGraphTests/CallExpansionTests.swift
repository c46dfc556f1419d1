import XCTest
@testable import DOConvGraph

/// Local-function calls expanded as the ONNX function semantics define them, and the
/// expanded graph run by the reference executor.
final class CallExpansionTests: XCTestCase {
    func f(_ shape: [Int], _ values: [Double]) -> TensorValue { TensorValue(.float, shape: shape, floats: values) }
    func info(_ name: String) -> ValueInfo { ValueInfo(name: name, type: .float, shape: nil) }

    /// scale(x) = x * alpha (a reference to the call's `alpha`, default 2) + 1 (a nested call).
    func model(callAttributes: [(name: String, value: Attribute)]) -> Graph {
        let plusOne = LocalFunction(domain: "lib", name: "PlusOne", inputs: ["a"], outputs: ["b"],
                                    nodes: [Node(opType: "Constant", inputs: [], outputs: ["one"], attributes: [("value", .tensor(f([], [1])))]),
                                            Node(opType: "Add", name: "add", inputs: ["a", "one"], outputs: ["b"])])
        let scale = LocalFunction(domain: "lib", name: "Scale", inputs: ["x"], outputs: ["y"],
                                  attributeDefaults: [("alpha", .float(2))],
                                  nodes: [Node(opType: "Constant", name: "factor", inputs: [], outputs: ["k"], attributes: [("value_float", .other(summary: "ref", bytes: []))]),
                                          Node(opType: "Mul", name: "mul", inputs: ["x", "k"], outputs: ["t"]),
                                          Node(opType: "PlusOne", domain: "lib", name: "inner", inputs: ["t"], outputs: ["y"])],
                                  attributeReferences: [[("value_float", "alpha")], [], []])
        var graph = Graph(nodes: [Node(opType: "Scale", domain: "lib", name: "call", inputs: ["in"], outputs: ["out"], attributes: callAttributes)],
                          inputs: [info("in")], outputs: [info("out")], opsets: ["": 17, "lib": 1])
        graph.functions = [plusOne, scale]
        return graph
    }

    func testCallsExpandWithAttributeReferencesAndNestedCalls() throws {
        let (expanded, calls) = try FunctionInlining.inline(model(callAttributes: [("alpha", .float(3))]))
        XCTAssertEqual(calls, 2)
        XCTAssertTrue(expanded.functions.isEmpty)
        XCTAssertEqual(expanded.nodes.map(\.opType), ["Constant", "Mul", "Constant", "Add"])
        XCTAssertEqual(expanded.nodes.map(\.name), ["call/factor", "call/mul", "call/inner/Constant", "call/inner/add"])
        // The call's actual input and output are bound; the rest renamed under the call.
        XCTAssertEqual(expanded.nodes[1].inputs, ["in", "call/k"])
        XCTAssertEqual(expanded.nodes.last?.outputs, ["out"])
        XCTAssertEqual(expanded.nodes[0][attribute: "value_float"], .float(3))
        let y = try ReferenceExecutor(graph: expanded).run(["in": f([2], [1, -2])])["out"]
        XCTAssertEqual(y, f([2], [4, -5]))
    }

    func testAMissingAttributeTakesTheFunctionsDefault() throws {
        let expanded = try FunctionInlining.inline(model(callAttributes: [])).graph
        XCTAssertEqual(expanded.nodes[0][attribute: "value_float"], .float(2))
        XCTAssertEqual(try ReferenceExecutor(graph: expanded).run(["in": f([1], [5])])["out"], f([1], [11]))
    }

    func testANameInUseIsNotReused() throws {
        var graph = model(callAttributes: [])
        // The main graph already holds a value named like the body's renamed one.
        graph.nodes.insert(Node(opType: "Identity", name: "call/mul", inputs: ["in"], outputs: ["call/k"]), at: 0)
        graph.outputs.append(info("call/k"))
        let expanded = try FunctionInlining.inline(graph).graph
        XCTAssertEqual(expanded.nodes[2].name, "call/mul_1")
        XCTAssertEqual(expanded.nodes[2].inputs, ["in", "call/k_1"])
    }

    func testARecursiveFunctionIsRefused() {
        var graph = Graph(nodes: [Node(opType: "Loopy", domain: "lib", inputs: ["in"], outputs: ["out"])], inputs: [info("in")], outputs: [info("out")])
        graph.functions = [LocalFunction(domain: "lib", name: "Loopy", inputs: ["a"], outputs: ["b"],
                                         nodes: [Node(opType: "Loopy", domain: "lib", inputs: ["a"], outputs: ["b"])])]
        XCTAssertThrowsError(try FunctionInlining.inline(graph)) { error in
            XCTAssertEqual(error as? FunctionInlining.Failure, .tooDeep(FunctionKey(domain: "lib", name: "Loopy")))
        }
    }

    func testCallsInsideABranchExpand() throws {
        var graph = model(callAttributes: [])
        let branch = Graph(name: "then", nodes: [Node(opType: "Scale", domain: "lib", name: "inBranch", inputs: ["in"], outputs: ["z"])], outputs: [info("z")])
        graph.nodes = [Node(opType: "If", name: "choose", inputs: ["flag"], outputs: ["out"], attributes: [("then_branch", .graph(branch)), ("else_branch", .graph(branch))])]
        let (expanded, calls) = try FunctionInlining.inline(graph)
        XCTAssertEqual(calls, 4)
        guard case .graph(let then)? = expanded.nodes[0][attribute: "then_branch"], case .graph(let otherwise)? = expanded.nodes[0][attribute: "else_branch"] else {
            return XCTFail("the If lost its branches")
        }
        XCTAssertEqual(then.nodes.map(\.opType), ["Constant", "Mul", "Constant", "Add"])
        // The second copy of the body gets names of its own.
        XCTAssertTrue(Set(then.nodes.flatMap(\.outputs)).intersection(otherwise.nodes.flatMap(\.outputs)) == ["z"])
    }
}
