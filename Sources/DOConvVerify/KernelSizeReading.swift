/// M x N of a layer whose stored tensors give only M*N (D's axis): what the user (or the
/// config) says, checked against M*N, else the square root of a square M*N.
package enum KernelSizeReading {
    /// `layer` names the layer in messages, `source` where `given` came from, `otherwise`
    /// what to pass when M*N is not a square.
    package static func size(layer: String, area: Int, given: [Int]?, given source: String, otherwise: String) throws -> (Int, Int) {
        if let given {
            guard given.count == 2, given[0] > 0, given[1] > 0, given[0].multipliedReportingOverflow(by: given[1]) == (area, false) else {
                throw VerifyError("\(layer): \(source) \(given.map(String.init).joined(separator: "x")) does not give D's M*N = \(area)")
            }
            return (given[0], given[1])
        }
        var root = 1
        while root * root < area { root += 1 }
        guard root * root == area else { throw VerifyError("\(layer): M x N = \(area) is not a square; \(otherwise)") }
        return (root, root)
    }
}
