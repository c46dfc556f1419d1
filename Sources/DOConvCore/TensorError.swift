/// Errors raised while building core tensors and layers from untrusted data.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    case byteCountMismatch(expected: Int, actual: Int)
    case elementCountMismatch(shape: [Int], actual: Int)
    case invalidShape([Int])
    case inconsistentLayer(String)

    public var description: String {
        switch self {
        case let .byteCountMismatch(expected, actual):
            return "tensor data has \(actual) bytes where its shape needs \(expected)"
        case let .elementCountMismatch(shape, actual):
            return "tensor of shape \(shape) holds \(actual) elements"
        case let .invalidShape(shape):
            return "invalid tensor shape \(shape)"
        case let .inconsistentLayer(reason):
            return "inconsistent DO-Conv layer: \(reason)"
        }
    }
}
