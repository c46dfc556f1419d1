import DOConvFileIO
import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import DOConvSeam
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

struct ExpandCommand: ToolCommand {
    static let toolName = "doconv-expand"

    static let configuration = CommandConfiguration(
        commandName: "expand",
        abstract: "Start DO-Conv training from plain weights: every conv becomes a DO-Conv layer that computes exactly that conv.",
        discussion: """
        doconv expand PLAIN OUTPUT

        Models, told apart by their content: \(ExpandableFormats.summaries).

        Each 4-D conv weight P.weight (Cout, Cin/g, M, N) becomes the DO-Conv layer's P.W
        (Cout, Cin/g, Dmul), whose first M*N columns hold the kernel, with P.D zeros
        (Cin, M*N, Dmul) and the identity P.d_diag; a 1x1 conv becomes P.W (Cout, Cin/g, 1).
        The DO-Conv model loads the result with strict key and shape matching and, at
        initialization, computes exactly what the plain model computes. Every layer is
        composed back in float64 and compared with its plain kernel before anything is
        written. A kernel does not tell its groups: (32, 1, 3, 3) may be depthwise or a conv
        of one channel; --groups or --like settles them.

        --json prints one JSON document on standard output instead of the summary (also for an
        input that failed: status "error" or "verification_failed", with the error line's
        message), as described by schemas/expand-result.schema.json. Error lines still go to
        standard error, and the exit status is the same.

        Exit status: 0 success, 1 verification failed (nothing written), 2 bad input or usage.
        """,
        version: DOConvVersion.string)

    @Argument(help: ArgumentHelp("PLAIN OUTPUT: the plain model's weights and where the expanded ones go.", valueName: "path"))
    var paths: [String]

    @Option(name: .customLong("dmul"), help: ArgumentHelp("Depth multiplier of every expanded layer (default M*N; below M*N is refused: no exact start exists).", valueName: "N"))
    var depthMultiplier: Int?

    @Option(name: .customLong("groups"), help: ArgumentHelp("Groups of the layers matching a glob (repeatable; the last match wins).", valueName: "LAYER=G"))
    var groups: [String] = []

    @Option(name: .customLong("like"), help: ArgumentHelp("A freshly initialized DO-Conv model's weights: which layers are DO-Conv layers, with their groups and Dmul.", valueName: "TEMPLATE"))
    var template: String?

    @Option(name: .customLong("config"), help: ArgumentHelp("Keras: the model's JSON (model.to_json()), for a weights-only .h5.", valueName: "FILE"))
    var configFile: String?

    @Option(help: "Seed of the random columns of layers whose Dmul exceeds M*N.")
    var seed: UInt64 = 0

    @Option(help: "Largest accepted relative error per layer when composed back (default: as doconv-fold's).")
    var tolerance: Double?

    @Flag(name: .customLong("no-verify"), help: "Skip composing every layer back.")
    var noVerify = false

    @Flag(help: "Print errors only.")
    var quiet = false

    @Flag(help: "Print one JSON document with the result instead of the summary.")
    var json = false

    @OptionGroup var picks: LayerPickOptions

    func validate() throws {
        guard paths.count == 2 else { throw ValidationError("expected PLAIN OUTPUT") }
        if let tolerance, !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if let depthMultiplier, depthMultiplier < 1 || depthMultiplier > DOConvLayer.maxKernelGrowth * 1024 {
            throw ValidationError("--dmul must be a positive depth multiplier")
        }
        _ = try parsedGroups()
    }

    /// `--groups LAYER=G` values, in order.
    func parsedGroups() throws -> [(pattern: String, groups: Int)] {
        try groups.map { item in
            guard let equals = item.lastIndex(of: "="), equals != item.startIndex, let g = Int(item[item.index(after: equals)...]), g >= 1, g <= 1 << 24 else {
                throw ValidationError("--groups expects LAYER=G with G a positive count, got '\(item)'")
            }
            return (String(item[..<equals]), g)
        }
    }

    func options() throws -> ExpandOptions {
        var options = ExpandOptions()
        options.depthMultiplier = depthMultiplier
        options.groups = try parsedGroups()
        options.template = template
        options.selection = picks.selection
        options.verify = !noVerify
        options.tolerance = tolerance
        options.seed = seed
        if let configFile {
            guard let json = try? String(contentsOfFile: configFile, encoding: .utf8) else {
                throw ValidationError("\(configFile): cannot read the model config")
            }
            options.configJSON = json
            options.configSource = configFile
        }
        return options
    }

