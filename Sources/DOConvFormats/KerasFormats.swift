import DOConvCore
import DOConvKeras

extension FormatOptions {
    /// The Keras adapter's view of these options.
    var keras: KerasFoldOptions {
        var keras = KerasFoldOptions()
        keras.fold = fold
        keras.configJSON = configJSON
        keras.configSource = configSource
        keras.kernelSizes = kernelSizes
        keras.fuseBatchNorm = fuseBatchNorm
        return keras
    }
}

/// Keras HDF5 files: Keras 2 and 3 full models and weights (`.h5`), Keras 3 `.weights.h5`.
public struct KerasHDF5Format: ModelFormat {
    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    public init() {}
    public var name: String { "keras-h5" }
    public var displayName: String { "Keras HDF5" }
    public var options: Set<FormatOption> { [.config, .kernelSize, .fuseBatchNorm, .foldSeparable] }
    public var runsInChildProcess: Bool { true }

    /// The HDF5 signature; a damaged file with an HDF5 suffix still goes to the HDF5 reader,
    /// which says what is wrong with it.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        if file.head.starts(with: Self.signature) { return true }
        let lowered = file.path.lowercased()
        return file.zipEntries == nil && !file.isFolder && (lowered.hasSuffix(".h5") || lowered.hasSuffix(".hdf5"))
    }

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
    public var options: Set<FormatOption> { [.config, .kernelSize, .fuseBatchNorm, .foldSeparable] }
    public var runsInChildProcess: Bool { true }
    public var zipContents: String { "\(KerasArchiveContents.configEntry) and \(KerasArchiveContents.weightsEntry) (Keras)" }

    /// A zip holding the config and the weights; a zip named `.keras` goes to the archive
    /// reader too, which says what it lacks.
    public func recognizes(_ file: ModelFileSignature) -> Bool {
        guard let entries = file.zipEntries else { return false }
        if entries.contains(KerasArchiveContents.configEntry) && entries.contains(KerasArchiveContents.weightsEntry) { return true }
        return file.path.lowercased().hasSuffix(".keras") && !entries.contains(where: { $0.hasSuffix("/data.pkl") })
    }

    public func detect(path: String, options: FormatOptions) throws -> Detection {
        try KerasArchive.detect(path: path, options: options.keras)
    }

    public func fold(path: String, options: FormatOptions) throws -> FoldedModel {
        let result = try KerasArchive.fold(path: path, options: options.keras)
        return FoldedModel(summary: result.summary) { try result.write(to: $0) }
    }

}
