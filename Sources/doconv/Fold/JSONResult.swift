import CommandLineSupport
import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// What `doconv-fold --json` prints: one document with a result per input, as described by
/// `schemas/fold-result.schema.json`. A `-o DIR` run's children each print a document
/// with their one result, which the parent decodes and gathers into its own.
struct FoldDocument: Codable {
    /// Version of the document's layout (bumped on incompatible changes).
    static let currentFormatVersion = 1

    var formatVersion = FoldDocument.currentFormatVersion
    var tool = "doconv-fold"
    var version = DOConvVersion.string
    var results: [FoldResult]

    init(results: [FoldResult]) {
        self.results = results
    }

    func rendered() throws -> String { try JSONDocument.render(self) }

    /// A document as `rendered()` writes it (a child's standard output).
    static func decode(_ data: Data) throws -> FoldDocument {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try decoder.decode(FoldDocument.self, from: data)
    }
}

/// One input's outcome. Status "error" carries no fold data (null counts, empty lists);
/// "verification_failed" carries all of it, though nothing was written.
struct FoldResult: Codable {
    enum Status: String, Codable {
        case folded
        /// No DO-Conv layer (nor BatchNormalization or block) folded: written unchanged.
        case unchanged
        case verificationFailed = "verification_failed"
        case error
    }

    var input: String
    var output: String
    /// The format registry's name ("onnx", "keras-h5", ...); null when the file's format
    /// could not be told.
    @Nullable var format: String?
    var status: Status
    var exitStatus: Int32
    /// The error line's message (after "doconv-fold: error: ").
    @Nullable var error: String?
    @Nullable var layersFolded: LayerCounts? = nil
    var layers: [Layer] = []
    var batchNormsFused: [Check] = []
    var reparameterized: [Block] = []
    @Nullable var parameters: BeforeAfter? = nil
    @Nullable var bytes: BeforeAfter? = nil
    /// Over layers, fused BatchNormalizations and merged blocks; null when nothing was verified.
    @Nullable var worstRelativeError: Double? = nil
    /// Verification ran and everything folded passed it (also when nothing was folded).
    var verified = false
    var notFolded: [NotFolded] = []
    var notes: [String] = []
    var timeMs = 0.0

    /// A result that carries no fold data: the input was refused, failed to fold or write,
    /// or its worker died.
    static func failure(input: String, output: String, format: String?, message: String, exitStatus: Int32 = 2,
                        elapsed: Duration = .zero) -> FoldResult {
        FoldResult(input: input, output: output, format: format, status: .error, exitStatus: exitStatus, error: message,
                   timeMs: milliseconds(elapsed))
    }

    /// A child's outcome when it printed its own summary (no --json): only the exit status
    /// counts, and the status is told from it.
    static func printedByChild(input: String, output: String, format: String, exitStatus: Int32) -> FoldResult {
        let status: Status = switch exitStatus { case 0: .folded; case 1: .verificationFailed; default: .error }
        return FoldResult(input: input, output: output, format: format, status: status, exitStatus: exitStatus, error: nil, timeMs: 0)
    }

    /// A fold's result. `verify` tells whether the layers were probed.
    init(input: String, output: String, format: String, status: Status, exitStatus: Int32, error: String?,
         summary s: FoldSummary, verify: Bool, elapsed: Duration) {
        self.init(input: input, output: output, format: format, status: status, exitStatus: exitStatus, error: error,
                  timeMs: Self.milliseconds(elapsed))
        layersFolded = LayerCounts(s.layers)
        layers = s.layers.map(Layer.init)
        batchNormsFused = s.fusedBatchNorms.map { Check(name: $0.name, relativeError: $0.relativeError, tolerance: $0.tolerance, verified: $0.verified) }
        reparameterized = s.reparameterized.map(Block.init)
        parameters = BeforeAfter(before: s.parametersBefore, after: s.parametersAfter)
        bytes = BeforeAfter(before: s.bytesBefore, after: s.bytesAfter)
        let errors = s.layers.compactMap(\.relativeError) + s.fusedBatchNorms.compactMap(\.relativeError)
            + s.reparameterized.compactMap(\.relativeError)
        worstRelativeError = verify ? Self.worst(errors) : nil
        verified = verify && status != .verificationFailed
        notFolded = s.rejected.map { NotFolded(name: $0.name, reason: $0.reason, isDOConvLayer: $0.isDOConvLayer) }
        notes = s.notes
    }

