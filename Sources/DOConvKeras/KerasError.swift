import DOConvCore
import DOConvFileIO

/// Why a Keras file could not be folded, as one line naming the file and the problem.
public enum KerasError: CarriesFileErrors, CarriesLayerErrors, Equatable, Sendable, CustomStringConvertible {
    case hdf5(HDF5Error)
    /// The file is HDF5 but not a Keras weights layout we know.
    case notKeras(path: String, reason: String)
    /// The model config (in the file or from --config) is missing or unreadable.
    case config(path: String, reason: String)
    /// A layer that may be a DOConv2D and cannot be folded or left as it is without what
    /// only the user knows (a kernel size, the model config).
    case undecidableLayer(path: String, layer: String, reason: String)
    case file(FileIOError)
    /// A layer's weights disagree with each other or with the config.
    case layer(InconsistentLayer)

    public var description: String {
        switch self {
        case let .hdf5(error): return error.description
        case let .notKeras(path, reason): return "\(path): not a Keras weights file: \(reason)"
        case let .config(path, reason): return "\(path): model config: \(reason)"
        case let .undecidableLayer(path, layer, reason): return "\(path): layer '\(layer)': \(reason)"
        case let .file(error): return error.description
        case let .layer(error): return error.description
        }
    }
}
