import DOConvFileIO
import DOConvCore
import DOConvFormats
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Folds one model file and prints its summary; returns its result (exit status included).
struct FoldJob {
    let input: String
    let output: String
    let format: any ModelFormat
    let options: FormatOptions

    /// Folds and writes, unless verification failed. The text summary goes to standard
    /// output only when `printSummary` (not with --quiet or --json); error lines always go
    /// to standard error.
    func run(printSummary: Bool, prefix: String) -> FoldResult {
        let start = ContinuousClock.now
        do {
            let folded = try format.fold(path: input, options: options)
            // Verification may end while the model is written; nothing is committed unless it passed.
            var failure: String?
            let written = try folded.write(to: output) { summary in
                failure = failureMessage(summary)
                return failure == nil
            }
            var summary = written.summary
            if let failure {
                printError(failure)
                return result(.verificationFailed, exitStatus: 1, error: failure, summary: summary, start: start)
            }
            summary.notes += written.notes
            if printSummary {
                print(prefix + FoldReport.summary(summary, input: input, output: output, verified: options.fold.verify, elapsed: ContinuousClock.now - start))
            }
            let unchanged = summary.layers.isEmpty && summary.fusedBatchNorms.isEmpty && summary.reparameterized.isEmpty
            return result(unchanged ? .unchanged : .folded, exitStatus: 0, error: nil, summary: summary, start: start)
        } catch {
            printError("\(error)")
            return .failure(input: input, output: output, format: format.name, message: "\(error)", elapsed: ContinuousClock.now - start)
        }
    }

    private func result(_ status: FoldResult.Status, exitStatus: Int32, error: String?, summary: FoldSummary, start: ContinuousClock.Instant) -> FoldResult {
        FoldResult(input: input, output: output, format: format.name, status: status, exitStatus: exitStatus, error: error,
                   summary: summary, verify: options.fold.verify, elapsed: ContinuousClock.now - start)
    }

    /// The error line's message for the verification failures; nil when there were none
    /// (and the model may be written).
    private func failureMessage(_ summary: FoldSummary) -> String? {
        let failures = summary.failures.map { ($0.name, $0.relativeError, $0.tolerance) }
            + summary.batchNormFailures.map { ($0.name, $0.relativeError, $0.tolerance) }
            + summary.reparamFailures.map { ($0.name, $0.relativeError, $0.tolerance) }
        guard !failures.isEmpty else { return nil }
        let list = failures.map { name, error, tolerance -> String in
            guard let error, !error.isNaN else { return "\(name) (the weights hold NaN or infinite values)" }
            return "\(name) (\(FoldReport.scientific(error)) > \(FoldReport.scientific(tolerance)))"
        }
        return "\(input): verification failed for \(failures.count) layer(s): \(list.joined(separator: ", ")); nothing written"
    }

    private func printError(_ line: String) {
        StandardStreams.error("doconv-fold: error: \(line)\n")
    }
}
