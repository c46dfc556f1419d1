import DOConvCore
import DOConvKeras
import DOConvONNX
import Foundation
import ZIPFoundation

/// Why a model could not be inspected, as one line naming the file and the problem.
struct InspectError: Error, CustomStringConvertible {
    let description: String
}

/// Finds the DO-Conv layers of a model file with the adapters' detection entry points,
/// by file extension: .keras archives, .h5/.hdf5 Keras files, anything else as ONNX.
enum ModelLoader {
    static func detect(path: String, keras: KerasFoldOptions) throws -> (format: String, detection: Detection) {
        let lowered = path.lowercased()
        if lowered.hasSuffix(".keras") {
            return ("keras-archive", try detectArchive(path: path, options: keras))
        }
        if lowered.hasSuffix(".h5") || lowered.hasSuffix(".hdf5") {
            return ("keras-h5", try KerasFolder.detect(path: path, options: keras))
        }
        let model = try ONNXModel.load(path: path)
        return ("onnx", try ONNXFolder.detect(model))
    }

    static let configEntry = "config.json"
    static let weightsEntry = "model.weights.h5"

    /// A Keras 3 `.keras` archive (a zip of config.json and model.weights.h5): its weights
    /// are detected like a `.weights.h5` file with the archive's own config.
    static func detectArchive(path: String, options: KerasFoldOptions) throws -> Detection {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("doconv-inspect-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let weightsPath = work.appendingPathComponent(weightsEntry)
        var configData = Data()
        do {
            guard FileManager.default.fileExists(atPath: path) else { throw InspectError(description: "\(path): cannot open: no such file") }
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            let archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
            guard let config = archive[configEntry], let weights = archive[weightsEntry] else {
                throw InspectError(description: "\(path): not a Keras archive: it has no \(configEntry) or \(weightsEntry)")
            }
            _ = try archive.extract(config) { configData.append($0) }
            _ = try archive.extract(weights, to: weightsPath)
        } catch let error as InspectError {
            throw error
        } catch {
            throw InspectError(description: "\(path): not a readable .keras archive (\(error))")
        }
        var weightOptions = options
        weightOptions.configJSON = String(decoding: configData, as: UTF8.self)
        weightOptions.configSource = "\(path):\(configEntry)"
        do {
            return try KerasFolder.detect(path: weightsPath.path, options: weightOptions)
        } catch {
            // Name the archive, not the temporary copy of its weights.
            let message = "\(error)".replacingOccurrences(of: weightsPath.path + ": ", with: "").replacingOccurrences(of: weightsPath.path, with: weightsEntry)
            throw InspectError(description: "\(path): \(weightsEntry): \(message)")
        }
    }
}
