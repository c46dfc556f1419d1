import DOConvJSON
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// An MXNet symbol file (`NAME-symbol.json`, from `HybridBlock.export`): nodes in
/// topological order, each an op with inputs `[node, output, version]`; `null` nodes are
/// the variables (parameters and data). Nodes are kept as the JSON objects they were, so
/// the fields doconv does not touch are written back as read.
public struct SymbolGraph {
    public let path: String
    var nodes: [[String: Any]]
    var heads: [[Int]]
    /// The top-level object's other fields (attrs, ...).
    var rest: [String: Any]
    /// Outputs per node, from `node_row_ptr` (1 when absent).
    var outputCounts: [Int]

    /// Whether a file's first bytes look like a symbol file.
    public static func looksLikeSymbol(head: [UInt8]) -> Bool {
        let text = String(decoding: head, as: UTF8.self)
        return text.drop { $0.isWhitespace }.first == "{" && text.contains("\"nodes\"")
    }

    public init(path: String) throws(MXNetError) {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else { throw .cannotOpen(path: path, reason: "cannot read the file") }
        guard let object = try? JSONTree.parse(data) as? [String: Any] else {
            throw .corrupt(path: path, reason: "the symbol is not a JSON object")
        }
        guard let nodes = object["nodes"] as? [[String: Any]], let heads = object["heads"] as? [[Int]] else {
            throw .corrupt(path: path, reason: "the symbol JSON has no nodes or heads")
        }
        self.nodes = nodes
        self.heads = heads
        var rest = object
        for key in ["nodes", "heads", "arg_nodes", "node_row_ptr"] { rest[key] = nil }
        self.rest = rest
        if let rows = object["node_row_ptr"] as? [Int], rows.count == nodes.count + 1 {
            outputCounts = (0..<nodes.count).map { rows[$0 + 1] - rows[$0] }
        } else {
            outputCounts = [Int](repeating: 1, count: nodes.count)
        }
        // Every input must name an earlier node (the file is in topological order).
        for (k, node) in nodes.enumerated() {
            guard node["op"] is String, node["name"] is String else { throw .corrupt(path: path, reason: "symbol node \(k) has no op or name") }
            for input in inputs(of: k) where input < 0 || input >= k {
                throw .corrupt(path: path, reason: "symbol node \(k) ('\(name(of: k))') reads node \(input), which does not come before it")
            }
        }
        for head in heads where head.first.map({ $0 < 0 || $0 >= nodes.count }) ?? true {
            throw .corrupt(path: path, reason: "a symbol head names a missing node")
        }
    }

    public var nodeCount: Int { nodes.count }
    /// The nodes the symbol's outputs are.
    public var headNodes: [Int] { heads.compactMap(\.first) }

    public func op(of k: Int) -> String { nodes[k]["op"] as? String ?? "" }
    public func name(of k: Int) -> String { nodes[k]["name"] as? String ?? "" }
    public func inputs(of k: Int) -> [Int] { (nodes[k]["inputs"] as? [[Int]] ?? []).compactMap(\.first) }

    /// The variable node named `name`.
    public func variable(_ name: String) -> Int? {
        nodes.indices.first { op(of: $0) == "null" && self.name(of: $0) == name }
    }

    /// A node's attributes, as the file spells them.
    public func attributes(of k: Int) -> [String: String] {
        (nodes[k]["attrs"] as? [String: String]) ?? (nodes[k]["attr"] as? [String: String]) ?? [:]
    }

    /// Every node `k` depends on, itself included.
    public func ancestors(of k: Int) -> Set<Int> {
        var seen: Set<Int> = [k]
        var stack = [k]
        while let next = stack.popLast() {
            for input in inputs(of: next) where seen.insert(input).inserted { stack.append(input) }
        }
        return seen
    }

    /// The Convolution whose weight input is computed from both variables (the DO layer's
    /// kernel composition), if any.
    public func convolutionComposing(weight: Int, d: Int) -> Int? {
        nodes.indices.first { k in
            guard op(of: k) == "Convolution", let inputs = nodes[k]["inputs"] as? [[Int]], inputs.count >= 2, let source = inputs[1].first,
                  source != weight else { return false }
            let upstream = ancestors(of: source)
            return upstream.contains(weight) && upstream.contains(d)
        }
    }

    /// Makes Convolution `conv` read `weight` directly, then drops the nodes nothing reads
    /// any more (the kernel computation and the D variable).
    mutating func readWeightDirectly(conv: Int, weight: Int) {
        var inputs = nodes[conv]["inputs"] as? [[Int]] ?? []
        inputs[1] = [weight, 0, 0]
        nodes[conv]["inputs"] = inputs
    }

    /// Removes the nodes that were needed before (reachable from the heads) and are not now,
    /// renumbering every reference.
    mutating func removeUnread(neededBefore: Set<Int>) {
        let needed = heads.compactMap(\.first).reduce(into: Set<Int>()) { $0.formUnion(ancestors(of: $1)) }
        let keep = nodes.indices.filter { needed.contains($0) || !neededBefore.contains($0) }
        var newIndex = [Int](repeating: -1, count: nodes.count)
        for (n, k) in keep.enumerated() { newIndex[k] = n }
        nodes = keep.map { k in
            var node = nodes[k]
            if let inputs = node["inputs"] as? [[Int]] {
                node["inputs"] = inputs.map { entry in [newIndex[entry[0]]] + entry.dropFirst() }
            }
            return node
        }
        outputCounts = keep.map { outputCounts[$0] }
        heads = heads.map { [newIndex[$0[0]]] + $0.dropFirst() }
    }

    var neededNodes: Set<Int> { heads.compactMap(\.first).reduce(into: Set<Int>()) { $0.formUnion(ancestors(of: $1)) } }

    /// The symbol as JSON, with `arg_nodes` and `node_row_ptr` recomputed.
    func json() throws(MXNetError) -> Data {
        var object = rest
        object["nodes"] = nodes
        object["heads"] = heads
        object["arg_nodes"] = nodes.indices.filter { op(of: $0) == "null" }
        object["node_row_ptr"] = outputCounts.reduce(into: [0]) { $0.append($0.last! + $1) }
        do {
            return Data(try JSONTree.serialize(object, style: JSONTree.Style(prettyPrinted: true)))
        } catch {
            throw .cannotWrite(path: path, reason: "the symbol cannot be written as JSON (\(error))")
        }
    }
}