    private init(input: String, output: String, format: String?, status: Status, exitStatus: Int32, error: String?, timeMs: Double) {
        self.input = input
        self.output = output
        self.format = format
        self.status = status
        self.exitStatus = exitStatus
        self.error = error
        self.timeMs = timeMs
    }

    /// The largest of `errors`, NaN when any is (max() skips NaN in comparisons, and a NaN
    /// error must show); nil for none.
    static func worst(_ errors: [Double]) -> Double? {
        errors.contains(where: \.isNaN) ? .nan : errors.max()
    }

    static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }

    /// Folded layers, counted.
    struct LayerCounts: Codable {
        var total: Int
        /// Every kind's rawValue ("DO-Conv", "DO-DConv", "DO-GConv"), zeros included.
        var byKind: [String: Int]
        /// Depthwise + 1x1 pairs (feature composition) among them.
        var fromDepthwisePairs: Int

        init(_ layers: [FoldedLayer]) {
            total = layers.count
            byKind = Dictionary(uniqueKeysWithValues: DOConvKind.allCases.map { kind in (kind.rawValue, layers.filter { $0.kind == kind }.count) })
            fromDepthwisePairs = layers.filter { $0.form == .featureComposition }.count
        }
    }

    /// One folded DO-Conv layer.
    struct Layer: Codable {
        var name: String
        var kind: String
        var form: String
        var layout: String
        var elementType: String
        var inChannels: Int
        var outChannels: Int
        /// [M, N].
        var kernel: [Int]
        var groups: Int
        var dMul: Int
        var stride: [Int]
        var dilation: [Int]
        /// Null when verification was skipped.
        @Nullable var relativeError: Double?
        var tolerance: Double
        var verified: Bool

        init(_ layer: FoldedLayer) {
            let g = layer.geometry
            name = layer.name
            kind = layer.kind.rawValue
            form = layer.form.rawValue
            layout = layer.layout.rawValue
            elementType = layer.elementType.rawValue
            inChannels = g.inChannels
            outChannels = g.outChannels
            kernel = [g.kernelHeight, g.kernelWidth]
            groups = g.groups
            dMul = g.depthMultiplier
            stride = layer.stride
            dilation = layer.dilation
            relativeError = layer.relativeError
            tolerance = layer.tolerance
            verified = layer.verified
        }
    }

    /// A fused BatchNormalization's probe.
    struct Check: Codable {
        var name: String
        @Nullable var relativeError: Double?
        var tolerance: Double
        var verified: Bool
    }

    /// A block of linear branches merged into one Conv (`--reparam`).
    struct Block: Codable {
        var name: String
        var branches: [String]
        var kernel: [Int]
        var groups: Int
        var nodesReplaced: Int
        @Nullable var relativeError: Double?
        var tolerance: Double
        var verified: Bool

        init(_ block: ReparameterizedBlock) {
            name = block.name
            branches = block.branches
            kernel = block.kernelSize
            groups = block.groups
            nodesReplaced = block.nodesReplaced
            relativeError = block.relativeError
            tolerance = block.tolerance
            verified = block.verified
        }
    }

    struct BeforeAfter: Codable {
        var before: Int
        var after: Int
    }

    /// A look-alike left alone, or a DO-Conv layer where doconv does not fold.
    struct NotFolded: Codable {
        var name: String
        var reason: String
        var isDOConvLayer: Bool

        enum CodingKeys: String, CodingKey {
            case name, reason
            case isDOConvLayer = "isDoconvLayer" // "is_doconv_layer" in the document, not is_do_conv_layer
        }
    }
}

/// How the tools write their JSON documents: keys sorted, two-space indentation, like
/// `doconv-inspect --json`. Infinite and NaN errors (weights holding NaN) become the
/// strings "inf", "-inf" and "nan".
enum JSONDocument {
    static func render<Document: Encodable>(_ document: Document) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(document), as: UTF8.self) + "\n"
    }
}

/// An optional written as `null` rather than left out (synthesized Codable drops nil keys),
/// so every key the schema requires is always there.
@propertyWrapper
struct Nullable<Value: Codable>: Codable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : try c.decode(Value.self)
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}
