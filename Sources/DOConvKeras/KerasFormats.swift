import DOConvCore
import DOConvFileIO
import DOConvSeam
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

extension FormatOptions {
    /// The Keras adapter's view of these options.
    var keras: KerasFoldOptions {
        var keras = KerasFoldOptions()
        keras.fold = fold
        keras.configJSON = configJSON
        keras.configSource = configSource
        keras.kernelSizes = kernelSizes
        keras.fuseBatchNorm = fuseBatchNorm
        keras.allowPartial = allowPartial
        keras.keepGrouped = keepGrouped
        return keras
    }
}

/// Keras HDF5 files: Keras 2 and 3 full models and weights (`.h5`), Keras 3 `.weights.h5`.
public struct KerasHDF5Format: ModelFormat {
    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    public init() {}
    public var name: String { "keras-h5" }
    public var displayName: String { "Keras HDF5" }
    public var family: String { "Keras" }
    public var summary: String { "Keras HDF5 (.h5, .hdf5: Keras 2 and 3 full models and weights; Keras 3 .weights.h5)" }
    public var options: Set<FormatOption> { [.config, .kernelSize, .fuseBatchNorm, .foldSeparable, .allowPartial, .keepGrouped] }
    public var runsInChildProcess: Bool { true }

    /// The HDF5 signature, at offset 0 or, after a user block, at 512, 1024, 2048, ... (the
    /// offsets HDF5 allows for its superblock).
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        if file.head.starts(with: Self.signature) { return true }
        guard file.zipEntries == nil, !file.isFolder, file.size > 512 else { return false }
        var offset = 512
        while offset <= file.size - Self.signature.count {
            guard let bytes = FilePath.bytes(of: file.path, at: offset, count: Self.signature.count) else { return false }
            if bytes == Self.signature { return true }
            offset *= 2
        }
        return false
    }

    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { file.isPlainFile(endingWith: [".h5", ".hdf5"]) }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try KerasFolder.detect(path: path, options: options.keras)
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try KerasFolder.fold(path: path, options: options.keras)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }

}

/// Keras 3 `.keras` archives: a zip of `config.json`, `metadata.json` and `model.weights.h5`.
public struct KerasArchiveFormat: ZipModelFormat {
    public init() {}
    public var name: String { "keras-archive" }
    public var displayName: String { "Keras archive" }
    public var family: String { "Keras" }
    public var summary: String { "Keras 3 archives (.keras)" }
    public var options: Set<FormatOption> { [.config, .kernelSize, .fuseBatchNorm, .foldSeparable, .keepGrouped] }
    public var runsInChildProcess: Bool { true }
    public var zipContents: String { "\(KerasArchiveContents.configEntry) and \(KerasArchiveContents.weightsEntry) (Keras)" }

    /// A zip holding the config and the weights.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        guard let entries = file.zipEntries else { return false }
        return entries.contains(KerasArchiveContents.configEntry) && entries.contains(KerasArchiveContents.weightsEntry)
    }

    /// A zip named `.keras` that nothing recognizes: the archive reader says what it lacks.
    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool {
        file.zipEntries != nil && file.path.lowercased().hasSuffix(".keras")
    }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try KerasArchive.detect(path: path, options: options.keras)
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try KerasArchive.fold(path: path, options: options.keras)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }

}

/// Keras legacy `.h5` files expand through `KerasExpander`.
extension KerasHDF5Format: ExpandableFormat {
    public func expand(path: String, options: ExpandOptions) throws -> FoldedModel {
        let result = try KerasExpander.expand(path: path, options: options)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }
}

/// Keras 3 `.keras` archives expand their weights and config together.
extension KerasArchiveFormat: ExpandableFormat {
    public func expand(path: String, options: ExpandOptions) throws -> FoldedModel {
        let result = try KerasArchive.expand(path: path, options: options)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }
}
