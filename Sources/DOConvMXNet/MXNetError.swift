import DOConvCore
import DOConvFileIO

/// Why an MXNet file could not be read, folded or written: one line naming the file.
public enum MXNetError: CarriesFileErrors, CarriesLayerErrors, Equatable, Sendable, CustomStringConvertible {
    case file(FileIOError)
    /// The .params container or the symbol JSON is damaged, or not MXNet's.
    case corrupt(path: String, reason: String)
    case layer(InconsistentLayer)
    /// An export pair whose other half cannot be found or named.
    case pair(path: String, reason: String)
    /// Memory for a folded kernel could not be had.
    case outOfMemory(path: String, what: String, byteCount: Int)

    public var description: String {
        switch self {
        case let .file(error): return error.description
        case let .corrupt(path, reason): return "\(path): corrupt MXNet file: \(reason)"
        case let .layer(error): return error.description
        case let .pair(path, reason): return "\(path): \(reason)"
        case let .outOfMemory(path, what, byteCount): return "\(path): out of memory: \(what) needs \(byteCount) bytes; nothing written"
        }
    }
}
