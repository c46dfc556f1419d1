/// What the executor can tell before running anything: nodes whose op it lacks, or whose
/// attributes select a mode it does not implement, each named with the reason, so a long
/// run never ends in "not supported" after minutes of work.
extension ReferenceExecutor {
    /// One node the executor cannot run, and why.
    public struct UnsupportedNode: Equatable, Sendable, CustomStringConvertible {
        /// "Resize 'up1'" (or the op and its first output when the node has no name), with its
        /// subgraph path when it sits in one.
        public var node: String
        public var reason: String
        public var description: String { "\(node): \(reason)" }
    }

    /// Attribute values each op's kernel accepts (string attributes that select a mode).
    static let acceptedModes: [String: [String: Set<String>]] = [
        "Resize": ["mode": ["nearest", "linear", "cubic"],
                   "coordinate_transformation_mode": ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                                                      "tf_half_pixel_for_nn", "tf_crop_and_resize"],
                   "nearest_mode": ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"],
                   "keep_aspect_ratio_policy": ["stretch", "not_larger", "not_smaller"]],
        "Upsample": ["mode": ["nearest", "linear", "bilinear"]],
        "Pad": ["mode": ["constant", "reflect", "edge", "wrap"]],
        "RoiAlign": ["mode": ["avg", "max"], "coordinate_transformation_mode": ["half_pixel", "output_half_pixel"]],
        "Conv": ["auto_pad": ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"]],
        "ConvTranspose": ["auto_pad": ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"]],
        "MaxPool": ["auto_pad": ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"]],
        "AveragePool": ["auto_pad": ["NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"]],
        "ScatterElements": ["reduction": ["none", "add", "mul", "max", "min"]],
        "ScatterND": ["reduction": ["none", "add", "mul", "max", "min"]],
    ]

    /// Every node of the graph and its subgraphs that the executor would refuse, in order.
    public var unsupportedNodes: [UnsupportedNode] {
        var result: [UnsupportedNode] = []
        func visit(_ g: Graph, path: String) {
            for node in g.nodes {
                let label = path + (node.name.isEmpty ? "\(node.opType) (output '\(node.outputs.first ?? "")')" : "\(node.opType) '\(node.name)'")
                if !node.isStandardDomain {
                    result.append(UnsupportedNode(node: label, reason: "operator '\(node.opType)' of domain '\(node.domain)' (a custom op)"))
                } else if Self.kernels[node.opType] == nil {
                    result.append(UnsupportedNode(node: label, reason: "operator '\(node.opType)' is not implemented"))
                } else {
                    for (attribute, accepted) in Self.acceptedModes[node.opType] ?? [:] {
                        if case .string(let value)? = node[attribute: attribute], !accepted.contains(value) {
                            result.append(UnsupportedNode(node: label, reason: "\(attribute) '\(value)' is not implemented"))
                        }
                    }
                }
                Subgraphs.each(in: node) { attribute, body in visit(body, path: label + "/" + attribute + "/") }
            }
        }
        visit(graph, path: "")
        return result
    }
}
