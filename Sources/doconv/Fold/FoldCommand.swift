import DOConvFileIO
import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

struct FoldCommand: ToolCommand {
    static let toolName = "doconv-fold"

    static let configuration = CommandConfiguration(
        commandName: "fold",
        abstract: "Fold DO-Conv layers into plain Conv kernels, verify every layer, and write the model.",
        discussion: """
        doconv fold INPUT OUTPUT          fold one model (OUTPUT may be INPUT)
        doconv fold IN... -o DIR          fold many models into DIR

        Models, told apart by their content: \(FormatList.summaries).

        Format options (\(FormatOption.allCases.filter { $0.tools.contains(.fold) }.map(\.rawValue).joined(separator: ", "))) are
        refused for a file whose format does not read them; with -o DIR each applies to the files
        it fits.

        --json prints one JSON document on standard output instead of the summaries, with a result
        per input (also for an input that failed: status "error" or "verification_failed", with the
        error line's message), as described by schemas/fold-result.schema.json. Error lines still go
        to standard error, and the exit status is the same.

        Exit status: 0 success, 1 verification failed (nothing written), 2 bad input or usage.
        """,
        version: DOConvVersion.string)

    @Argument(help: ArgumentHelp("INPUT OUTPUT, or with -o the input models.", valueName: "path"))
    var paths: [String]

    @Option(name: [.customShort("o"), .customLong("output-dir")], help: "Write each folded model into this folder, under its own name.")
    var outputDirectory: String?

    @Option(help: "Largest accepted relative error per layer (default: 1e-5 for float32, 1e-10 for float64, 5e-3 for float16, 3e-2 for bfloat16).")
    var tolerance: Double?

    @Flag(name: .customLong("no-verify"), help: "Skip the per-layer numerical verification.")
    var noVerify = false

    @Flag(help: "Print errors only.")
    var quiet = false

    @Flag(help: "Print one JSON document with every input's result instead of the summaries.")
    var json = false

    @Option(name: .customLong("progress-prefix"), help: .hidden)
    var progressPrefix = ""

    // A child of a -o DIR run: format options apply to the files they fit.
    @Flag(name: .customLong("lenient-options"), help: .hidden)
    var lenientOptions = false

    @OptionGroup var formats: FormatOptionGroup<FoldTool>

    @OptionGroup var picks: LayerPickOptions

    func validate() throws {
        if let tolerance, !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if outputDirectory == nil, paths.count != 2 {
            throw ValidationError("expected INPUT OUTPUT, or inputs with -o DIR")
        }
        if outputDirectory != nil, paths.isEmpty { throw ValidationError("no input models given") }
    }

    /// This command's options for one job in a child process.
    func childArguments(input: String, output: String, progress: String) -> [String] {
        // Values joined to their flags: one that begins with '-' is still a value (and an
        // empty one is left out: ArgumentParser reads `--flag=` as a missing value).
        var arguments = progress.isEmpty ? [] : ["--progress-prefix=\(progress)"]
        if let tolerance { arguments.append("--tolerance=\(tolerance)") }
        if noVerify { arguments.append("--no-verify") }
        if quiet { arguments.append("--quiet") }
        arguments += formats.arguments + picks.arguments
        if outputDirectory != nil { arguments.append("--lenient-options") }
        if json { arguments.append("--json") }
        // The paths last, after "--": a path that begins with '-' is still a path.
        return arguments + ["--", input, output]
    }

    /// The format options, read once for every job.
    func formatOptions() throws(FormatError) -> FormatOptions {
        var fold = FoldOptions(verify: !noVerify, tolerance: tolerance)
        fold.selection = picks.selection
        return try formats.formatOptions(fold: fold)
    }

    func run() throws {
        let jobs = plannedJobs()
        let results: [FoldResult]
        switch preparedOptions() {
        case .failure(let problem):
            Self.printError("doconv-fold: error: \(problem.message)")
            // Every input still gets its result, so that a script finds each one it gave.
            results = jobs.map { .failure(input: $0.input, output: $0.output, format: nil, message: problem.message) }
        case .success(let options):
            results = jobs.enumerated().map { k, job in
                run(job, options: options, progress: jobs.count > 1 ? "[\(k + 1)/\(jobs.count)] " : progressPrefix)
            }
        }
        if json {
            do { print(try FoldDocument(results: results).rendered(), terminator: "") } catch {
                Self.printError("doconv-fold: error: cannot encode the JSON result: \(error)")
                throw ExitCode(2)
            }
        }
        let worst = results.map(\.exitStatus).max() ?? 0
        if worst != 0 { throw ExitCode(worst) }
    }

