/// Options of a fold, whatever the model format.
public struct FoldOptions: Sendable {
    /// Probe every folded layer against its DO-Conv form before accepting it.
    public var verify = true
    /// Largest accepted relative error; nil uses each element type's default.
    public var tolerance: Double?
    /// Random input patches per layer.
    public var probePatches = 2
    /// Seed of the probe inputs.
    public var seed: UInt64 = 0x5EED
    /// Also fold depthwise + 1x1 pairs with Dmul < M*N (ordinary separable convs), which
    /// raises their MACs.
    public var foldSeparable = false
    /// Which layers to fold (`--only`, `--exclude`); the others are reported as left.
    public var selection = LayerSelection()

    public init(verify: Bool = true, tolerance: Double? = nil) {
        self.verify = verify
        self.tolerance = tolerance
    }
}

/// What happened to one folded layer.
public struct FoldedLayer: Sendable {
    public var name: String
    public var layout: DOConvLayout
    public var geometry: DOConvGeometry
    public var elementType: ElementType
    public var stride: [Int]
    public var dilation: [Int]
    /// Worst relative error of the probes (nil when verification was skipped).
    public var relativeError: Double?
    public var tolerance: Double
    public var form: DOConvForm = .kernelComposition

    public init(name: String, layout: DOConvLayout, geometry: DOConvGeometry, elementType: ElementType,
                stride: [Int], dilation: [Int], relativeError: Double? = nil, tolerance: Double) {
        self.name = name
        self.layout = layout
        self.geometry = geometry
        self.elementType = elementType
        self.stride = stride
        self.dilation = dilation
        self.relativeError = relativeError
        self.tolerance = tolerance
    }

    public var kind: DOConvKind { geometry.kind }
    /// False when the probes disagreed beyond the tolerance.
    public var verified: Bool {
        guard let relativeError else { return true }
        return relativeError <= tolerance
    }
}

/// The outcome of folding a model.
public struct FoldSummary: Sendable {
    public var layers: [FoldedLayer] = []
    public var rejected: [RejectedCandidate] = []
    public var parametersBefore = 0
    public var parametersAfter = 0
    public var bytesBefore = 0
    public var bytesAfter = 0
    /// Other things the user should know (state that was dropped, for example).
    public var notes: [String] = []
    /// BatchNormalization layers folded into the Conv before them.
    public var fusedBatchNorms: [FusedBatchNorm] = []
    /// Blocks of linear branches merged into one Conv (`--reparam`).
    public var reparameterized: [ReparameterizedBlock] = []

    public init(rejected: [RejectedCandidate] = []) {
        self.rejected = rejected
    }

    /// Layers whose verification failed.
    public var failures: [FoldedLayer] { layers.filter { !$0.verified } }
    /// Fusions whose verification failed.
    public var batchNormFailures: [FusedBatchNorm] { fusedBatchNorms.filter { !$0.verified } }
    /// Merged blocks whose verification failed.
    public var reparamFailures: [ReparameterizedBlock] { reparameterized.filter { !$0.verified } }
    /// The worst probe error over all layers (nil when nothing was verified).
    public var worstRelativeError: Double? { layers.compactMap(\.relativeError).max() }
}

/// A layer that looked like DO-Conv but was left alone, with the reason.
public struct RejectedCandidate: Equatable, Sendable {
    /// The node (or layer) concerned.
    public var name: String
    public var reason: String
    /// True for a real DO-Conv layer that sits where doconv does not fold (inside an ONNX
    /// local function or control-flow subgraph), rather than a look-alike.
    public var isDOConvLayer: Bool

    public init(name: String, reason: String, isDOConvLayer: Bool = false) {
        self.name = name
        self.reason = reason
        self.isDOConvLayer = isDOConvLayer
    }
}

/// How a DO-Conv layer appears in a model.
public enum DOConvForm: String, Sendable {
    /// The graph composes the kernel from D and W (Einsum, or a weight file's D and W).
    case kernelComposition = "kernel composition"
    /// A depthwise conv into Dmul features per channel, then a 1x1 conv (paper Fig. 3a).
    case featureComposition = "feature composition"
}

/// A DO-Conv layer found in a model, with everything needed to fold or describe it.
public struct DetectedLayer: Sendable {
    public var name: String
    public var form: DOConvForm
    /// D (with the identity offset, as the layer composes it) and W.
    public var layer: DOConvLayer
    public var elementType: ElementType
    public var stride: [Int]
    public var dilation: [Int]
    /// Where the layer sits when not in the main graph: "function DOConv2d, call node
    /// /conv1/DOConv2d", or a subgraph path such as "If choose/then_branch".
    public var location: String?
    /// A float64 layer's operands read exactly, when the format has them: the fold then
    /// computes and probes in float64.
    public var float64: Float64Layer?

    public init(name: String, form: DOConvForm, layer: DOConvLayer, elementType: ElementType, stride: [Int], dilation: [Int]) {
        self.name = name
        self.form = form
        self.layer = layer
        self.elementType = elementType
        self.stride = stride
        self.dilation = dilation
    }
}

/// The DO-Conv layers of a model and the look-alikes that were left alone.
public struct Detection: Sendable {
    public var layers: [DetectedLayer] = []
    public var rejected: [RejectedCandidate] = []
    /// With `--reparam` (ONNX): the blocks that would merge into one Conv each, and the
    /// look-alikes that would not, with the reason; nil without it.
    public var reparameterization: (blocks: [ReparameterizedBlock], refused: [RejectedCandidate])?

    public init(layers: [DetectedLayer] = [], rejected: [RejectedCandidate] = []) {
        self.layers = layers
        self.rejected = rejected
    }
}

/// One BatchNormalization folded into its Conv.
public struct FusedBatchNorm: Sendable {
    public var name: String
    /// Worst relative error of the probe (nil when verification was skipped).
    public var relativeError: Double?
    public var tolerance: Double

    public init(name: String, relativeError: Double?, tolerance: Double) {
        self.name = name
        self.relativeError = relativeError
        self.tolerance = tolerance
    }

    public var verified: Bool {
        guard let relativeError else { return true }
        return relativeError <= tolerance
    }
}

/// One block of linear branches or stages merged into a single Conv (`--reparam`).
public struct ReparameterizedBlock: Sendable {
    public var name: String
    /// Each branch's stages, as the report lists them: ["Conv 3x3", "Conv 1x1", "BatchNormalization"].
    public var branches: [String]
    /// The merged conv: [kh, kw], groups, and the nodes the block had.
    public var kernelSize: [Int]
    public var groups: Int
    public var nodesReplaced: Int
    /// Worst relative error of the probe (nil when verification was skipped).
    public var relativeError: Double?
    public var tolerance: Double

    public init(name: String, branches: [String], kernelSize: [Int], groups: Int, nodesReplaced: Int, relativeError: Double?, tolerance: Double) {
        self.name = name
        self.branches = branches
        self.kernelSize = kernelSize
        self.groups = groups
        self.nodesReplaced = nodesReplaced
        self.relativeError = relativeError
        self.tolerance = tolerance
    }

    public var verified: Bool {
        guard let relativeError else { return true }
        return relativeError <= tolerance
    }
}
