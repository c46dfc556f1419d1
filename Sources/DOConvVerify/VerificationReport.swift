import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Everything verify-equivalence found, and the verdict.
public struct VerificationReport: Sendable {
    public var original: String
    public var folded: String
    /// The files' format, as the report names it ("ONNX", "Keras HDF5", ...).
    public var format: String
    /// Structural differences: each one fails.
    public var structure: [String] = []
    /// What the structure check matched (for the report).
    public var structureSummary = ""
    public var notes: [String] = []
    public var layers: [LayerResult] = []
    public var outputs: [OutputResult] = []
    /// FOLDED's end-to-end failures (it does not run, an output is missing or reshaped).
    public var endToEndProblems: [String] = []
    /// Why the end-to-end comparison did not run (unsupported ops, Keras files), if it did not.
    public var endToEndSkipped: String?
    /// Feeds used end to end, described ("3 seeded inputs (seed 0): input [1, 3, 10, 10]").
    public var inputsDescription = ""

    public init(original: String, folded: String, format: String) {
        self.original = original
        self.folded = folded
        self.format = format
    }

    public var equivalent: Bool {
        structure.isEmpty && layers.allSatisfy(\.passed) && outputs.allSatisfy(\.stats.passed) && endToEndProblems.isEmpty
    }

    /// The report as printed: sections, then the verdict line.
    public func render() -> String {
        var lines: [String] = ["verify-equivalence: \(original) -> \(folded) (\(format))"]
        // Structure.
        if structure.isEmpty {
            lines.append("structure: ok" + (structureSummary.isEmpty ? "" : " (\(structureSummary))"))
        } else {
            lines.append("structure: \(structure.count) difference\(structure.count == 1 ? "" : "s")" + (structureSummary.isEmpty ? "" : " (\(structureSummary))"))
            for difference in structure.prefix(50) { lines.append("  - \(difference)") }
            if structure.count > 50 { lines.append("  ... and \(structure.count - 50) more") }
        }
        // Layers.
        if layers.isEmpty {
            lines.append("layers: none replaced")
        } else {
            lines.append("layers: \(layers.count) replaced, \(layers.filter(\.passed).count) verified (errors: worst absolute / relative to the largest reference value)")
            for layer in layers {
                lines.append("  \(layer.passed ? "ok  " : "FAIL") \(layer.name) [\(layer.conv)]: \(layer.description)")
                var parts: [String] = []
                if let s = layer.kernel { parts.append("kernel vs float64 recomputation \(Self.errors(s))") }
                if let s = layer.graphKernel { parts.append("vs ORIGINAL's graph \(Self.errors(s))") }
                if let s = layer.probe { parts.append("probe \(Self.errors(s))") }
                if let s = layer.bias { parts.append("bias \(Self.errors(s))") }
                if !parts.isEmpty { lines.append("       " + parts.joined(separator: "; ")) }
                for problem in layer.problems { lines.append("       problem: \(problem)") }
                for (what, stats) in [("kernel", layer.kernel), ("graph kernel", layer.graphKernel), ("probe", layer.probe), ("bias", layer.bias)] {
                    if let stats, let first = stats.first {
                        lines.append("       first disagreement: \(what)\(Self.index(first.index))\(first.context.map { " (\($0))" } ?? ""): expected \(Report.format(first.expected, digits: 9)), FOLDED \(Report.format(first.actual, digits: 9)) (tolerance \(Report.format(stats.tolerance)))")
                    }
                }
            }
        }
        // End to end.
        if let skipped = endToEndSkipped {
            lines.append("end to end: not run: \(skipped)")
        } else {
            lines.append("end to end: \(inputsDescription)")
            for output in outputs {
                let s = output.stats
                lines.append("  \(s.passed ? "ok  " : "FAIL") output '\(output.name)': \(Self.errors(s)) (tolerance \(Report.format(s.tolerance)))")
                if let first = s.first {
                    lines.append("       first disagreement: output '\(output.name)'\(Self.index(first.index))\(first.context.map { " (\($0))" } ?? ""): ORIGINAL \(Report.format(first.expected, digits: 9)), FOLDED \(Report.format(first.actual, digits: 9))")
                }
            }
            for problem in endToEndProblems { lines.append("  FAIL \(problem)") }
        }
        for note in notes { lines.append("note: \(note)") }
        lines.append(verdictLine)
        return lines.joined(separator: "\n")
    }

    public var verdictLine: String {
        if equivalent { return "verdict: EQUIVALENT" }
        var reasons: [String] = []
        if !structure.isEmpty { reasons.append("\(structure.count) structural difference\(structure.count == 1 ? "" : "s")") }
        let failedLayers = layers.filter { !$0.passed }.count
        if failedLayers > 0 { reasons.append("\(failedLayers) layer\(failedLayers == 1 ? "" : "s") off") }
        let failedOutputs = outputs.filter { !$0.stats.passed }.count
        if failedOutputs > 0 { reasons.append("\(failedOutputs) output\(failedOutputs == 1 ? "" : "s") off") }
        if !endToEndProblems.isEmpty { reasons.append("FOLDED fails to run end to end") }
        return "verdict: NOT EQUIVALENT (" + reasons.joined(separator: ", ") + ")"
    }

    package static func errors(_ s: ErrorStats) -> String {
        "abs \(Report.format(s.worstAbsolute)) rel \(Report.format(s.worstRelative))"
    }

    package static func index(_ index: [Int]) -> String { "[" + index.map(String.init).joined(separator: ", ") + "]" }
}

/// Number formatting for the report.
package enum Report {
    /// Scientific ("1.30e-07"), or plain for 0, inf and nan.
    package static func format(_ value: Double, digits: Int = 2) -> String {
        if value == 0 { return "0" }
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        return CFormat.string("%.\(digits)e", value)
    }
}
