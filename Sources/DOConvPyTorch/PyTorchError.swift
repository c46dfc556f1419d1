import DOConvCore
import DOConvFileIO

/// Why a PyTorch checkpoint could not be read, folded or written: one line naming the file.
public enum PyTorchError: CarriesFileErrors, CarriesLayerErrors, Equatable, Sendable, CustomStringConvertible {
    public static func == (a: PyTorchError, b: PyTorchError) -> Bool { a.description == b.description }

    case file(FileIOError)
    /// The zip container, legacy stream or safetensors header is damaged, or the file is
    /// not a checkpoint.
    case corrupt(path: String, reason: String)
    /// The pickle cannot be read safely (bad opcode, memo, depth, disallowed global ...).
    case pickle(path: String, reason: String)
    /// A global outside the weights-only allowlist: the file pickles Python objects.
    case disallowedGlobal(path: String, global: String)
    /// A tensor's view does not fit its storage, or a storage is missing.
    case tensor(path: String, key: String, reason: String)
    case layer(InconsistentLayer)
    /// M x N is not a perfect square and no --kernel-size was given, for these layers.
    case ambiguousKernelSize(path: String, layers: [(name: String, area: Int)])
    /// A TorchScript archive: code, not a state dict.
    case torchScript(path: String)
    /// A DO-Conv layer inside a pickled object (a whole `nn.Module`), whose own code reads W and D.
    case layerInsideObject(path: String, className: String, layer: String, advice: String)
    /// Folding would write a key the dict already holds.
    case keyCollision(path: String, layer: String, newKey: String, wKey: String)
    /// A sharded checkpoint's index and shards disagree, or cannot be read.
    case shards(path: String, reason: String)
    /// What `doconv-expand` cannot do with a checkpoint.
    case expansion(path: String, reason: String)

    public var description: String {
        switch self {
        case let .file(error): return error.description
        case let .corrupt(path, reason): return "\(path): corrupt checkpoint: \(reason)"
        case let .pickle(path, reason): return "\(path): cannot read the checkpoint's pickle: \(reason)"
        case let .disallowedGlobal(path, global):
            return "\(path): the checkpoint pickles Python objects (global '\(global)', refused by --strict-pickle as by torch.load(weights_only=True)); without --strict-pickle doconv carries them through unexecuted"
        case let .tensor(path, key, reason): return "\(path): tensor '\(key)': \(reason)"
        case let .layer(error): return error.description
        case let .ambiguousKernelSize(path, layers):
            let names = layers.map { "'\($0.name)' (M x N = \($0.area))" }.joined(separator: ", ")
            let flags = layers.map { "--kernel-size \($0.name)=MxN" }.joined(separator: " ")
            return "\(path): kernel size unknown for \(layers.count == 1 ? "layer" : "layers") \(names): M x N is not a square; pass \(flags)"
        case let .torchScript(path):
            return "\(path): a TorchScript archive (torch.jit.save) holds code, not a state dict: fold torch.save(model.state_dict()) or an ONNX export (torch.onnx.export) instead"
        case let .layerInsideObject(path, className, layer, advice):
            return "\(path): DO-Conv layer '\(layer)' sits inside a pickled \(className) object (a whole nn.Module, whose own forward reads W and D): folding it would break that class; \(advice)"
        case let .keyCollision(path, layer, newKey, wKey):
            return "\(path): layer '\(layer)': its folded kernel would be written as '\(newKey)', which the checkpoint already holds beside '\(wKey)'; pass --exclude \(layer) to leave the layer as it is, or --keep-names to keep the key '\(wKey)'"
        case let .shards(path, reason): return "\(path): sharded checkpoint: \(reason)"
        case let .expansion(path, reason): return "\(path): \(reason)"
        }
    }
}
