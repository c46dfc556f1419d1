import Foundation
import ZIPFoundation

/// A Keras 3 `.keras` archive opened for verification: its `model.weights.h5` extracted to a
/// temporary folder (removed when this is released) and its `config.json`.
final class KerasArchiveInput {
    let weightsPath: String
    let configJSON: String?
    private let folder: URL

    init(path: String) throws(VerifyError) {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("verify-equivalence-\(UUID().uuidString)")
        let weights = folder.appendingPathComponent("model.weights.h5")
        weightsPath = weights.path
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
            guard let entry = archive["model.weights.h5"] else { throw VerifyError("\(path): the archive has no model.weights.h5") }
            _ = try archive.extract(entry, to: weights)
            if let config = archive["config.json"] {
                var data = Data()
                _ = try archive.extract(config) { data.append($0) }
                configJSON = String(decoding: data, as: UTF8.self)
            } else {
                configJSON = nil
            }
        } catch let error as VerifyError {
            try? FileManager.default.removeItem(at: folder)
            throw error
        } catch {
            try? FileManager.default.removeItem(at: folder)
            throw VerifyError("\(path): not a readable .keras archive (\(error))")
        }
    }

    deinit { try? FileManager.default.removeItem(at: folder) }
}
