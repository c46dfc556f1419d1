import DOConvJSON
import CProtobufC
import CTFProto
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A tf_keras SavedModel's `keras_metadata.pb`: the Keras objects it was saved from, each
/// with JSON metadata; the root's (node path "root") holds the model's class name and
/// config, which is what `model.to_json()` would give.
public struct KerasMetadata: Sendable {
    /// The model's JSON: {"class_name": ..., "config": ...}.
    public let modelJSON: String

    /// Reads `keras_metadata.pb` at `path`.
    public init(path: String) throws(TensorFlowError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .cannotOpen(path: path, reason: "cannot read the file")
        }
        let root: String? = data.withUnsafeBytes { raw in
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress,
                  let message = tensorflow__saved_metadata__unpack(nil, raw.count, base) else { return nil }
            defer { tensorflow__saved_metadata__free_unpacked(message, nil) }
            for k in 0..<message.pointee.n_nodes {
                guard let node = message.pointee.nodes[k]?.pointee, let nodePath = node.node_path, String(cString: nodePath) == "root",
                      let metadata = node.metadata else { continue }
                return String(cString: metadata)
            }
            return nil
        }
        guard let root else { throw .corruptObjectGraph(path: path, reason: "no metadata for the root object (node path \"root\")") }
        guard let object = try? JSONTree.parse(root) as? [String: Any],
              let className = object["class_name"] as? String, let config = object["config"] else {
            throw .corruptObjectGraph(path: path, reason: "the root object's metadata has no class_name and config")
        }
        let model: [String: Any] = ["class_name": className, "config": Self.untupled(config), "backend": "tensorflow"]
        guard let json = try? JSONTree.string(model, style: JSONTree.Style(escapesSlashes: true)) else {
            throw .corruptObjectGraph(path: path, reason: "the root object's config cannot be written as JSON")
        }
        modelJSON = json
    }

    /// The metadata writes tuples as {"class_name": "__tuple__", "items": [...]} where
    /// `to_json()` writes lists: lists again.
    static func untupled(_ value: Any) -> Any {
        if let object = value as? [String: Any] {
            if object["class_name"] as? String == "__tuple__", let items = object["items"] as? [Any] { return items.map(untupled) }
            return object.mapValues(untupled)
        }
        if let list = value as? [Any] { return list.map(untupled) }
        return value
    }
}
