import DOConvFileIO
import DOConvCore
import DOConvZip
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A Keras 3 `.keras` archive (a zip of `config.json`, `metadata.json` and
/// `model.weights.h5`) opened for reading: its config, and its weights extracted to a
/// temporary folder, because libhdf5 reads files, not zip entries.
///
/// This is the one place that extracts archives, for all three tools. The folder is named
/// `doconv-PID-UUID` so that a parent process can remove it when this (child) process dies
/// inside libhdf5; otherwise it goes with `close()` or when the last reference is released.
public final class KerasArchiveContents {
    public static let configEntry = "config.json"
    public static let weightsEntry = "model.weights.h5"

    /// The archive.
    public let path: String
    /// The extracted `model.weights.h5`.
    public let weightsPath: String
    /// `config.json`, as text.
    public let configJSON: String
    private let folder: URL

    /// Extracts the archive at `path`; a file that is not a readable `.keras` archive is a
    /// `KerasError` naming it, and leaves no temporary folder.
    public init(path: String) throws(KerasError) {
        self.path = path
        folder = FileManager.default.temporaryDirectory.appendingPathComponent(TemporaryFiles.scratchPrefix(pid: getpid()) + UUID().uuidString)
        let weights = folder.appendingPathComponent(Self.weightsEntry)
        weightsPath = weights.path
        do {
            guard FileManager.default.fileExists(atPath: path) else { throw KerasError.notKeras(path: path, reason: "no such file") }
            let file = try MappedFile(path: path)
            let archive = try ZipArchive(bytes: file.bytes)
            guard let configEntry = archive.entries.first(where: { $0.name == Self.configEntry }),
                  let weightsEntry = archive.entries.first(where: { $0.name == Self.weightsEntry }) else {
                throw KerasError.notKeras(path: path, reason: "the archive has no \(Self.configEntry) or \(Self.weightsEntry)")
            }
            configJSON = String(decoding: try archive.contents(of: configEntry), as: UTF8.self)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(try archive.contents(of: weightsEntry)).write(to: weights)
        } catch let error as KerasError {
            try? FileManager.default.removeItem(at: folder)
            throw error
        } catch let error as FileIOError {
            try? FileManager.default.removeItem(at: folder)
            throw .file(error)
        } catch {
            try? FileManager.default.removeItem(at: folder)
            throw .notKeras(path: path, reason: "not a readable .keras archive (\(error))")
        }
    }

    deinit { close() }

    /// Removes the extracted weights (also done on release).
    public func close() {
        try? FileManager.default.removeItem(at: folder)
    }

    /// Options for the weights inside: the archive's own config names the layers.
    public func weightOptions(_ options: KerasFoldOptions) -> KerasFoldOptions {
        var weightOptions = options
        weightOptions.configJSON = configJSON
        weightOptions.configSource = "\(path):\(Self.configEntry)"
        return weightOptions
    }

    /// An error about the extracted weights, reworded to name the archive and its entry
    /// rather than the temporary copy.
    public func archiveError(_ error: Error) -> KerasError {
        let message = "\(error)".replacing(weightsPath + ": ", with: "").replacing(weightsPath, with: Self.weightsEntry)
        return .notKeras(path: path, reason: "\(Self.weightsEntry): \(message)")
    }
}

/// Rewritten weights of a Keras HDF5 file (folded or expanded), ready to be written.
protocol KerasWeightsRewrite {
    func write(to path: String) throws(KerasError)
}

extension KerasFoldResult: KerasWeightsRewrite {}
extension KerasExpander.Result: KerasWeightsRewrite {}

/// A folded (or expanded) `.keras` archive, ready to be written (or not, when verification
/// failed).
public struct KerasArchiveFoldResult {
    public let summary: FoldSummary
    let contents: KerasArchiveContents
    let weights: any KerasWeightsRewrite
    let foldedConfig: String

    /// Writes the folded archive to `path` atomically (temporary file, then rename): the
    /// archive's entries in their order, with the folded config and weights swapped in, all
    /// stored (Keras writes them so; a deflated one is written stored).
    public func write(to path: String) throws(KerasError) {
        let foldedWeights = FilePath.join(FilePath.directory(of: contents.weightsPath), "folded.weights.h5")
        try weights.write(to: foldedWeights)
        do {
            let source = try MappedFile(path: contents.path)
            let weightsFile = try MappedFile(path: foldedWeights)
            let archive: ZipArchive
            do { archive = try ZipArchive(bytes: source.bytes) } catch { throw KerasError.notKeras(path: contents.path, reason: "\(error)") }
            let file = try AtomicFileWriter(destination: path)
            var zip = ZipWriter(file: file)
            for entry in archive.entries where !entry.name.hasSuffix("/") {
                switch entry.name {
                case KerasArchiveContents.weightsEntry:
                    zip.add(name: entry.name, data: weightsFile.bytes)
                case KerasArchiveContents.configEntry:
                    Array(foldedConfig.utf8).withUnsafeBytes { zip.add(name: entry.name, data: $0) }
                default:
                    let bytes: [UInt8]
                    do { bytes = try archive.contents(of: entry) } catch { throw KerasError.notKeras(path: contents.path, reason: "\(error)") }
                    bytes.withUnsafeBytes { zip.add(name: entry.name, data: $0, crc32: entry.crc32) }
                }
            }
            zip.finish()
            try file.commit()
        } catch let error as KerasError {
            throw error
        } catch let error as FileIOError {
            throw .file(error)
        } catch {
            throw .cannotWrite(path: path, reason: "\(error)")
        }
    }
}

public enum KerasArchive {
    /// Finds every DOConv2D layer of the archive's weights without writing anything.
    public static func detect(path: String, options: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> Detection {
        let contents = try KerasArchiveContents(path: path)
        defer { contents.close() }
        do {
            return try KerasFolder.detect(path: contents.weightsPath, options: contents.weightOptions(options))
        } catch {
            throw contents.archiveError(error)
        }
    }

    /// Folds the archive at `path` (nothing is written until `write(to:)`).
    public static func fold(path: String, options: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> KerasArchiveFoldResult {
        let contents = try KerasArchiveContents(path: path)
        let weightOptions = contents.weightOptions(options)
        let weights: KerasFoldResult
        do {
            weights = try KerasFolder.fold(path: contents.weightsPath, options: weightOptions, configWrittenAlongside: true)
        } catch {
            throw contents.archiveError(error)
        }
        let config = try KerasModelConfig(json: contents.configJSON, source: weightOptions.configSource)
        let folded = config.rewrittenJSON(weights.configEdit)
        return KerasArchiveFoldResult(summary: weights.summary, contents: contents, weights: weights, foldedConfig: folded)
    }

    /// Expands the archive at `path`: its weights as `KerasExpander` expands them, its
    /// config with each expanded Conv2D a DOConv2D (nothing is written until `write(to:)`).
    public static func expand(path: String, options given: ExpandOptions) throws(KerasError) -> KerasArchiveFoldResult {
        let contents = try KerasArchiveContents(path: path)
        var options = given
        options.configJSON = contents.configJSON
        options.configSource = "\(path):\(KerasArchiveContents.configEntry)"
        let weights: KerasExpander.Result
        do {
            weights = try KerasExpander.expand(path: contents.weightsPath, options: options)
        } catch {
            throw contents.archiveError(error)
        }
        let config = try KerasModelConfig(json: contents.configJSON, source: options.configSource)
        return KerasArchiveFoldResult(summary: weights.summary, contents: contents, weights: weights, foldedConfig: config.expandedJSON(weights.depthMultipliers))
    }
}
