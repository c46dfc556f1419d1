import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The paper's Figure 6 view as an SVG image: one heat map per DO-Conv layer of
/// H[m][n] = sum over channels of |W' - W|, each normalized from its own minimum to its own
/// maximum (brighter = larger, as in the paper), with a title, a color scale, the layer names
/// and the values in the cells.
///
/// Every map is a `<g class="layer-map" data-layer="NAME">`; every cell carries a `<title>`
/// with its value, so viewers show it on hover.
public enum SVGReport {
    static let font = "DejaVu Sans, Helvetica, Arial, sans-serif"
    static let margin = 24
    static let panelWidth = 220
    static let gap = 16
    static let maxColumns = 4
    /// Side of the largest map, in pixels; cells shrink for large kernels.
    static let mapSide = 144
    static let maxCell = 36
    /// Wide enough for the title and the color scale's legend.
    static let minimumWidth = 720

    /// Viridis, sampled at nine evenly spaced points.
    static let stops: [(Double, Double, Double)] = [
        (0x44, 0x01, 0x54), (0x48, 0x28, 0x78), (0x3e, 0x49, 0x89), (0x31, 0x68, 0x8e), (0x26, 0x82, 0x8e),
        (0x1f, 0x9e, 0x89), (0x35, 0xb7, 0x79), (0x6e, 0xce, 0x58), (0xfd, 0xe7, 0x25),
    ]

