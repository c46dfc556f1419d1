import DOConvGraph

/// Checks the identity arithmetic the fold dropped (`Add(x, 0)` and its kin): ORIGINAL, run
/// by the reference executor on the seeded input, must give each result exactly its data
/// operand, shape and values, so that FOLDED's readers of the operand read what they read
/// before. A constant that is not the identity, or one that broadcasts the operand to a larger
/// shape, shows here.
struct DroppedIdentityCheck {
    /// ORIGINAL with its constants computed.
    let original: Graph
    let feeds: [String: TensorValue]

    /// One line per dropped operation that does not compute its operand unchanged.
    func problems(_ dropped: [DroppedIdentity]) -> [String] {
        guard !dropped.isEmpty else { return [] }
        let names = Array(Set(dropped.flatMap { [$0.data, $0.output] }))
        let values: [String: TensorValue]
        do { values = try ReferenceExecutor(graph: original).evaluate(names, feeds: feeds) } catch {
            return ["the \(dropped.count) operations FOLDED dropped as identities (\(dropped[0].label), ...) cannot be run on the seeded input: \(error)"]
        }
        return dropped.compactMap { identity -> String? in
            guard let data = values[identity.data], let result = values[identity.output] else {
                return "\(identity.label), dropped by the fold, cannot be evaluated"
            }
            if data.shape != result.shape {
                return "\(identity.label), dropped by the fold, is not the identity: it turns '\(identity.data)' of shape \(data.shape) into shape \(result.shape)"
            }
            let (x, y) = (data.doubles, result.doubles)
            if let k = x.indices.first(where: { !(x[$0] == y[$0] || (x[$0].isNaN && y[$0].isNaN)) }) {
                return "\(identity.label), dropped by the fold, is not the identity: at \(TensorValue.index(of: k, in: data.shape)) it turns \(x[k]) into \(y[k])"
            }
            return nil
        }
    }
}
