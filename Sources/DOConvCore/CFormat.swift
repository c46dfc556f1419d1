#if canImport(Glibc)
import Glibc
#endif

/// printf-style number formatting ("%.2e", "%+.1f", "%02x") through the C library, in the
/// C locale (a '.' decimal point whatever the user's locale): what the reports print, without
/// Foundation's String(format:), which would link Foundation's whole runtime into the tools.
public enum CFormat {
    /// `format` filled with `arguments`, as C's snprintf writes it.
    public static func string(_ format: String, _ arguments: CVarArg...) -> String {
        var capacity = 64
        while true {
            var buffer = [CChar](repeating: 0, count: capacity)
            let written = Int(withVaList(arguments) { vsnprintf(&buffer, capacity, format, $0) })
            guard written >= 0 else { return "" }
            if written < capacity {
                return String(decoding: buffer[..<written].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            capacity = written + 1
        }
    }
}