    /// The color of t in [0, 1] on the scale.
    static func color(_ t: Double) -> String {
        let x = min(1, max(0, t.isFinite ? t : 0)) * Double(stops.count - 1)
        let k = min(stops.count - 2, Int(x))
        let f = x - Double(k)
        let (a, b) = (stops[k], stops[k + 1])
        func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * f).rounded()) }
        return CFormat.string("#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }

    /// Text on a cell: dark on the bright end of the scale, white elsewhere.
    static func textColor(_ t: Double) -> String { t > 0.62 ? "#1a1a1a" : "#ffffff" }

    static func cellSide(_ kernel: [Int]) -> Int {
        max(4, min(maxCell, mapSide / max(1, kernel.max() ?? 1)))
    }

    public static func render(_ report: InspectReport) -> String {
        let layers = report.layers
        let columns = max(1, min(maxColumns, layers.count))
        let width = max(minimumWidth, 2 * margin + columns * panelWidth + (columns - 1) * gap)
        let headerHeight = 130
        let mapHeight = layers.map { $0.kernel[0] * cellSide($0.kernel) }.max() ?? 0
        let panelHeight = 44 + mapHeight + 44
        let rows = (layers.count + columns - 1) / columns
        let height = layers.isEmpty ? 130 : headerHeight + rows * panelHeight + (rows - 1) * gap + margin

        var out: [String] = []
        out.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        out.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"\(font)\">")
        out.append("<title>DO-Conv H maps: \(escape(report.model))</title>")
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>")
        out.append(text(x: margin, y: 34, size: 18, weight: "bold", "H = \u{3A3} |W\u{2032} \u{2212} W| per DO-Conv layer"))
        out.append(text(x: margin, y: 56, size: 12, fill: "#333333", "\(report.model): \(layers.count) layer\(layers.count == 1 ? "" : "s")"))
        guard !layers.isEmpty else {
            out.append(text(x: margin, y: 96, size: 14, fill: "#333333", "no DO-Conv layer found, nothing to fold"))
            out.append("</svg>")
            return out.joined(separator: "\n") + "\n"
        }
        out.append(text(x: margin, y: 74, size: 11, fill: "#555555",
                        "W\u{2032}: the folded kernel; W: the same W folded with D = I; H sums over output and input channels."))
        out += scale(x: margin, y: 84)
        for (k, layer) in layers.enumerated() {
            let x = margin + (k % columns) * (panelWidth + gap)
            let y = headerHeight + (k / columns) * (panelHeight + gap)
            out += panel(layer, index: k + 1, x: x, y: y, height: panelHeight, mapHeight: mapHeight)
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    /// The color bar, from each map's own minimum to its own maximum.
    static func scale(x: Int, y: Int) -> [String] {
        var out = ["<g class=\"color-scale\">"]
        out.append("<defs><linearGradient id=\"viridis\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">")
        for k in 0..<stops.count {
            let t = Double(k) / Double(stops.count - 1)
            out.append("<stop offset=\"\(CFormat.string("%.3f", t))\" stop-color=\"\(color(t))\"/>")
        }
        out.append("</linearGradient></defs>")
        out.append(text(x: x, y: y + 11, size: 11, fill: "#333333", "layer min"))
        out.append("<rect x=\"\(x + 58)\" y=\"\(y)\" width=\"200\" height=\"14\" fill=\"url(#viridis)\" stroke=\"#888888\" stroke-width=\"0.5\"/>")
        out.append(text(x: x + 264, y: y + 11, size: 11, fill: "#333333", "layer max"))
        out.append(text(x: x, y: y + 30, size: 11, fill: "#555555", "Each map is normalized to its own range, as in the paper; gray: H = 0. Hover a cell for its value."))
        out.append("</g>")
        return out
    }

    static func panel(_ layer: InspectReport.Layer, index: Int, x: Int, y: Int, height: Int, mapHeight: Int) -> [String] {
        var out = ["<g class=\"layer-map\" data-layer=\"\(escape(layer.name))\" transform=\"translate(\(x),\(y))\">"]
        out.append("<title>\(escape(layer.name))</title>")
        out.append("<rect x=\"0\" y=\"0\" width=\"\(panelWidth)\" height=\"\(height)\" rx=\"6\" fill=\"#f6f6f6\" stroke=\"#d0d0d0\"/>")
        out.append(text(x: 10, y: 18, size: 13, weight: "bold", middleTruncated(layer.name, to: 22)))
        out.append("<text x=\"\(panelWidth - 10)\" y=\"18\" font-size=\"11\" text-anchor=\"end\" fill=\"#888888\">#\(index)</text>")
        let geometry = "\(layer.kind) \(layer.kernel[0])x\(layer.kernel[1]), \(layer.inChannels)\u{2192}\(layer.outChannels)"
            + (layer.groups > 1 ? ", g=\(layer.groups)" : "")
        out.append(text(x: 10, y: 34, size: 11, fill: "#444444", truncated(geometry, to: 36)))

        let side = cellSide(layer.kernel)
        let (rows, cols) = (layer.kernel[0], layer.kernel[1])
        let left = (panelWidth - cols * side) / 2
        let top = 44 + (mapHeight - rows * side) / 2
        let (low, high) = layer.hRange
        let allZero = high == 0 && low == 0
        let showValues = side >= 28
        for m in 0..<rows {
            for n in 0..<cols {
                let v = layer.hMap[m][n]
                let t = high > low ? (v - low) / (high - low) : 1
                let fill = allZero ? "#d9d9d9" : v.isFinite ? color(t) : "#9a9a9a"
                let (cx, cy) = (left + n * side, top + m * side)
                out.append("<rect x=\"\(cx)\" y=\"\(cy)\" width=\"\(side)\" height=\"\(side)\" fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"\(side >= 12 ? 1 : 0.5)\">"
                    + "<title>H[\(m)][\(n)] = \(TextReport.number(v))</title></rect>")
                if showValues {
                    out.append("<text x=\"\(cx + side / 2)\" y=\"\(cy + side / 2 + 3)\" font-size=\"9\" text-anchor=\"middle\" fill=\"\(allZero ? "#333333" : textColor(t))\">\(escape(TextReport.number(v)))</text>")
                }
            }
        }
        let footer = 44 + mapHeight + 16
        let note: String
        if !layer.hasD {
            note = "no D (1x1): H = 0"
        } else if allZero {
            note = layer.dDeviation == 0 ? "D = I: H = 0" : "H = 0"
        } else {
            note = "min \(TextReport.number(low)), max \(TextReport.number(high))"
        }
        out.append(text(x: 10, y: footer, size: 11, fill: "#222222", note))
        out.append(text(x: 10, y: footer + 16, size: 11, fill: "#555555", "\u{2016}D\u{2212}I\u{2016}/\u{2016}I\u{2016} = \(TextReport.deviation(layer.dDeviation))"))
        out.append("</g>")
        return out
    }

    static func text(x: Int, y: Int, size: Int, weight: String? = nil, fill: String = "#111111", _ content: String) -> String {
        let bold = weight.map { " font-weight=\"\($0)\"" } ?? ""
        return "<text x=\"\(x)\" y=\"\(y)\" font-size=\"\(size)\"\(bold) fill=\"\(fill)\">\(escape(content))</text>"
    }

    /// Long layer names keep their start and their end (usually the distinctive parts);
    /// the panel's tooltip has the full name.
    static func middleTruncated(_ s: String, to limit: Int) -> String {
        guard s.count > limit else { return s }
        let head = (limit - 1) / 2
        return String(s.prefix(head)) + "\u{2026}" + String(s.suffix(limit - 1 - head))
    }

    static func truncated(_ s: String, to limit: Int) -> String {
        s.count <= limit ? s : String(s.prefix(limit - 1)) + "\u{2026}"
    }

    /// Escapes text for XML content and attribute values; drops characters XML 1.0 forbids.
    static func escape(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF: out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
