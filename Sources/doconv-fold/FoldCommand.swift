import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import Foundation

@main
struct FoldCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "doconv-fold",
        abstract: "Fold DO-Conv layers into plain Conv kernels, verify every layer, and write the model.",
        discussion: """
        doconv-fold INPUT OUTPUT          fold one model (OUTPUT may be INPUT)
        doconv-fold IN... -o DIR          fold many models into DIR

        Models, told apart by their content: ONNX (.onnx, with external data); Keras HDF5 (.h5:
        Keras 2 and 3 full models and weights; Keras 3 .weights.h5 with --config); Keras 3 .keras
        archives; PyTorch checkpoints (.pth, .pt, .pth.tar, .ckpt, .bin: torch.save zip and legacy
        formats) and .safetensors; MXNet/Gluon .params files and export pairs (NAME-symbol.json
        with NAME-NNNN.params, given by either half; both are written).

        Format options (--config, --kernel-size, --fuse-bn, --fold-separable, --reparam, --keep-names, --params) are
        refused for a file whose format does not read them; with -o DIR each applies to the files
        it fits.

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

    @Flag(name: .customLong("fuse-bn"), help: "ONNX and Keras: also fold each inference-mode BatchNormalization into the Conv before it.")
    var fuseBatchNorm = false

    @Flag(name: .customLong("reparam"), help: "ONNX: also merge linear over-parameterizations (RepVGG, ACNet, MobileOne, DBB branches summed; ExpandNets chains; Conv + BatchNormalization) into single Convs.")
    var reparameterize = false

    @Flag(name: .customLong("fold-separable"), help: "Also fold depthwise + 1x1 pairs and Keras SeparableConv2D with Dmul < M*N (raises their MACs).")
    var foldSeparable = false

    @Option(name: .customLong("progress-prefix"), help: .hidden)
    var progressPrefix = ""

    // A child of a -o DIR run: format options apply to the files they fit.
    @Flag(name: .customLong("lenient-options"), help: .hidden)
    var lenientOptions = false

    @Option(name: .customLong("config"), help: ArgumentHelp("Keras: the model's JSON (model.to_json()), for files that carry no config.", valueName: "file"))
    var configFile: String?

    @Option(name: .customLong("kernel-size"), help: ArgumentHelp("Keras and PyTorch: a layer's kernel size when nothing else gives it (repeatable).", valueName: "layer=MxN"))
    var kernelSizes: [String] = []

    @Flag(name: .customLong("keep-names"), help: "PyTorch: keep the key P.W for the folded kernel instead of nn.Conv2d's P.weight.")
    var keepNames = false

    @Option(name: .customLong("params"), help: ArgumentHelp("MXNet: the export's params file, when several NAME-NNNN.params sit beside NAME-symbol.json.", valueName: "file"))
    var paramsFile: String?

    func validate() throws {
        if let tolerance, !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if outputDirectory == nil, paths.count != 2 {
            throw ValidationError("expected INPUT OUTPUT, or inputs with -o DIR")
        }
        if outputDirectory != nil, paths.isEmpty { throw ValidationError("no input models given") }
        _ = try parsedKernelSizes()
    }

    /// This command's options for one job in a child process.
    func childArguments(input: String, output: String, progress: String) -> [String] {
        var arguments = [input, output, "--progress-prefix", progress]
        if let tolerance { arguments += ["--tolerance", String(tolerance)] }
        if noVerify { arguments.append("--no-verify") }
        if quiet { arguments.append("--quiet") }
        if fuseBatchNorm { arguments.append("--fuse-bn") }
        if reparameterize { arguments.append("--reparam") }
        if foldSeparable { arguments.append("--fold-separable") }
        if keepNames { arguments.append("--keep-names") }
        if let paramsFile { arguments += ["--params", paramsFile] }
        if let configFile { arguments += ["--config", configFile] }
        for size in kernelSizes { arguments += ["--kernel-size", size] }
        if outputDirectory != nil { arguments.append("--lenient-options") }
        return arguments
    }

    /// `--kernel-size conv1=3x1` as ["conv1": [3, 1]].
    func parsedKernelSizes() throws -> [String: [Int]] { try KernelSizeOption.parse(kernelSizes) }


    /// The format options, read once for every job.
    func formatOptions() throws(FormatError) -> FormatOptions {
        var options = FormatOptions()
        options.fold = FoldOptions(verify: !noVerify, tolerance: tolerance)
        options.fold.foldSeparable = foldSeparable
        options.fuseBatchNorm = fuseBatchNorm
        options.reparameterize = reparameterize
        options.keepNames = keepNames
        options.paramsFile = paramsFile
        options.kernelSizes = (try? parsedKernelSizes()) ?? [:] // validated by validate()
        if let configFile { try options.readConfig(file: configFile) }
        return options
    }

    func run() throws {
        let options: FormatOptions
        do { options = try formatOptions() } catch {
            Self.printError("doconv-fold: error: \(error)")
            throw ExitCode(2)
        }
        let jobs: [(input: String, output: String)]
        if let outputDirectory {
            // One line for the folder, rather than the same write error for every input.
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: outputDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                let problem = FileManager.default.fileExists(atPath: outputDirectory) ? "is not a folder" : "does not exist"
                Self.printError("doconv-fold: error: \(outputDirectory): the output folder \(problem); nothing written")
                throw ExitCode(2)
            }
            jobs = paths.map { ($0, (outputDirectory as NSString).appendingPathComponent(($0 as NSString).lastPathComponent)) }
        } else {
            jobs = [(paths[0], paths[1])]
        }
        var worst: Int32 = 0
        for (k, job) in jobs.enumerated() {
            let progress = jobs.count > 1 ? "[\(k + 1)/\(jobs.count)] " : progressPrefix
            worst = max(worst, run(job, options: options, progress: progress))
        }
        if worst != 0 { throw ExitCode(worst) }
    }

    /// One input: its format by content, the options checked against it, then the fold, in
    /// a child process when the format's reader needs one.
    private func run(_ job: (input: String, output: String), options given: FormatOptions, progress: String) -> Int32 {
        let format: any ModelFormat
        var options = given
        do {
            format = try FormatRegistry.format(of: job.input)
            if outputDirectory != nil || lenientOptions {
                options.dropOptions(notReadBy: format)
            } else {
                try options.check(appliesTo: format, path: job.input)
            }
        } catch {
            Self.printError("doconv-fold: error: \(error)")
            return 2
        }
        if format.runsInChildProcess && !IsolatedRun.isChild {
            return IsolatedRun.run(tool: "doconv-fold", arguments: childArguments(input: job.input, output: job.output, progress: progress),
                                   inputs: [job.input], output: job.output)
        }
        return FoldJob(input: job.input, output: job.output, format: format, options: options).run(quiet: quiet, prefix: progress)
    }
}
