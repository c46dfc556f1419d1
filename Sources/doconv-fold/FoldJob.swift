import DOConvCore
import DOConvFormats
import Foundation

/// Folds one model file and prints its summary; returns the exit status.
struct FoldJob {
    let input: String
    let output: String
    let format: any ModelFormat
    let options: FormatOptions

    func run(quiet: Bool, prefix: String) -> Int32 {
        let start = ContinuousClock.now
        do {
            let folded = try format.fold(path: input, options: options)
            guard reportFailures(folded.summary) else { return 1 }
            try folded.write(to: output)
            if !quiet {
                print(prefix + Report.summary(folded.summary, input: input, output: output, verified: options.fold.verify, elapsed: ContinuousClock.now - start))
            }
            return 0
        } catch {
            printError("\(error)")
            return 2
        }
    }

    /// Prints the verification failures; false when there were any (nothing may be written).
    private func reportFailures(_ summary: FoldSummary) -> Bool {
        let failures = summary.failures.map { ($0.name, $0.relativeError, $0.tolerance) }
            + summary.batchNormFailures.map { ($0.name, $0.relativeError, $0.tolerance) }
            + summary.reparamFailures.map { ($0.name, $0.relativeError, $0.tolerance) }
        guard !failures.isEmpty else { return true }
        let list = failures.map { name, error, tolerance -> String in
            guard let error, !error.isNaN else { return "\(name) (the weights hold NaN or infinite values)" }
            return "\(name) (\(Report.scientific(error)) > \(Report.scientific(tolerance)))"
        }
        printError("\(input): verification failed for \(failures.count) layer(s): \(list.joined(separator: ", ")); nothing written")
        return false
    }

    private func printError(_ line: String) {
        FileHandle.standardError.write(Data("doconv-fold: error: \(line)\n".utf8))
    }
}
