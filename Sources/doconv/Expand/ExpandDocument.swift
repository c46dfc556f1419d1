import CommandLineSupport
import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// What `doconv expand --json` prints: one document for the one input, as described by
/// `schemas/expand-result.schema.json` (also when the input failed: status "error" or
/// "verification_failed", with the error line's message). The layer entries are those of
/// doconv-fold's document, since an expanded layer is a DO-Conv layer fold would fold.
struct ExpandDocument: Codable {
    enum Status: String, Codable {
        case expanded
        /// No conv expanded: the weights were written unchanged.
        case unchanged
        case verificationFailed = "verification_failed"
        case error
    }

    var formatVersion = FoldDocument.currentFormatVersion
    var tool = "doconv-expand"
    var version = DOConvVersion.string
    var input: String
    var output: String
    /// The format registry's name; null when the file's format could not be told.
    @Nullable var format: String?
    var status: Status
    var exitStatus: Int32
    /// The error line's message (after "doconv-expand: error: ").
    @Nullable var error: String?
    var layers: [FoldResult.Layer] = []
    @Nullable var parameters: FoldResult.BeforeAfter? = nil
    @Nullable var bytes: FoldResult.BeforeAfter? = nil
    /// Over the layers composed back; null when nothing was verified.
    @Nullable var worstRelativeError: Double? = nil
    /// Every layer was composed back and matched its plain kernel (also when none was expanded).
    var verified = false
    /// Convs left plain, with the reason.
    var notExpanded: [FoldResult.NotFolded] = []
    var notes: [String] = []
    var timeMs = 0.0

    /// An input that was refused or failed to expand or write: no expansion data.
    static func failure(input: String, output: String, format: String?, message: String, exitStatus: Int32 = 2,
                        elapsed: Duration = .zero) -> ExpandDocument {
        ExpandDocument(input: input, output: output, format: format, status: .error, exitStatus: exitStatus, error: message,
                       timeMs: FoldResult.milliseconds(elapsed))
    }

    /// An expansion's document; `error` is set when verification failed (nothing written).
    init(input: String, output: String, format: String, summary s: FoldSummary, verify: Bool, error: String?, elapsed: Duration) {
        let status: Status = error != nil ? .verificationFailed : s.layers.isEmpty ? .unchanged : .expanded
        self.init(input: input, output: output, format: format, status: status, exitStatus: error != nil ? 1 : 0, error: error,
                  timeMs: FoldResult.milliseconds(elapsed))
        layers = s.layers.map(FoldResult.Layer.init)
        parameters = FoldResult.BeforeAfter(before: s.parametersBefore, after: s.parametersAfter)
        bytes = FoldResult.BeforeAfter(before: s.bytesBefore, after: s.bytesAfter)
        worstRelativeError = verify ? FoldResult.worst(s.layers.compactMap(\.relativeError)) : nil
        verified = verify && error == nil
        notExpanded = s.rejected.map { FoldResult.NotFolded(name: $0.name, reason: $0.reason, isDOConvLayer: $0.isDOConvLayer) }
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

    /// As doconv-fold renders its document (sorted keys, "nan" and "inf" as strings).
    func rendered() throws -> String { try JSONDocument.render(self) }
}