    /// This command's options for the child process, each value joined to its flag (a
    /// path or glob that begins with '-' is still a value).
    func childArguments() -> [String] {
        var arguments: [String] = []
        if let depthMultiplier { arguments.append("--dmul=\(depthMultiplier)") }
        arguments += groups.map { "--groups=\($0)" }
        if let template { arguments.append("--like=\(template)") }
        if let configFile { arguments.append("--config=\(configFile)") }
        arguments.append("--seed=\(seed)")
        if let tolerance { arguments.append("--tolerance=\(tolerance)") }
        if noVerify { arguments.append("--no-verify") }
        if quiet { arguments.append("--quiet") }
        if json { arguments.append("--json") }
        return arguments + picks.arguments + ["--"] + paths
    }

    func run() throws {
        let (input, output) = (paths[0], paths[1])
        let format: any ExpandableFormat
        do {
            let found = try FormatRegistry.format(of: input)
            guard let expandable = found as? any ExpandableFormat else {
                throw ValidationError("\(input): \(found.displayName) weights are not expanded (doconv-expand reads \(ExpandableFormats.names))")
            }
            format = expandable
        } catch {
            return try finish(.failure(input: input, output: output, format: nil, message: "\(error)"))
        }
        if format.runsInChildProcess && !IsolatedRun.isChild {
            return try runInChild(input: input, output: output, format: format)
        }
        let start = ContinuousClock.now
        let document: ExpandDocument
        do {
            let options = try options()
            let expanded = try format.expand(path: input, options: options)
            var summary = expanded.summary
            let failures = summary.failures
            if !failures.isEmpty {
                let list = failures.map { "\($0.name) (\($0.relativeError.map(SummaryLines.scientific) ?? "NaN") > \(SummaryLines.scientific($0.tolerance)))" }
                let message = "\(input): composed back, \(failures.count) layer(s) differ from the plain kernel: \(list.joined(separator: ", ")); nothing written"
                return try finish(ExpandDocument(input: input, output: output, format: format.name, summary: summary, verify: options.verify,
                                                 error: message, elapsed: ContinuousClock.now - start))
            }
            summary.notes += try expanded.write(to: output).notes
            if !quiet && !json {
                print(ExpandReport.summary(summary, input: input, output: output, verified: options.verify, elapsed: ContinuousClock.now - start))
            }
            document = ExpandDocument(input: input, output: output, format: format.name, summary: summary, verify: options.verify,
                                      error: nil, elapsed: ContinuousClock.now - start)
        } catch {
            return try finish(.failure(input: input, output: output, format: format.name, message: "\(error)", elapsed: ContinuousClock.now - start))
        }
        try finish(document)
    }

    /// The expansion by a child process (a reader that may crash or loop on a hostile file).
    /// With --json the child prints the document, passed on here; a child that died gets an
    /// error document, its line already reported.
    private func runInChild(input: String, output: String, format: any ExpandableFormat) throws {
        guard json else {
            let status = IsolatedRun.run(Self.self, arguments: childArguments(), inputs: [input], output: output)
            if status != 0 { throw ExitCode(status) }
            return
        }
        let outcome = IsolatedRun.runCapturingOutput(Self.self, arguments: childArguments(), inputs: [input], output: output)
        if let failure = outcome.failure {
            return try finish(.failure(input: input, output: output, format: format.name, message: failure), lineReported: true)
        }
        StandardStreams.output(Array(outcome.standardOutput))
        if outcome.status != 0 { throw ExitCode(outcome.status) }
    }

    /// Reports the document's error line (unless already reported), prints the document
    /// with --json, and ends with its exit status.
    private func finish(_ document: ExpandDocument, lineReported: Bool = false) throws {
        if let error = document.error, !lineReported { Self.printError("doconv-expand: error: \(error)") }
        if json {
            do { print(try document.rendered(), terminator: "") } catch {
                Self.printError("doconv-expand: error: cannot encode the JSON result: \(error)")
                throw ExitCode(2)
            }
        }
        if document.exitStatus != 0 { throw ExitCode(document.exitStatus) }
    }
}

/// The formats doconv-expand reads.
enum ExpandableFormats {
    static var all: [any ExpandableFormat] { FormatRegistry.formats.compactMap { $0 as? any ExpandableFormat } }
    static var names: String { all.map(\.displayName).joined(separator: ", ") }
    static var summaries: String { all.map(\.summary).joined(separator: "; ") }
}
