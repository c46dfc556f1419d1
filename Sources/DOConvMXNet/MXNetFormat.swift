import DOConvCore
import DOConvSeam

extension FormatOptions {
    /// The MXNet adapter's view of these options.
    var mxnet: MXNetFoldOptions {
        var mxnet = MXNetFoldOptions()
        mxnet.fold = fold
        mxnet.paramsFile = paramsFile
        return mxnet
    }
}

/// MXNet/Gluon: `.params` files (`save_parameters`, `collect_params().save`) and export
/// pairs (`NAME-symbol.json` + `NAME-NNNN.params`), given by either half.
public struct MXNetFormat: ModelFormat {
    public init() {}
    public var name: String { "mxnet" }
    public var displayName: String { "MXNet" }
    public var summary: String { "MXNet/Gluon .params files and export pairs (NAME-symbol.json with NAME-NNNN.params, given by either half)" }
    public var options: Set<FormatOption> { [.params] }
    public var runsInChildProcess: Bool { false }

    /// The NDArray list's magic, or a symbol JSON (an object with "nodes").
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        guard file.zipEntries == nil, !file.isFolder else { return false }
        return NDArrayList.looksLikeParams(head: file.head) || SymbolGraph.looksLikeSymbol(head: file.head)
    }

    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".params", "-symbol.json"]) }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try MXNetFolder.detect(path: path, options: options.mxnet)
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try MXNetFolder.fold(path: path, options: options.mxnet)
        return FoldedModel(summary: result.summary, writeVerifying: { path, accept in
            let (summary, committed) = try result.write(to: path, accepting: accept)
            return FoldedModel.Written(summary: summary, notes: [], committed: committed)
        })
    }
}

/// Gluon `.params` expand through `GluonExpander`.
extension MXNetFormat: ExpandableFormat {
    public func expand(path: String, options: ExpandOptions) throws -> FoldedModel {
        let result = try GluonExpander.expand(path: path, options: options)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }
}
