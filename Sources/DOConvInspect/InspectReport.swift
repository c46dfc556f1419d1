import DOConvCore

/// Everything `doconv-inspect` reports about a model: one entry per DO-Conv layer in graph
/// order, the look-alikes that were not folded, and totals. Built from a `Detection`; no I/O.
///
/// Its JSON form is described by `schemas/inspect-report.schema.json`.
public struct InspectReport: Codable, Equatable, Sendable {
    /// Version of the JSON document's layout (bumped on incompatible changes).
    public static let formatVersion = 1

    public var formatVersion: Int
    /// The model file, as given.
    public var model: String
    /// The format's machine name: "onnx", "keras-h5", "keras-archive", "pytorch" or "safetensors".
    public var format: String
    public var layers: [Layer]
    public var rejected: [Rejected]
    public var totals: Totals
    /// `--reparam`: the blocks of linear branches that merge into one Conv each, and the
    /// look-alikes that do not; absent without it.
    public var reparam: Reparam?

    public struct Reparam: Codable, Equatable, Sendable {
        public var blocks: [Block]
        public var refused: [Rejected]

        public struct Block: Codable, Equatable, Sendable {
            /// The block's Add (or a chain's last stage).
            public var name: String
            /// Each branch's stages: "Conv 3x3 -> BatchNormalization", "identity".
            public var branches: [String]
            /// The merged Conv's [kh, kw] and groups.
            public var kernel: [Int]
            public var groups: Int
            public var nodesReplaced: Int
            /// Probe error of the merged conv against the block's own stages.
            public var relativeError: Double?

            enum CodingKeys: String, CodingKey {
                case name, branches, kernel, groups
                case nodesReplaced = "nodes_replaced"
                case relativeError = "relative_error"
            }

