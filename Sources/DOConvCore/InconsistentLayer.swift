/// A DO-Conv layer whose tensors disagree with each other (or with the model's config):
/// the one wording every format uses for it.
public struct InconsistentLayer: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let layer: String
    public let reason: String

    public init(path: String, layer: String, reason: String) {
        self.path = path
        self.layer = layer
        self.reason = reason
    }

    public var description: String { "\(path): layer '\(layer)': \(reason)" }
}

/// A format's error type that carries `InconsistentLayer` as one of its cases.
public protocol CarriesLayerErrors: Error {
    static func layer(_ error: InconsistentLayer) -> Self
}

extension CarriesLayerErrors {
    public static func inconsistentLayer(path: String, layer: String, reason: String) -> Self {
        .layer(InconsistentLayer(path: path, layer: layer, reason: reason))
    }
}
