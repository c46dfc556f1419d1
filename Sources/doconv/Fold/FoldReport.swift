import CommandLineSupport
import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Formats the human-readable fold summary.
enum FoldReport {
    static func summary(_ s: FoldSummary, input: String, output: String, verified: Bool, elapsed: Duration) -> String {
        var lines = ["\(input) -> \(output)"]
        // A DO-Conv layer the fold cannot reach (inside an ONNX function or subgraph) or was
        // told to leave (--exclude, --only) is not "no DO-Conv layer".
        let unreached = s.rejected.filter(\.isDOConvLayer).count
        let none = unreached == 0 ? "no DO-Conv layer found"
            : "no DO-Conv layer folded: \(unreached) left unfolded (below)"
        if s.layers.isEmpty && s.fusedBatchNorms.isEmpty && s.reparameterized.isEmpty {
            lines.append("  \(none); model written unchanged")
        } else {
            if s.layers.isEmpty { lines.append("  \(none)") }
            let kinds = DOConvKind.allCases.compactMap { kind -> String? in
                let n = s.layers.filter { $0.kind == kind }.count
                return n == 0 ? nil : "\(n) \(kind.rawValue)"
            }
            let pairs = s.layers.filter { $0.form == .featureComposition }.count
            let pairNote = pairs == 0 ? "" : " (\(pairs) from depthwise + 1x1 pairs)"
            if !s.layers.isEmpty { lines.append("  folded \(s.layers.count) layer\(s.layers.count == 1 ? "" : "s"): \(kinds.joined(separator: ", "))\(pairNote)") }
            lines.append("  " + SummaryLines.sizes(s))
            if !s.reparameterized.isEmpty { lines.append("  " + reparamLine(s.reparameterized)) }
            if verified, let worst = (s.layers.compactMap(\.relativeError) + s.fusedBatchNorms.compactMap(\.relativeError)
                                      + s.reparameterized.compactMap(\.relativeError)).max() {
                let tolerance = (s.layers.map(\.tolerance) + s.fusedBatchNorms.map(\.tolerance) + s.reparameterized.map(\.tolerance)).min() ?? 0
                lines.append("  verified: worst relative error \(scientific(worst)) (tolerance \(scientific(tolerance)))")
            } else {
                lines.append("  not verified (--no-verify)")
            }
        }
        for r in s.rejected { lines.append("  not folded: \(r.name): \(r.reason)") }
        for note in s.notes { lines.append("  note: \(note)") }
        lines.append("  " + SummaryLines.time(elapsed))
        return lines.joined(separator: "\n")
    }

    static func scientific(_ x: Double) -> String { SummaryLines.scientific(x) }

    /// "re-parameterized 22 blocks of 100 nodes into 22 Convs (22 3x3)".
    static func reparamLine(_ blocks: [ReparameterizedBlock]) -> String {
        let nodes = blocks.reduce(0) { $0 + $1.nodesReplaced }
        var shapes: [String: Int] = [:]
        for block in blocks { shapes["\(block.kernelSize[0])x\(block.kernelSize[1])\(block.groups > 1 ? " g\(block.groups)" : "")", default: 0] += 1 }
        let list = shapes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.value) \($0.key)" }
        return "re-parameterized \(blocks.count) block\(blocks.count == 1 ? "" : "s") of \(nodes) nodes into \(blocks.count) Conv\(blocks.count == 1 ? "" : "s") (\(list.joined(separator: ", ")))"
    }
}
