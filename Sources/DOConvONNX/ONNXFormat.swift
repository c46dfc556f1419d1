import DOConvCore
import DOConvSeam

/// ONNX models (`.onnx`, with external data beside them).
public struct ONNXFormat: ModelFormat {
    public init() {}
    public var name: String { "onnx" }
    public var displayName: String { "ONNX" }
    public var summary: String { "ONNX (.onnx, with external data)" }
    public var options: Set<FormatOption> { [.fuseBatchNorm, .foldSeparable, .reparameterize] }
    public var runsInChildProcess: Bool { false }

    /// A protobuf message has no signature, but its first field must be one of ModelProto's
    /// with that field's wire type (exporters start with ir_version, a varint). Files no
    /// format recognizes come to the ONNX reader last (`FormatRegistry`).
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        guard file.zipEntries == nil, !file.isFolder else { return false }
        // The first tag, a varint: field number << 3 | wire type.
        var tag = 0
        var shift = 0
        for byte in file.head.prefix(3) {
            tag |= Int(byte & 0x7F) << shift
            shift += 7
            guard byte & 0x80 != 0 else {
                let varints: Set<Int> = [1, 5]                      // ir_version, model_version
                let lengths: Set<Int> = [2, 3, 4, 6, 7, 8, 14, 20, 25, 26] // strings, graph, opsets, ...
                let (field, wire) = (tag >> 3, tag & 7)
                return (wire == 0 && varints.contains(field)) || (wire == 2 && lengths.contains(field))
            }
        }
        return false
    }

    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".onnx"]) }

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
        guard !options.fuseBatchNorm, !options.reparameterize else {
            let summary = try ONNXFolder.fold(model, options: options.fold, fuseBatchNorm: options.fuseBatchNorm, reparameterize: options.reparameterize)
            return FoldedModel(summary: summary) { try model.save(to: $0) }
        }
        // The kernels are computed while the model is written (see PendingKernels).
        let pending = PendingKernels()
        let fold = try ONNXFolder.foldDeferringKernels(model, options: options.fold, pending: pending)
        return FoldedModel(summary: fold.summary, writeVerifying: { path, accept in
            var summary = fold.summary
            let committed = try ModelWriter.save(model, to: path, pending: pending) {
                summary = fold.finished(pending)
                return accept(summary)
            }
            return FoldedModel.Written(summary: summary, notes: [], committed: committed)
        })
    }

}
