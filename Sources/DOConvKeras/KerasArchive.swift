import DOConvCore
import Foundation
import ZIPFoundation

/// A Keras 3 `.keras` archive: a zip of `config.json`, `metadata.json` and
/// `model.weights.h5`. Its weights fold like a `.weights.h5` file with the archive's own
/// config, and the archive is rebuilt with a plain config and the folded weights.
public struct KerasArchiveFoldResult {
    public let summary: FoldSummary
    let archivePath: String
    let weights: KerasFoldResult
    let foldedConfig: String
    let workDirectory: URL

    /// Writes the folded archive to `path` atomically (temporary file, then rename).
    public func write(to path: String) throws(KerasError) {
        defer { try? FileManager.default.removeItem(at: workDirectory) }
        let foldedWeights = workDirectory.appendingPathComponent("folded.weights.h5")
        try weights.write(to: foldedWeights.path)
        let destination = URL(fileURLWithPath: path)
        let temporary = destination.deletingLastPathComponent().appendingPathComponent(".\(destination.lastPathComponent).tmp-\(getpid())-\(UUID().uuidString)")
        do {
            try writeArchive(to: temporary, weights: foldedWeights)
            guard rename(temporary.path, path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw .cannotWrite(path: path, reason: "\(error)")
        }
    }

    /// The archive's entries in their order, with the folded config and weights swapped in.
    /// Returning closes both archives (ZIPFoundation writes its central directory on release).
    private func writeArchive(to temporary: URL, weights foldedWeights: URL) throws {
        let source = try Archive(url: URL(fileURLWithPath: archivePath), accessMode: .read)
        let target = try Archive(url: temporary, accessMode: .create)
        for entry in source where entry.type == .file {
            let method: CompressionMethod = entry.isCompressed ? .deflate : .none
            switch entry.path {
            case KerasArchive.weightsEntry:
                try target.addEntry(with: entry.path, fileURL: foldedWeights, compressionMethod: method)
            case KerasArchive.configEntry:
                let data = Data(foldedConfig.utf8)
                try target.addEntry(with: entry.path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: method) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            default:
                var data = Data()
                _ = try source.extract(entry) { data.append($0) }
                try target.addEntry(with: entry.path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: method) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            }
        }
    }
}

public enum KerasArchive {
    static let configEntry = "config.json"
    static let weightsEntry = "model.weights.h5"

    /// Folds the archive at `path` (nothing is written until `write(to:)`).
    public static func fold(path: String, options: KerasFoldOptions = KerasFoldOptions()) throws(KerasError) -> KerasArchiveFoldResult {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-\(getpid())-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
            guard let configEntry = archive[configEntry], let weightsEntry = archive[weightsEntry] else {
                throw KerasError.notKeras(path: path, reason: "the archive has no \(Self.configEntry) or \(Self.weightsEntry)")
            }
            var configData = Data()
            _ = try archive.extract(configEntry) { configData.append($0) }
            let weightsPath = work.appendingPathComponent(Self.weightsEntry)
            _ = try archive.extract(weightsEntry, to: weightsPath)

            let configJSON = String(decoding: configData, as: UTF8.self)
            var weightOptions = options
            weightOptions.configJSON = configJSON
            weightOptions.configSource = "\(path):\(Self.configEntry)"
            let weights: KerasFoldResult
            do {
                weights = try KerasFolder.fold(path: weightsPath.path, options: weightOptions)
            } catch {
                // Name the archive, not the temporary copy of its weights.
                throw KerasError.notKeras(path: path, reason: "\(Self.weightsEntry): " + "\(error)".replacingOccurrences(of: weightsPath.path + ": ", with: ""))
            }
            let config = try KerasModelConfig(json: configJSON, source: weightOptions.configSource)
            let folded = config.foldedJSON(layers: Set(weights.summary.layers.map(\.name)))
            return KerasArchiveFoldResult(summary: weights.summary, archivePath: path, weights: weights, foldedConfig: folded, workDirectory: work)
        } catch let error as KerasError {
            try? FileManager.default.removeItem(at: work)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: work)
            throw .notKeras(path: path, reason: "not a readable .keras archive (\(error))")
        }
    }
}
