import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The human-readable report: a table with one row per layer, totals, the layers that were
/// not folded, and optionally each layer's H map as text.
public enum TextReport {
    /// Shades of the text heat maps, lowest to highest (a blank cell is exactly zero).
    static let ramp = Array(" .:-=+*#%@")

    /// The report as text; `formatName` names the format in the title ("ONNX"), else the
    /// report's machine name is used.
    public static func render(_ report: InspectReport, maps: Bool = false, formatName: String? = nil) -> String {
        var lines: [String] = []
        if report.layers.isEmpty {
            let unreached = report.rejected.filter(\.unreached).count
            lines.append(unreached == 0 ? "\(report.model): no DO-Conv layer found, nothing to fold"
                : "\(report.model): \(unreached) DO-Conv layer\(unreached == 1 ? "" : "s") left unfolded (below), nothing folded")
            lines += rejectedLines(report)
            lines += reparamLines(report)
            return lines.joined(separator: "\n") + "\n"
        }
        let count = report.layers.count
        lines.append("\(report.model) (\(formatName ?? report.format)): \(count) DO-Conv layer\(count == 1 ? "" : "s")")
        lines.append("")
        lines += table(report, maps: maps)
        if !maps { lines.append("") }
        lines.append("|D-I|/|I|: ||D - I||_F / ||I||_F, how far the D the layer composes is from the identity offset I (0: D = I)")
        if !maps { lines.append("run with --maps for each layer's H = sum over channels of |W' - W| (W: the kernel with D = I)") }
        lines.append("")
        lines += totalLines(report)
        lines += locationLines(report)
        lines += rejectedLines(report)
        lines += reparamLines(report)
        return lines.joined(separator: "\n") + "\n"
    }

    /// `--reparam`: a table of the blocks that merge, then the refused look-alikes.
    static func reparamLines(_ report: InspectReport) -> [String] {
        guard let reparam = report.reparam else { return [] }
        var lines = ["", "re-parameterizable blocks (--reparam): \(reparam.blocks.count)"]
        if !reparam.blocks.isEmpty {
            let rows = reparam.blocks.enumerated().map { k, block in
                ["\(k + 1)", block.name, "\(block.kernel.map(String.init).joined(separator: "x"))", "\(block.groups)", "\(block.nodesReplaced)",
                 block.branches.count == 1 ? "chain: " + block.branches[0] : "\(block.branches.count) branches: " + block.branches.joined(separator: " + ")]
            }
            let titles = ["#", "block", "merged", "groups", "nodes", "branches"]
            var widths = titles.map(\.count)
            for row in rows { for (k, cell) in row.enumerated() where k < 5 { widths[k] = max(widths[k], cell.count) } }
            func line(_ cells: [String]) -> String {
                cells.enumerated().map { k, cell in k < 5 ? cell + String(repeating: " ", count: max(0, widths[k] - cell.count)) : cell }.joined(separator: "  ")
            }
            lines.append(line(titles))
            lines += rows.map(line)
        }
        if !reparam.refused.isEmpty {
            lines.append("not re-parameterizable:")
            lines += reparam.refused.map { "  \($0.name): \($0.reason)" }
        }
        return lines
    }

    /// Where the layers outside the main graph sit, by row number.
    static func locationLines(_ report: InspectReport) -> [String] {
        let placed = report.layers.enumerated().compactMap { k, layer in layer.location.map { (k + 1, $0) } }
        guard !placed.isEmpty else { return [] }
        return ["", "outside the main graph:"] + placed.map { "  \($0.0)  \($0.1)" }
    }

    /// Column titles and whether each column is right-aligned.
    static let columns: [(title: String, right: Bool)] = [
        ("#", true), ("layer", false), ("kind", false), ("form", false), ("Cin->Cout", true), ("MxN", true),
        ("stride", false), ("dilation", false), ("groups", true), ("Dmul", true), ("params trained->folded", true),
        ("|D-I|/|I|", true),
    ]

    static func cells(_ layer: InspectReport.Layer, index: Int) -> [String] {
        [
            "\(index)", layer.name, layer.kind, layer.form, "\(layer.inChannels)->\(layer.outChannels)",
            layer.kernel.map(String.init).joined(separator: "x"),
            dims(layer.stride), dims(layer.dilation),
            "\(layer.groups)", "\(layer.dMul)", "\(ReportFormat.grouped(layer.paramsTrained))->\(ReportFormat.grouped(layer.paramsFolded))",
            deviation(layer.dDeviation),
        ]
    }

    static func table(_ report: InspectReport, maps: Bool) -> [String] {
        let rows = report.layers.enumerated().map { cells($0.element, index: $0.offset + 1) }
        var widths = columns.map(\.title.count)
        for row in rows { for (k, cell) in row.enumerated() { widths[k] = max(widths[k], cell.count) } }
        func line(_ cells: [String]) -> String {
            let padded = cells.enumerated().map { k, cell -> String in
                let pad = String(repeating: " ", count: widths[k] - cell.count)
                return columns[k].right ? pad + cell : cell + pad
            }
            var text = padded.joined(separator: "  ")
            while text.last?.isWhitespace == true { text.removeLast() }
            return text
        }
        var lines = [line(columns.map(\.title))]
        let indent = String(repeating: " ", count: widths[0] + 2)
        for (k, row) in rows.enumerated() {
            lines.append(line(row))
            if maps { lines += mapLines(report.layers[k]).map { $0.isEmpty ? $0 : indent + $0 } }
        }
        return lines
    }

