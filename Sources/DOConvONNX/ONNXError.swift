import DOConvCore
import DOConvFileIO

/// Why a model could not be read, folded or written. Each case renders as one line that
/// names the file and the problem.
public enum ONNXError: CarriesFileErrors, Equatable, Sendable, CustomStringConvertible {
    case file(FileIOError)
    case emptyFile(path: String)
    case notAModel(path: String, reason: String)
    case malformed(path: String, reason: String)
    case externalData(path: String, reason: String)
    /// The memory a result needs could not be had.
    case outOfMemory(path: String, what: String, byteCount: Int)

    public var description: String {
        switch self {
        case let .file(error): return error.description
        case let .emptyFile(path): return "\(path): the file is empty"
        case let .notAModel(path, reason): return "\(path): not an ONNX model: \(reason)"
        case let .malformed(path, reason): return "\(path): malformed model: \(reason)"
        case let .externalData(path, reason): return "\(path): external data: \(reason)"
        case let .outOfMemory(path, what, byteCount): return "\(path): out of memory: \(what) needs \(byteCount) bytes; nothing written"
        }
    }
}
