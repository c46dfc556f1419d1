/// The three tools, as the format options name the ones that read them.
public enum Tool: String, CaseIterable, Sendable {
    case fold = "doconv-fold"
    case inspect = "doconv-inspect"
    case verify = "verify-equivalence"
}

extension FormatOption {
    /// The tools that read the option; the others hide it and refuse it.
    public var tools: Set<Tool> {
        switch self {
        case .fuseBatchNorm, .foldSeparable, .keepNames, .allowPartial, .keepGrouped: return [.fold]
        case .reparameterize: return [.fold, .inspect]
        case .config, .kernelSize, .params, .strictPickle: return Set(Tool.allCases)
        }
    }

    /// The option's name without its dashes ("kernel-size").
    public var longName: String { String(rawValue.dropFirst(2)) }

    /// The name of its value in help ("file", "layer=MxN"); nil for a flag.
    public var valueName: String? {
        switch self {
        case .config, .params: return "file"
        case .kernelSize: return "layer=MxN"
        case .fuseBatchNorm, .foldSeparable, .reparameterize, .keepNames, .strictPickle, .allowPartial, .keepGrouped: return nil
        }
    }

    /// What the option does for `tool`.
    public func purpose(for tool: Tool) -> String {
        switch self {
        case .config: return "the model's JSON (model.to_json()), for files that carry no config."
        case .kernelSize:
            return "a layer's kernel size when nothing else gives it (repeatable)" + (tool == .verify ? ", as given to doconv-fold." : ".")
        case .fuseBatchNorm: return "also fold each inference-mode BatchNormalization into the conv before it."
        case .foldSeparable: return "also fold depthwise + 1x1 pairs and SeparableConv2D with Dmul < M*N (raises their MACs)."
        case .reparameterize:
            return tool == .inspect
                ? "also list the blocks doconv-fold --reparam would merge into one Conv each, and the look-alikes it would leave."
                : "also merge linear over-parameterizations (RepVGG, ACNet, MobileOne, DBB branches summed; ExpandNets chains; Conv + BatchNormalization) into single Convs."
        case .keepNames: return "keep the key P.W for the folded kernel instead of nn.Conv2d's P.weight."
        case .params:
            return tool == .verify
                ? "ORIGINAL's params file, when several NAME-NNNN.params sit beside NAME-symbol.json (FOLDED's of the same epoch is used)."
                : "the export's params file, when several NAME-NNNN.params sit beside NAME-symbol.json."
        case .strictPickle:
            return "refuse checkpoints that pickle Python objects (as torch.load(weights_only=True) does) instead of carrying them through unexecuted."
        case .keepGrouped:
            return "write a folded DO-DConv (groups = Cin) as Conv2D(groups=Cin) instead of DepthwiseConv2D (which tf2onnx exports; grouped Conv2D it does not)."
        case .allowPartial:
            return "without a config, fold what can be told and leave a layer that may be a 1x1 DOConv2D or a Conv1D unfolded (the result then fits neither model until that layer is dealt with)."
        }
    }
}