    /// A layer's H map: shades from the layer's minimum (blank) to its maximum ("@"), as the
    /// paper normalizes each map, then the values.
    public static func mapLines(_ layer: InspectReport.Layer) -> [String] {
        let g = layer.kernel
        if layer.hMap.joined().allSatisfy({ $0 == 0 }) {
            let why = !layer.hasD ? " (no D: the kernel is W reshaped)" : layer.dDeviation == 0 ? " (D = I, so W' = W)" : ""
            return ["H \(g[0])x\(g[1]): all zero\(why)", ""]
        }
        let (low, high) = layer.hRange
        var lines = ["H \(g[0])x\(g[1]) = sum over channels of |W' - W|, shaded from min \(number(low)) ' ' to max \(number(high)) '@':"]
        let values = layer.hMap.map { $0.map(number) }
        let width = values.joined().map(\.count).max() ?? 1
        for (row, texts) in zip(layer.hMap, values) {
            let shades = row.map { v -> String in
                let c = shade(v, low: low, high: high)
                return String([c, c])
            }.joined()
            let numbers = texts.map { String(repeating: " ", count: width - $0.count) + $0 }.joined(separator: " ")
            lines.append("|\(shades)|  \(numbers)")
        }
        lines.append("")
        return lines
    }

    static func shade(_ v: Double, low: Double, high: Double) -> Character {
        guard v.isFinite else { return "?" }
        guard high > low else { return ramp[ramp.count - 1] }
        let level = Int(((v - low) / (high - low) * Double(ramp.count - 1)).rounded())
        return ramp[Swift.min(ramp.count - 1, Swift.max(0, level))]
    }

    static func totalLines(_ report: InspectReport) -> [String] {
        let t = report.totals
        let kinds = ["DO-Conv", "DO-DConv", "DO-GConv"].compactMap { kind -> String? in
            let n = t.layersByKind[kind] ?? 0
            return n == 0 ? nil : "\(n) \(kind)"
        }
        let change = t.paramsTrained > 0 ? 100 * Double(t.paramsFolded - t.paramsTrained) / Double(t.paramsTrained) : 0
        let savedBytes = t.bytesSaved >= 0 ? ReportFormat.bytes(t.bytesSaved) + " saved" : ReportFormat.bytes(-t.bytesSaved) + " more"
        return [
            "totals: \(t.layers) layer\(t.layers == 1 ? "" : "s") (\(kinds.joined(separator: ", ")))",
            "  parameters (D and W -> folded kernel): \(ReportFormat.grouped(t.paramsTrained)) -> \(ReportFormat.grouped(t.paramsFolded)) "
                + "(\(CFormat.string("%+.1f", change))%), \(savedBytes)",
            macsLine(t),
            "    multiply each layer's by its output H x W for MACs per inference (weights carry no feature-map sizes)",
        ]
    }

    static func macsLine(_ t: InspectReport.Totals) -> String {
        let folded = ReportFormat.grouped(t.macsPerOutputPosition)
        if t.macsUnchangedByFolding {
            return "  MACs per output position: \(folded) (sum of Cout x Cin/g x M x N), unchanged by folding;"
        }
        return "  MACs per output position: \(ReportFormat.grouped(t.macsPerOutputPositionUnfolded)) as the model runs them -> \(folded) folded "
            + "(Cout x Cin/g x M x N; feature composition runs a depthwise and a 1x1 conv);"
    }

    static func rejectedLines(_ report: InspectReport) -> [String] {
        guard !report.rejected.isEmpty else { return [] }
        return ["not folded (looked like DO-Conv):"] + report.rejected.map { "  \($0.name): \($0.reason)" }
    }

    static func deviation(_ x: Double?) -> String {
        guard let x else { return "n/a" }
        return x == 0 ? "0" : CFormat.string("%.4f", x)
    }

    /// Three significant digits, without exponent for ordinary magnitudes.
    static func number(_ x: Double) -> String {
        guard x.isFinite else { return "\(x)" }
        if x == 0 { return "0" }
        if abs(x) >= 1000 || abs(x) < 0.001 { return CFormat.string("%.2e", x) }
        if abs(x) >= 100 { return CFormat.string("%.0f", x) }
        if abs(x) >= 10 { return CFormat.string("%.1f", x) }
        if abs(x) >= 1 { return CFormat.string("%.2f", x) }
        return CFormat.string("%.3f", x)
    }


    /// "2x2"; "-" where the file does not record it (checkpoints hold no strides).
    static func dims(_ values: [Int]) -> String {
        values.isEmpty ? "-" : values.map(String.init).joined(separator: "x")
    }
}
