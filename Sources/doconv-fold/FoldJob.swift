import DOConvCore
import DOConvONNX
import Foundation

/// Folds one model file and prints its summary; returns the exit status.
struct FoldJob {
    let input: String
    let output: String
    let options: FoldOptions

    func run(quiet: Bool, prefix: String) -> Int32 {
        let start = ContinuousClock.now
        do {
            guard !input.lowercased().hasSuffix(".h5"), !input.lowercased().hasSuffix(".keras") else {
                throw JobError("\(input): Keras HDF5 models are not supported yet")
            }
            let model = try ONNXModel.load(path: input)
            let summary = try ONNXFolder.fold(model, options: options)
            let failures = summary.failures
            if !failures.isEmpty {
                let list = failures.map { layer -> String in
                    guard let error = layer.relativeError, !error.isNaN else { return "\(layer.name) (D or W holds NaN or infinite values)" }
                    return "\(layer.name) (\(Report.scientific(error)) > \(Report.scientific(layer.tolerance)))"
                }
                printError("\(input): verification failed for \(failures.count) layer(s): \(list.joined(separator: ", ")); nothing written")
                return 1
            }
            try model.save(to: output)
            if !quiet {
                print(prefix + Report.summary(summary, input: input, output: output, verified: options.verify, elapsed: ContinuousClock.now - start))
            }
            return 0
        } catch {
            printError("\(error)")
            return 2
        }
    }

    private func printError(_ line: String) {
        FileHandle.standardError.write(Data("doconv-fold: error: \(line)\n".utf8))
    }
}

struct JobError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
