/// A recursive-descent reader of RFC 8259 JSON over UTF-8 bytes (plus Python's NaN and
/// Infinity), building `JSONTree` values.
struct Parser {
    let bytes: [UInt8]
    let maximumDepth: Int
    var position = 0

    init(bytes: [UInt8], maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    func error(_ reason: String) -> JSONTree.SyntaxError {
        JSONTree.SyntaxError(offset: position, reason: reason)
    }

    mutating func skipSpace() {
        while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    private func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func expect(_ literal: String) throws(JSONTree.SyntaxError) {
        let expected = Array(literal.utf8)
        guard bytes.count - position >= expected.count, Array(bytes[position..<position + expected.count]) == expected else {
            throw error("expected \(literal)")
        }
        position += expected.count
    }

    mutating func value(depth: Int) throws(JSONTree.SyntaxError) -> Any {
        guard depth <= maximumDepth else { throw error("nested deeper than \(maximumDepth) levels") }
        guard let byte = peek() else { throw error("unexpected end of the text") }
        switch byte {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try expect("true"); return true
        case UInt8(ascii: "f"): try expect("false"); return false
        case UInt8(ascii: "n"): try expect("null"); return JSONNull()
        case UInt8(ascii: "N"): try expect("NaN"); return Double.nan
        case UInt8(ascii: "I"): try expect("Infinity"); return Double.infinity
        case UInt8(ascii: "-") where position + 1 < bytes.count && bytes[position + 1] == UInt8(ascii: "I"):
            position += 1
            try expect("Infinity")
            return -Double.infinity
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw error("unexpected character '\(Character(Unicode.Scalar(byte)))'")
        }
    }

    private mutating func object(depth: Int) throws(JSONTree.SyntaxError) -> [String: Any] {
        position += 1
        var result: [String: Any] = [:]
        skipSpace()
        if peek() == UInt8(ascii: "}") { position += 1; return result }
        while true {
            skipSpace()
            guard peek() == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try string()
            skipSpace()
            guard peek() == UInt8(ascii: ":") else { throw error("expected ':'") }
            position += 1
            skipSpace()
            result[key] = try value(depth: depth + 1) // a repeated key: the last wins
            skipSpace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return result
            default: throw error("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(JSONTree.SyntaxError) -> [Any] {
        position += 1
        var result: [Any] = []
        skipSpace()
        if peek() == UInt8(ascii: "]") { position += 1; return result }
        while true {
            skipSpace()
            result.append(try value(depth: depth + 1))
            skipSpace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return result
            default: throw error("expected ',' or ']'")
            }
        }
    }

    private mutating func string() throws(JSONTree.SyntaxError) -> String {
        position += 1
        var utf8: [UInt8] = []
        while true {
            guard let byte = peek() else { throw error("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                // Invalid UTF-8 is refused rather than repaired: a name must round-trip.
                guard let text = String(validating: utf8, as: UTF8.self) else { throw error("a string that is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                guard let escape = peek() else { throw error("unterminated string") }
                position += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8 += try unicodeEscape()
                default: throw error("unknown escape '\\\(Character(Unicode.Scalar(escape)))'")
                }
            case 0..<0x20:
                throw error("a control character inside a string")
            default:
                utf8.append(byte)
            }
        }
    }

    /// The UTF-8 of a `\uXXXX` escape (after the `u`), a surrogate pair's second half read too.
    private mutating func unicodeEscape() throws(JSONTree.SyntaxError) -> [UInt8] {
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
            guard bytes.count - position >= 6, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                throw error("a lone surrogate")
            }
            position += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw error("a lone surrogate") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(code) {
            throw error("a lone surrogate")
        }
        guard let scalar = Unicode.Scalar(code) else { throw error("an invalid code point") }
        return Array(String(Character(scalar)).utf8)
    }

    private mutating func hex4() throws(JSONTree.SyntaxError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw error("a short \\u escape") }
        var code: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("a bad \\u escape")
            }
            code = code << 4 | UInt32(digit)
            position += 1
        }
        return code
    }

    /// An integer literal that fits becomes an Int; anything else a Double (as Swift's
    /// own `Double(String)` reads it: correctly rounded).
    private mutating func number() throws(JSONTree.SyntaxError) -> Any {
        let start = position
        var integral = true
        if peek() == UInt8(ascii: "-") { position += 1 }
        guard let first = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { throw error("a bad number") }
        if first == UInt8(ascii: "0") {
            position += 1
        } else {
            digits()
        }
        if peek() == UInt8(ascii: ".") {
            integral = false
            position += 1
            guard digits() > 0 else { throw error("a bad number") }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            integral = false
            position += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
            guard digits() > 0 else { throw error("a bad number") }
        }
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        if integral, let int = Int(text) { return int }
        guard let double = Double(text) else { throw error("a bad number") }
        return double
    }

    @discardableResult
    private mutating func digits() -> Int {
        let start = position
        while let byte = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) { position += 1 }
        return position - start
    }
}