    /// Each input and where its folded model goes.
    private func plannedJobs() -> [(input: String, output: String)] {
        guard let outputDirectory else { return [(paths[0], paths[1])] }
        return paths.map { ($0, FilePath.join(outputDirectory, FilePath.baseName(of: $0))) }
    }

    /// What stops every job before any starts.
    private struct SetupProblem: Error {
        var message: String
    }

    /// The format options for every job, or what stops them all: options that cannot be
    /// read, or a missing output folder (one line for it, rather than the same write error
    /// for every input).
    private func preparedOptions() -> Result<FormatOptions, SetupProblem> {
        let options: FormatOptions
        do { options = try formatOptions() } catch { return .failure(SetupProblem(message: "\(error)")) }
        guard let outputDirectory else { return .success(options) }
        // Two inputs of one name would be written to one output, the second over the first.
        var byOutput: [String: String] = [:]
        for job in plannedJobs() {
            if let first = byOutput[job.output] {
                return .failure(SetupProblem(message: "\(first) and \(job.input) would both be written as \(job.output); fold them into different folders; nothing written"))
            }
            byOutput[job.output] = job.input
        }
        if FilePath.isFolder(outputDirectory) { return .success(options) }
        let problem = FilePath.exists(outputDirectory) ? "is not a folder" : "does not exist"
        return .failure(SetupProblem(message: "\(outputDirectory): the output folder \(problem); nothing written"))
    }

    /// One input: its format by content, the options checked against it, then the fold, in
    /// a child process when the format's reader needs one.
    private func run(_ job: (input: String, output: String), options given: FormatOptions, progress: String) -> FoldResult {
        func refused(_ error: any Error, format: String?) -> FoldResult {
            Self.printError("doconv-fold: error: \(error)")
            return .failure(input: job.input, output: job.output, format: format, message: "\(error)")
        }
        let format: any ModelFormat
        var options = given
        do { format = try FormatRegistry.format(of: job.input) } catch { return refused(error, format: nil) }
        do {
            if outputDirectory != nil || lenientOptions {
                options.dropOptions(notReadBy: format)
            } else {
                try options.check(appliesTo: format, path: job.input)
            }
        } catch {
            return refused(error, format: format.name)
        }
        if format.runsInChildProcess && !IsolatedRun.isChild {
            return runInChild(job, format: format, progress: progress)
        }
        return FoldJob(input: job.input, output: job.output, format: format, options: options).run(printSummary: !quiet && !json, prefix: progress)
    }

    /// One input folded by a child process. With --json the child prints a document holding
    /// its one result, which becomes this input's result; a child that died is an error
    /// result with the line already reported.
    private func runInChild(_ job: (input: String, output: String), format: any ModelFormat, progress: String) -> FoldResult {
        let arguments = childArguments(input: job.input, output: job.output, progress: progress)
        guard json else {
            // The child printed its own summary or error line; only its status matters here.
            let status = IsolatedRun.run(Self.self, arguments: arguments, inputs: [job.input], output: job.output)
            return .printedByChild(input: job.input, output: job.output, format: format.name, exitStatus: status)
        }
        let start = ContinuousClock.now
        let outcome = IsolatedRun.runCapturingOutput(Self.self, arguments: arguments, inputs: [job.input], output: job.output)
        let elapsed = ContinuousClock.now - start
        if let failure = outcome.failure {
            return .failure(input: job.input, output: job.output, format: format.name, message: failure, elapsed: elapsed)
        }
        if let result = (try? FoldDocument.decode(outcome.standardOutput))?.results.first {
            return result
        }
        let message = "\(job.input): the worker process ended (status \(outcome.status)) without a result; nothing written"
        Self.printError("doconv-fold: error: \(message)")
        return .failure(input: job.input, output: job.output, format: format.name, message: message, exitStatus: max(outcome.status, 2), elapsed: elapsed)
    }
}
