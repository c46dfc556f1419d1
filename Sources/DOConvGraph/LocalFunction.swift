/// An ONNX local function (`ModelProto.functions`): an operator defined by a body of nodes,
/// called by nodes whose (domain, op type, overload) name it.
public struct LocalFunction: Equatable, Sendable {
    public var domain: String
    public var name: String
    public var overload: String
    /// Formal input and output names, in call order.
    public var inputs: [String]
    public var outputs: [String]
    /// Attributes the body may refer to, with their defaults where the function gives one.
    public var attributeDefaults: [(name: String, value: Attribute)]
    public var nodes: [Node]
    /// Per body node: its attributes that take the value of a call attribute
    /// (`ref_attr_name`), as (attribute name, call attribute name).
    public var attributeReferences: [[(name: String, reference: String)]]
    /// Operator set versions the body uses, by domain ("" for the default domain).
    public var opsets: [String: Int64]

    public init(domain: String, name: String, overload: String = "", inputs: [String], outputs: [String],
                attributeDefaults: [(name: String, value: Attribute)] = [], nodes: [Node],
                attributeReferences: [[(name: String, reference: String)]] = [], opsets: [String: Int64] = [:]) {
        self.domain = domain == "ai.onnx" ? "" : domain
        self.name = name
        self.overload = overload
        self.inputs = inputs
        self.outputs = outputs
        self.attributeDefaults = attributeDefaults
        self.nodes = nodes
        self.attributeReferences = attributeReferences.count == nodes.count ? attributeReferences : nodes.map { _ in [] }
        self.opsets = opsets
    }

    /// The identity calls use: (domain, name, overload).
    public var key: FunctionKey { FunctionKey(domain: domain, name: name, overload: overload) }

    public static func == (a: LocalFunction, b: LocalFunction) -> Bool {
        a.key == b.key && a.inputs == b.inputs && a.outputs == b.outputs && a.nodes == b.nodes && a.opsets == b.opsets
            && a.attributeDefaults.count == b.attributeDefaults.count
            && zip(a.attributeDefaults, b.attributeDefaults).allSatisfy { $0.name == $1.name && $0.value == $1.value }
            && a.attributeReferences.count == b.attributeReferences.count
            && zip(a.attributeReferences, b.attributeReferences).allSatisfy { x, y in
                x.count == y.count && zip(x, y).allSatisfy { $0.name == $1.name && $0.reference == $1.reference }
            }
    }
}

/// The unique id of a local function, and of the function a node calls.
public struct FunctionKey: Hashable, Sendable, CustomStringConvertible {
    public var domain: String
    public var name: String
    public var overload: String

    public init(domain: String, name: String, overload: String = "") {
        self.domain = domain == "ai.onnx" ? "" : domain
        self.name = name
        self.overload = overload
    }

    public var description: String { (domain.isEmpty ? "" : domain + ":") + name + (overload.isEmpty ? "" : " (overload '\(overload)')") }
}
