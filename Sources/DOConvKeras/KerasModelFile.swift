#if canImport(Glibc)
import Glibc
#endif
import DOConvCore
import DOConvFileIO

/// A Keras legacy HDF5 full model, as tf_keras `model.save('x.h5')` writes it: the model
/// config in the root's `model_config`, and under `model_weights/` one group per layer
/// (listed in `layer_names`, in model order) whose `weight_names` name its datasets in the
/// order the layer holds its weights (`conv/kernel:0` at `model_weights/conv/conv/kernel:0`).
public struct KerasModelFile {
    /// One weight: its Keras name ("conv/kernel:0"), shape and values.
    public struct Weight {
        public var name: String
        public var shape: [Int]
        public var values: Values
        public init(name: String, shape: [Int], values: Values) {
            (self.name, self.shape, self.values) = (name, shape, values)
        }
    }

    public enum Values {
        case float32([Float])
        case float64([Double])
    }

    /// `{"class_name": ..., "config": ...}` of the model written.
    public var modelConfigJSON: String
    /// Every layer in model order, with its weights (none for most).
    public var layers: [(name: String, weights: [Weight])]
    /// The `keras_version` attribute (tf_keras writes its own version).
    public var kerasVersion = "2.21.0"

    public init(modelConfigJSON: String, layers: [(name: String, weights: [Weight])]) {
        self.modelConfigJSON = modelConfigJSON
        self.layers = layers
    }

    /// Writes the file atomically: a temporary file beside `path`, then renamed over it.
    public func write(to path: String) throws(KerasError) {
        let temporary = TemporaryFiles.path(beside: path)
        do {
            try fill(HDF5File.create(path: temporary))
        } catch {
            unlink(temporary)
            throw .hdf5(error)
        }
        do { try AtomicFileWriter.replace(path, with: temporary) } catch { throw .file(error) }
    }

    private func fill(_ file: HDF5File) throws(HDF5Error) {
        let root = try file.root()
        try root.setStrings("backend", ["tensorflow"], style: .utf8Scalar)
        try root.setStrings("keras_version", [kerasVersion], style: .utf8Scalar)
        try root.setStrings("model_config", [modelConfigJSON], style: .utf8Scalar)
        let weights = try root.createGroup("model_weights")
        try weights.setStrings("backend", ["tensorflow"], style: .utf8Scalar)
        try weights.setStrings("keras_version", [kerasVersion], style: .utf8Scalar)
        try weights.setStrings("layer_names", layers.map(\.name), style: .bytesArray)
        for layer in layers {
            let group = try weights.createGroup(layer.name)
            try group.setStrings("weight_names", layer.weights.map(\.name), style: .bytesArray)
            for weight in layer.weights {
                // "conv/kernel:0" lives at conv/kernel:0 under the layer's group.
                var parent = group
                let parts = weight.name.split(separator: "/").map(String.init)
                for part in parts.dropLast() {
                    parent = parent.hasChild(part) ? try parent.group(part) : try parent.createGroup(part)
                }
                let leaf = parts.last ?? weight.name
                switch weight.values {
                case let .float32(values): try parent.createDataset(leaf, shape: weight.shape, values: values)
                case let .float64(values): try parent.createDataset(leaf, shape: weight.shape, values: values)
                }
            }
        }
        try file.flush()
    }
}
