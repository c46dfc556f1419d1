import CommandLineSupport
import DOConvCore

/// The human-readable expansion summary.
enum ExpandReport {
    static func summary(_ s: FoldSummary, input: String, output: String, verified: Bool, elapsed: Duration) -> String {
        var lines = ["\(input) -> \(output)"]
        if s.layers.isEmpty {
            lines.append("  no conv expanded; weights written unchanged")
        } else {
            var shapes: [String: Int] = [:]
            for layer in s.layers {
                let g = layer.geometry
                shapes["\(g.kernelHeight)x\(g.kernelWidth)\(g.groups > 1 ? " g\(g.groups)" : "") Dmul \(g.depthMultiplier)", default: 0] += 1
            }
            let list = shapes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.value) \($0.key)" }
            lines.append("  expanded \(s.layers.count) conv\(s.layers.count == 1 ? "" : "s") into DO-Conv layers: \(list.joined(separator: ", "))")
            lines.append("  " + SummaryLines.sizes(s))
            if verified, let worst = s.layers.compactMap(\.relativeError).max() {
                let tolerance = s.layers.map(\.tolerance).min() ?? 0
                lines.append("  verified: composed back, worst relative error \(SummaryLines.scientific(worst)) (tolerance \(SummaryLines.scientific(tolerance)))")
            } else {
                lines.append("  not verified (--no-verify)")
            }
        }
        for r in s.rejected { lines.append("  left: \(r.name): \(r.reason)") }
        for note in s.notes { lines.append("  note: \(note)") }
        lines.append("  " + SummaryLines.time(elapsed))
        return lines.joined(separator: "\n")
    }
}
