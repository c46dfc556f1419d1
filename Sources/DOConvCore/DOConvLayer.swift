/// How a framework stores D and W and composes them into a kernel.
public enum DOConvLayout: String, Sendable {
    /// PyTorch `DOConv2d`: D (Cin, MN, Dmul), W (Cout, Cin/g, Dmul);
    /// kernel = reshape(einsum('ims,ois->oim', D, reshape(W, (Cout/g, Cin, Dmul))), (Cout, Cin/g, M, N)).
    case pytorch
    /// Keras `DOConv2D`: D (MN, Dmul, Cin), W (Dmul, Cin/g, Cout);
    /// kernel = reshape(einsum('msi,sio->mio', D, reshape(W, (Dmul, Cin, Cout/g))), (M, N, Cin/g, Cout)),
    /// which ONNX exports then transpose to OIHW.
    case keras
}

/// The three DO-Conv variants of the paper, told apart by the conv's group count.
public enum DOConvKind: String, Sendable, CaseIterable {
    case doConv = "DO-Conv"
    case doDConv = "DO-DConv"
    case doGConv = "DO-GConv"
}

/// Channel counts, kernel size, groups and depth multiplier of a DO-Conv layer.
public struct DOConvGeometry: Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var groups: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var depthMultiplier: Int

    public init(inChannels: Int, outChannels: Int, groups: Int, kernelHeight: Int, kernelWidth: Int, depthMultiplier: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.depthMultiplier = depthMultiplier
    }

    /// M * N.
    public var kernelArea: Int { kernelHeight * kernelWidth }
    /// Input channels seen by one output channel (Cin / g).
    public var inChannelsPerGroup: Int { inChannels / groups }
    /// Output channels of one group (Cout / g).
    public var outChannelsPerGroup: Int { outChannels / groups }

    public var kind: DOConvKind {
        if groups == 1 { return .doConv }
        if groups == inChannels { return .doDConv }
        return .doGConv
    }

    /// Elements of D (the frameworks create none when MN = 1).
    public var dCount: Int { inChannels * kernelArea * depthMultiplier }
    /// Elements of W.
    public var wCount: Int { outChannels * inChannelsPerGroup * depthMultiplier }
    /// Elements of the folded kernel (Cout, Cin/g, M, N).
    public var kernelCount: Int { outChannels * inChannelsPerGroup * kernelArea }
    /// Trainable parameters before folding (D and W; a 1x1 layer has only W).
    public var trainedParameterCount: Int { (kernelArea == 1 ? 0 : dCount) + wCount }
}

/// A DO-Conv layer as a graph computes it: the geometry and the two trained tensors.
///
/// `d` already includes the identity offset (D + I), exactly as the framework adds it;
/// it is nil when M * N = 1, where the kernel is only a reshape of W. Both may borrow the
/// bytes the model was read into (see `FloatValues`), so a layer costs no copy of W.
public struct DOConvLayer: Sendable {
    public let layout: DOConvLayout
    public let geometry: DOConvGeometry
    public let d: FloatValues?
    public let w: FloatValues

    /// How much larger than D and W together a folded kernel may be (real layers, Dmul >= MN,
    /// give a kernel no larger than W).
    public static let maxKernelGrowth = 64

    /// Creates a layer from arrays, checking that the tensors and the geometry agree.
    public init(layout: DOConvLayout, geometry: DOConvGeometry, d: [Float]?, w: [Float]) throws(TensorError) {
        try self.init(layout: layout, geometry: geometry, d: d.map(FloatValues.init), w: FloatValues(w))
    }

    /// Creates a layer, checking that the tensors and the geometry agree.
    public init(layout: DOConvLayout, geometry g: DOConvGeometry, d: FloatValues?, w: FloatValues) throws(TensorError) {
        guard g.inChannels > 0, g.outChannels > 0, g.groups > 0, g.kernelHeight > 0, g.kernelWidth > 0, g.depthMultiplier > 0 else {
            throw .inconsistentLayer("non-positive dimension in \(g)")
        }
        guard g.inChannels % g.groups == 0, g.outChannels % g.groups == 0 else {
            throw .inconsistentLayer("\(g.groups) groups do not divide \(g.inChannels) input and \(g.outChannels) output channels")
        }
        guard [g.inChannels, g.outChannels, g.groups, g.kernelHeight, g.kernelWidth, g.depthMultiplier].allSatisfy({ $0 <= Int(Int32.max) }),
              Tensor.elementCount(of: [g.outChannels, g.inChannels, g.kernelArea, g.depthMultiplier]) != nil else {
            throw .inconsistentLayer("layer dimensions overflow")
        }
        guard w.count == g.wCount else {
            throw .inconsistentLayer("W has \(w.count) elements, expected \(g.wCount)")
        }
        // The frameworks create no D for 1x1 layers (the kernel is a reshape of W); a graph
        // that does compose one is folded all the same.
        if let d {
            guard d.count == g.dCount else { throw .inconsistentLayer("D has \(d.count) elements, expected \(g.dCount)") }
        } else {
            guard g.kernelArea == 1, g.depthMultiplier == 1 else {
                throw .inconsistentLayer("a \(g.kernelHeight)x\(g.kernelWidth) layer needs D")
            }
        }
        // Allocation is sized by the kernel, so it must stay in proportion to the data read.
        guard g.kernelCount <= DOConvLayer.maxKernelGrowth * (w.count + (d?.count ?? 0)) + (1 << 16) else {
            throw .inconsistentLayer("a \(g.kernelHeight)x\(g.kernelWidth) kernel from Dmul \(g.depthMultiplier) would be over \(DOConvLayer.maxKernelGrowth) times larger than D and W")
        }
        self.layout = layout
        self.geometry = g
        self.d = d
        self.w = w
    }

    /// The D row (index into D's channel axis) that the framework's reshapes pair with
    /// output channel `o` and group-local input channel `c`.
    ///
    /// For g > 1 this is not always the conv's real input channel: the frameworks reshape W
    /// by reinterpreting memory, and folding must reproduce that, not "fix" it.
    public func dChannel(output o: Int, localInput c: Int) -> Int {
        let g = geometry
        switch layout {
        case .pytorch:
            return (o * g.inChannelsPerGroup + c) % g.inChannels
        case .keras:
            return (c * g.outChannels + o) / g.outChannelsPerGroup
        }
    }
}
