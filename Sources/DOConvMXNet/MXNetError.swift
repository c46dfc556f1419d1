/// Why an MXNet file could not be read, folded or written: one line naming the file.
public enum MXNetError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    /// The .params container or the symbol JSON is damaged, or not MXNet's.
    case corrupt(path: String, reason: String)
    /// A DO-Conv layer's arrays disagree with each other.
    case inconsistentLayer(path: String, layer: String, reason: String)
    /// An export pair whose other half cannot be found or named.
    case pair(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .corrupt(path, reason): return "\(path): corrupt MXNet file: \(reason)"
        case let .inconsistentLayer(path, layer, reason): return "\(path): layer '\(layer)': \(reason)"
        case let .pair(path, reason): return "\(path): \(reason)"
        case let .cannotWrite(path, reason): return "\(path): cannot write: \(reason)"
        }
    }
}
