import DOConvCore
import DOConvONNX

/// ONNX models (`.onnx`, with external data beside them).
public struct ONNXFormat: ModelFormat {
    public init() {}
    public var name: String { "onnx" }
    public var displayName: String { "ONNX" }
    public var options: Set<FormatOption> { [.fuseBatchNorm, .foldSeparable, .reparameterize] }
    public var runsInChildProcess: Bool { false }

    /// A protobuf message has no signature: ONNX takes every file that is not a zip and
    /// that no format before it recognized, and its loader says when it is not ONNX.
    public func recognizes(_ file: ModelFileSignature) -> Bool { file.zipEntries == nil && !file.isFolder }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        var detection = try ONNXFolder.detect(try ONNXModel.load(path: path), options: options.fold)
        if options.reparameterize {
            // Found by running the merge on a copy nobody saves: a merged chain can complete a sum.
            detection.reparameterization = try ONNXFolder.reparameterizationReport(try ONNXModel.load(path: path), options: options.fold)
        }
        return detection
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let model = try ONNXModel.load(path: path)
        let summary = try ONNXFolder.fold(model, options: options.fold, fuseBatchNorm: options.fuseBatchNorm, reparameterize: options.reparameterize)
        return FoldedModel(summary: summary) { try model.save(to: $0) }
    }

}
