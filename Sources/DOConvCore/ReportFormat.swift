/// How the tools' text reports write counts and sizes (without Foundation, like the rest of
/// the core).
public enum ReportFormat {
    /// Thousands separated by commas: 1234567 -> "1,234,567", -1234 -> "-1,234".
    public static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = n < 0 ? "-" : ""
        for (k, ch) in digits.enumerated() {
            if k > 0 && (digits.count - k) % 3 == 0 { out.append(",") }
            out.append(ch)
        }
        return out
    }

    /// A byte count in B, KiB or MiB with one decimal, rounded as printf's "%.1f" rounds.
    public static func bytes(_ n: Int) -> String {
        func tenths(_ unit: Int) -> String {
            // n * 10 / 2^k is exact in a Double, so rounding it half to even is what printf does.
            let t = Int((Double(n) * 10 / Double(unit)).rounded(.toNearestOrEven))
            return "\(t / 10).\(t % 10)"
        }
        if n >= 1 << 20 { return tenths(1 << 20) + " MiB" }
        if n >= 1 << 10 { return tenths(1 << 10) + " KiB" }
        return "\(n) B"
    }

    /// `s` as a JSON string literal, quotes included (for the small JSON documents the
    /// adapters write by hand: metadata records, safetensors headers).
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
