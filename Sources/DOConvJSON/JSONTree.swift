/// JSON as plain Swift values, for the configs and headers doconv reads and rewrites (Keras
/// model configs, safetensors headers, MXNet symbols, tensor files): objects are
/// `[String: Any]`, arrays `[Any]`, strings `String`, `true`/`false` `Bool`, integers that
/// fit `Int`, other numbers `Double`, and `null` is `JSONNull`. Pure Swift: no Foundation,
/// whose JSONSerialization would link its whole runtime (ICU data included) into the tools.
public enum JSONTree {
    /// Why a text is not JSON, with the byte offset where reading stopped.
    public struct SyntaxError: Error, CustomStringConvertible, Sendable {
        public var offset: Int
        public var reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// The value `bytes` hold. Python's `NaN`, `Infinity` and `-Infinity` (json.dumps
    /// writes them) are read as doubles; nesting deeper than `maximumDepth` is refused.
    public static func parse<Bytes: Collection>(_ bytes: Bytes, maximumDepth: Int = 512) throws(SyntaxError) -> Any where Bytes.Element == UInt8 {
        var parser = Parser(bytes: Array(bytes), maximumDepth: maximumDepth)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == parser.bytes.count else { throw parser.error("text after the value") }
        return value
    }

    /// The value `text` holds.
    public static func parse(_ text: String, maximumDepth: Int = 512) throws(SyntaxError) -> Any {
        try parse(Array(text.utf8), maximumDepth: maximumDepth)
    }

    /// How `serialize` writes.
    public struct Style: Sendable {
        /// Object keys in code-point order (stable output).
        public var sortedKeys = true
        /// `/` written as `\/` (as JSONSerialization does by default).
        public var escapesSlashes = false
        /// Newlines and two-space indentation.
        public var prettyPrinted = false

        public init(sortedKeys: Bool = true, escapesSlashes: Bool = false, prettyPrinted: Bool = false) {
            self.sortedKeys = sortedKeys
            self.escapesSlashes = escapesSlashes
            self.prettyPrinted = prettyPrinted
        }
    }

    /// A value that is not JSON (a type other than those `parse` makes).
    public struct UnsupportedValue: Error, CustomStringConvertible, Sendable {
        public var typeName: String
        public var description: String { "a \(typeName) is not a JSON value" }
    }

    /// `value` as JSON text (UTF-8). Doubles keep their shortest round-trip spelling
    /// (1.0 stays 1.0, so Python reads a float back); NaN and infinities are written as
    /// Python writes them (`NaN`, `Infinity`).
    public static func serialize(_ value: Any, style: Style = Style()) throws(UnsupportedValue) -> [UInt8] {
        var out: [UInt8] = []
        try write(value, into: &out, style: style, indent: 0)
        return out
    }

    /// `value` as a JSON string.
    public static func string(_ value: Any, style: Style = Style()) throws(UnsupportedValue) -> String {
        String(decoding: try serialize(value, style: style), as: UTF8.self)
    }

    private static func write(_ value: Any, into out: inout [UInt8], style: Style, indent: Int) throws(UnsupportedValue) {
        switch value {
        case is JSONNull: out += Array("null".utf8)
        case let b as Bool: out += Array((b ? "true" : "false").utf8)
        case let i as Int: out += Array(String(i).utf8)
        case let i as Int64: out += Array(String(i).utf8)
        case let i as UInt64: out += Array(String(i).utf8)
        case let i as Int32: out += Array(String(i).utf8)
        case let d as Double: out += Array(spelling(d).utf8)
        case let f as Float: out += Array(spelling(Double(f)).utf8)
        case let s as String: writeString(s, into: &out, escapesSlashes: style.escapesSlashes)
        case let s as Substring: writeString(String(s), into: &out, escapesSlashes: style.escapesSlashes)
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            for (k, item) in array.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                newline(into: &out, style: style, indent: indent + 1)
                try write(item, into: &out, style: style, indent: indent + 1)
            }
            if !array.isEmpty { newline(into: &out, style: style, indent: indent) }
            out.append(UInt8(ascii: "]"))
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            let keys = style.sortedKeys ? object.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : Array(object.keys)
            for (k, key) in keys.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                newline(into: &out, style: style, indent: indent + 1)
                writeString(key, into: &out, escapesSlashes: style.escapesSlashes)
                out += Array((style.prettyPrinted ? ": " : ":").utf8)
                // The key comes from the dictionary's own keys: the lookup cannot miss.
                try write(object[key] ?? JSONNull(), into: &out, style: style, indent: indent + 1)
            }
            if !object.isEmpty { newline(into: &out, style: style, indent: indent) }
            out.append(UInt8(ascii: "}"))
        default:
            throw UnsupportedValue(typeName: String(describing: type(of: value)))
        }
    }

    private static func newline(into out: inout [UInt8], style: Style, indent: Int) {
        guard style.prettyPrinted else { return }
        out.append(UInt8(ascii: "\n"))
        out += [UInt8](repeating: UInt8(ascii: " "), count: 2 * indent)
    }

    private static func spelling(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
        return d.description
    }

    private static func writeString(_ s: String, into out: inout [UInt8], escapesSlashes: Bool) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "/") where escapesSlashes: out += [UInt8(ascii: "\\"), UInt8(ascii: "/")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// JSON's `null` in a `JSONTree` value (NSNull's place).
public struct JSONNull: Equatable, Sendable {
    public init() {}
}

/// Reads numbers out of `JSONTree` values the way the configs use them: an integer where a
/// count is expected, a double where a rate is, `true`/`false` as flags. A number of the
/// other kind converts as Python would read the config (2.0 is the count 2; a fraction is
/// not a count).
public enum JSONNumber {
    /// `value` as an integer: an Int, or a Double with no fraction that fits; nil otherwise.
    public static func int(_ value: Any?) -> Int? {
        switch value {
        case let i as Int: return i
        case let d as Double: return Int(exactly: d)
        default: return nil
        }
    }

    /// `value` as a double: an Int or a Double; nil otherwise.
    public static func double(_ value: Any?) -> Double? {
        switch value {
        case let i as Int: return Double(i)
        case let d as Double: return d
        default: return nil
        }
    }

    /// `value` as a flag: a Bool, or a number (nonzero is true); nil otherwise.
    public static func bool(_ value: Any?) -> Bool? {
        switch value {
        case let b as Bool: return b
        case let i as Int: return i != 0
        case let d as Double: return d != 0
        default: return nil
        }
    }

    /// `value` as a list of integers; nil unless it is an array of integers only.
    public static func ints(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        result.reserveCapacity(array.count)
        for item in array {
            guard let i = int(item) else { return nil }
            result.append(i)
        }
        return result
    }
}
