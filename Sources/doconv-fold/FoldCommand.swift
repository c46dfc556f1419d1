import ArgumentParser
import DOConvCore
import DOConvONNX
import Foundation

@main
struct FoldCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doconv-fold",
        abstract: "Fold DO-Conv layers into plain Conv kernels, verify every layer, and write the model.",
        discussion: """
        doconv-fold INPUT OUTPUT          fold one model (OUTPUT may be INPUT)
        doconv-fold IN... -o DIR          fold many models into DIR

        Exit status: 0 success, 1 verification failed (nothing written), 2 bad input or usage.
        """)

    @Argument(help: ArgumentHelp("INPUT OUTPUT, or with -o the input models.", valueName: "path"))
    var paths: [String]

    @Option(name: [.customShort("o"), .customLong("output-dir")], help: "Write each folded model into this folder, under its own name.")
    var outputDirectory: String?

    @Option(help: "Largest accepted relative error per layer (default: 1e-5 for float32/float64, 5e-3 for float16, 3e-2 for bfloat16).")
    var tolerance: Double?

    @Flag(name: .customLong("no-verify"), help: "Skip the per-layer numerical verification.")
    var noVerify = false

    @Flag(help: "Print errors only.")
    var quiet = false

    func validate() throws {
        if let tolerance, !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if outputDirectory == nil, paths.count != 2 {
            throw ValidationError("expected INPUT OUTPUT, or inputs with -o DIR")
        }
        if outputDirectory != nil, paths.isEmpty { throw ValidationError("no input models given") }
    }

    /// Usage errors exit with 2, like bad input, rather than ArgumentParser's 64.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { exit(withError: error) }
            FileHandle.standardError.write(Data("doconv-fold: error: \(message(for: error).split(separator: "\n").first ?? "")\n".utf8))
            FileHandle.standardError.write(Data("Usage: see 'doconv-fold --help'\n".utf8))
            Foundation.exit(2)
        }
    }

    func run() throws {
        let options = FoldOptions(verify: !noVerify, tolerance: tolerance)
        let jobs: [(input: String, output: String)]
        if let outputDirectory {
            jobs = paths.map { ($0, (outputDirectory as NSString).appendingPathComponent(($0 as NSString).lastPathComponent)) }
        } else {
            jobs = [(paths[0], paths[1])]
        }
        var worst: Int32 = 0
        for (k, job) in jobs.enumerated() {
            let progress = jobs.count > 1 ? "[\(k + 1)/\(jobs.count)] " : ""
            let status = FoldJob(input: job.input, output: job.output, options: options).run(quiet: quiet, prefix: progress)
            worst = max(worst, status)
        }
        if worst != 0 { throw ExitCode(worst) }
    }
}