            public func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(name, forKey: .name)
                try c.encode(branches, forKey: .branches)
                try c.encode(kernel, forKey: .kernel)
                try c.encode(groups, forKey: .groups)
                try c.encode(nodesReplaced, forKey: .nodesReplaced)
                try c.encode(relativeError.flatMap { $0.isFinite ? $0 : nil }, forKey: .relativeError)
            }
        }
    }

    public struct Layer: Codable, Equatable, Sendable {
        public var name: String
        /// "DO-Conv", "DO-DConv" or "DO-GConv".
        public var kind: String
        /// "kernel composition" or "feature composition".
        public var form: String
        /// "pytorch" or "keras": how D and W are laid out.
        public var layout: String
        /// float32, float16, bfloat16 or float64.
        public var elementType: String
        public var inChannels: Int
        public var outChannels: Int
        /// [M, N].
        public var kernel: [Int]
        public var stride: [Int]
        public var dilation: [Int]
        public var groups: Int
        public var dMul: Int
        /// False for a 1x1 layer without D (its kernel is a reshape of W).
        public var hasD: Bool
        /// D (when the model stores one) plus W.
        public var paramsTrained: Int
        /// The folded kernel: Cout * Cin/g * M * N.
        public var paramsFolded: Int
        /// (params_trained - params_folded) * element size.
        public var bytesSaved: Int
        /// Cout * Cin/g * M * N: the folded conv's MACs for one output position.
        public var macsPerOutputPosition: Int
        /// The same as the model computes the layer now: equal for kernel composition; a depthwise
        /// and a 1x1 conv (Cin*Dmul*M*N + Cout*Cin/g*Dmul) for feature composition.
        public var macsPerOutputPositionUnfolded: Int
        /// ||D - I||_F / ||I||_F; null when undefined (no identity offset, or non-finite D).
        public var dDeviation: Double?
        /// H[m][n] = sum over channels of |W' - W|: M rows of N values.
        public var hMap: [[Double]]
        /// Where the layer sits when not in the main graph (an ONNX local function's call,
        /// or a control-flow subgraph); absent for the main graph.
        public var location: String?

        public init(name: String, kind: String, form: String, layout: String, elementType: String, inChannels: Int, outChannels: Int,
                    kernel: [Int], stride: [Int], dilation: [Int], groups: Int, dMul: Int, hasD: Bool, paramsTrained: Int, paramsFolded: Int,
                    bytesSaved: Int, macsPerOutputPosition: Int, macsPerOutputPositionUnfolded: Int, dDeviation: Double?, hMap: [[Double]]) {
            self.name = name
            self.kind = kind
            self.form = form
            self.layout = layout
            self.elementType = elementType
            self.inChannels = inChannels
            self.outChannels = outChannels
            self.kernel = kernel
            self.stride = stride
            self.dilation = dilation
            self.groups = groups
            self.dMul = dMul
            self.hasD = hasD
            self.paramsTrained = paramsTrained
            self.paramsFolded = paramsFolded
            self.bytesSaved = bytesSaved
            self.macsPerOutputPosition = macsPerOutputPosition
            self.macsPerOutputPositionUnfolded = macsPerOutputPositionUnfolded
            self.dDeviation = dDeviation
            self.hMap = hMap
        }

        /// The largest value of the H map.
        public var hMax: Double { hRange.max }
        /// The smallest and largest finite values of the H map.
        public var hRange: (min: Double, max: Double) {
            let finite = hMap.joined().filter(\.isFinite)
            return (finite.min() ?? 0, finite.max() ?? 0)
        }

        enum CodingKeys: String, CodingKey {
            case name, kind, form, layout, stride, dilation, groups, kernel, location
            case elementType = "element_type"
            case inChannels = "in_channels"
            case outChannels = "out_channels"
            case dMul = "d_mul"
            case hasD = "has_d"
            case paramsTrained = "params_trained"
            case paramsFolded = "params_folded"
            case bytesSaved = "bytes_saved"
            case macsPerOutputPosition = "macs_per_output_position"
            case macsPerOutputPositionUnfolded = "macs_per_output_position_unfolded"
            case dDeviation = "d_deviation"
            case hMap = "h_map"
        }

        /// Writes `d_deviation` as null rather than leaving it out.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encodeIfPresent(location, forKey: .location)
            try c.encode(kind, forKey: .kind)
            try c.encode(form, forKey: .form)
            try c.encode(layout, forKey: .layout)
            try c.encode(elementType, forKey: .elementType)
            try c.encode(inChannels, forKey: .inChannels)
            try c.encode(outChannels, forKey: .outChannels)
            try c.encode(kernel, forKey: .kernel)
            try c.encode(stride, forKey: .stride)
            try c.encode(dilation, forKey: .dilation)
            try c.encode(groups, forKey: .groups)
            try c.encode(dMul, forKey: .dMul)
            try c.encode(hasD, forKey: .hasD)
            try c.encode(paramsTrained, forKey: .paramsTrained)
            try c.encode(paramsFolded, forKey: .paramsFolded)
            try c.encode(bytesSaved, forKey: .bytesSaved)
            try c.encode(macsPerOutputPosition, forKey: .macsPerOutputPosition)
            try c.encode(macsPerOutputPositionUnfolded, forKey: .macsPerOutputPositionUnfolded)
            if let dDeviation { try c.encode(dDeviation, forKey: .dDeviation) } else { try c.encodeNil(forKey: .dDeviation) }
            // JSON has no NaN or infinity: such cells (from non-finite D or W) are null.
            try c.encode(hMap.map { row in row.map { $0.isFinite ? $0 : nil } }, forKey: .hMap)
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            location = try c.decodeIfPresent(String.self, forKey: .location)
            kind = try c.decode(String.self, forKey: .kind)
            form = try c.decode(String.self, forKey: .form)
            layout = try c.decode(String.self, forKey: .layout)
            elementType = try c.decode(String.self, forKey: .elementType)
            inChannels = try c.decode(Int.self, forKey: .inChannels)
            outChannels = try c.decode(Int.self, forKey: .outChannels)
            kernel = try c.decode([Int].self, forKey: .kernel)
            stride = try c.decode([Int].self, forKey: .stride)
            dilation = try c.decode([Int].self, forKey: .dilation)
            groups = try c.decode(Int.self, forKey: .groups)
            dMul = try c.decode(Int.self, forKey: .dMul)
            hasD = try c.decode(Bool.self, forKey: .hasD)
            paramsTrained = try c.decode(Int.self, forKey: .paramsTrained)
            paramsFolded = try c.decode(Int.self, forKey: .paramsFolded)
            bytesSaved = try c.decode(Int.self, forKey: .bytesSaved)
            macsPerOutputPosition = try c.decode(Int.self, forKey: .macsPerOutputPosition)
            macsPerOutputPositionUnfolded = try c.decode(Int.self, forKey: .macsPerOutputPositionUnfolded)
            dDeviation = try c.decodeIfPresent(Double.self, forKey: .dDeviation)
            hMap = try c.decode([[Double?]].self, forKey: .hMap).map { row in row.map { $0 ?? .nan } }
        }
    }

    public struct Rejected: Codable, Equatable, Sendable {
        public var name: String
        public var reason: String
        /// A real DO-Conv layer where doconv does not fold (an ONNX local function or a
        /// control-flow subgraph), not a look-alike.
        public var unreached: Bool

        public init(name: String, reason: String, unreached: Bool = false) {
            self.name = name
            self.reason = reason
            self.unreached = unreached
        }

        enum CodingKeys: String, CodingKey { case name, reason, unreached }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            reason = try c.decode(String.self, forKey: .reason)
            unreached = try c.decodeIfPresent(Bool.self, forKey: .unreached) ?? false
        }

        /// `unreached` only when true: look-alikes keep their two fields.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(reason, forKey: .reason)
            if unreached { try c.encode(true, forKey: .unreached) }
        }
    }

    public struct Totals: Codable, Equatable, Sendable {
        public var layers: Int
        /// Layer count for each of "DO-Conv", "DO-DConv", "DO-GConv" (zeros included).
        public var layersByKind: [String: Int]
        public var paramsTrained: Int
        public var paramsFolded: Int
        /// params_trained - params_folded.
        public var paramsSaved: Int
        /// Sum of the layers' bytes_saved.
        public var bytesSaved: Int
        /// Sum of the layers' macs_per_output_position (after folding).
        public var macsPerOutputPosition: Int
        /// Sum of the layers' macs_per_output_position_unfolded (as the model computes them now).
        public var macsPerOutputPositionUnfolded: Int
        /// True when folding leaves the MACs as they are (kernel composition only: the model
        /// already runs the folded conv's size; feature-composition pairs change them).
        public var macsUnchangedByFolding: Bool

        enum CodingKeys: String, CodingKey {
            case layers
            case layersByKind = "layers_by_kind"
            case paramsTrained = "params_trained"
            case paramsFolded = "params_folded"
            case paramsSaved = "params_saved"
            case bytesSaved = "bytes_saved"
            case macsPerOutputPosition = "macs_per_output_position"
            case macsPerOutputPositionUnfolded = "macs_per_output_position_unfolded"
            case macsUnchangedByFolding = "macs_unchanged_by_folding"
        }
    }

    enum CodingKeys: String, CodingKey {
        case model, format, layers, rejected, totals, reparam
        case formatVersion = "format_version"
    }

    public init(model: String, format: String, layers: [Layer], rejected: [Rejected]) {
        self.formatVersion = Self.formatVersion
        self.model = model
        self.format = format
        self.layers = layers
        self.rejected = rejected
        self.totals = Self.totals(of: layers)
    }

    /// Analyses every detected layer (in the detection's order, which is graph order).
    public init(model: String, format: String, detection: Detection) {
        self.init(model: model, format: format, layers: detection.layers.map(Self.layer), rejected: detection.rejected.map {
            Rejected(name: $0.name, reason: $0.reason, unreached: $0.isDOConvLayer)
        })
        reparam = detection.reparameterization.map { found in
            Reparam(blocks: found.blocks.map {
                Reparam.Block(name: $0.name, branches: $0.branches, kernel: $0.kernelSize, groups: $0.groups, nodesReplaced: $0.nodesReplaced,
                              relativeError: $0.relativeError)
            }, refused: found.refused.map { Rejected(name: $0.name, reason: $0.reason) })
        }
    }

    /// One layer's row.
    public static func layer(_ detected: DetectedLayer) -> Layer {
        let layer = detected.layer
        let g = layer.geometry
        let trained = LayerAnalysis.trainedParameters(layer)
        var row = Layer(
            name: detected.name, kind: g.kind.rawValue, form: detected.form.rawValue, layout: layer.layout.rawValue,
            elementType: detected.elementType.rawValue, inChannels: g.inChannels, outChannels: g.outChannels,
            kernel: [g.kernelHeight, g.kernelWidth], stride: detected.stride, dilation: detected.dilation, groups: g.groups,
            dMul: g.depthMultiplier, hasD: layer.d != nil, paramsTrained: trained, paramsFolded: g.kernelCount,
            bytesSaved: (trained - g.kernelCount) * detected.elementType.byteWidth,
            macsPerOutputPosition: LayerAnalysis.macsPerOutputPosition(g),
            macsPerOutputPositionUnfolded: LayerAnalysis.macsPerOutputPositionUnfolded(layer, form: detected.form),
            dDeviation: LayerAnalysis.dDeviation(layer), hMap: LayerAnalysis.heatMap(layer))
        row.location = detected.location
        return row
    }

    static func totals(of layers: [Layer]) -> Totals {
        var byKind: [String: Int] = [:]
        for kind in DOConvKind.allCases { byKind[kind.rawValue] = 0 }
        for layer in layers { byKind[layer.kind, default: 0] += 1 }
        let trained = layers.reduce(0) { $0 + $1.paramsTrained }
        let folded = layers.reduce(0) { $0 + $1.paramsFolded }
        return Totals(
            layers: layers.count, layersByKind: byKind, paramsTrained: trained, paramsFolded: folded, paramsSaved: trained - folded,
            bytesSaved: layers.reduce(0) { $0 + $1.bytesSaved },
            macsPerOutputPosition: layers.reduce(0) { $0 + $1.macsPerOutputPosition },
            macsPerOutputPositionUnfolded: layers.reduce(0) { $0 + $1.macsPerOutputPositionUnfolded },
            macsUnchangedByFolding: layers.allSatisfy { $0.macsPerOutputPosition == $0.macsPerOutputPositionUnfolded })
    }
}
