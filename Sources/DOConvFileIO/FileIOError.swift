#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be read or written: the one vocabulary every format shares for
/// what happens below its own layout (a missing file, a full disk, a refused rename).
public enum FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case cannotWrite(path: String, reason: String)

    public var path: String {
        switch self {
        case let .cannotOpen(path, _), let .cannotWrite(path, _): return path
        }
    }

    public var reason: String {
        switch self {
        case let .cannotOpen(_, reason), let .cannotWrite(_, reason): return reason
        }
    }

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "\(path): cannot open: \(reason)"
        case let .cannotWrite(path, reason): return "\(path): cannot write: \(reason)"
        }
    }
}

extension FileIOError {
    /// The C library's message for the current `errno`.
    static var systemReason: String { String(cString: strerror(errno)) }
}

/// A format's error type that carries the shared file errors as one case, so each format
/// keeps one error type and none spells "cannot open" or "cannot write" again.
public protocol CarriesFileErrors: Error {
    static func file(_ error: FileIOError) -> Self
}

extension CarriesFileErrors {
    public static func cannotOpen(path: String, reason: String) -> Self { .file(.cannotOpen(path: path, reason: reason)) }
    public static func cannotWrite(path: String, reason: String) -> Self { .file(.cannotWrite(path: path, reason: reason)) }
}
