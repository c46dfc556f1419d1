import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvKeras
import DOConvONNX
import Foundation

@main
struct FoldCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "doconv-fold",
        abstract: "Fold DO-Conv layers into plain Conv kernels, verify every layer, and write the model.",
        discussion: """
        doconv-fold INPUT OUTPUT          fold one model (OUTPUT may be INPUT)
        doconv-fold IN... -o DIR          fold many models into DIR

        Models: ONNX (.onnx, with external data); Keras HDF5 (.h5: Keras 2 and 3 full models and
        weights; Keras 3 .weights.h5 with --config); Keras 3 .keras archives.

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

    @Flag(name: .customLong("fuse-bn"), help: "ONNX: also fold each inference-mode BatchNormalization into the Conv before it.")
    var fuseBatchNorm = false

    @Flag(name: .customLong("fold-separable"), help: "Also fold depthwise + 1x1 pairs and Keras SeparableConv2D with Dmul < M*N (raises their MACs).")
    var foldSeparable = false

    @Option(name: .customLong("progress-prefix"), help: .hidden)
    var progressPrefix = ""

    @Option(name: .customLong("config"), help: ArgumentHelp("Keras: the model's JSON (model.to_json()), for files that carry no config.", valueName: "file"))
    var configFile: String?

    @Option(name: .customLong("kernel-size"), help: ArgumentHelp("Keras: a layer's kernel size when nothing else gives it (repeatable).", valueName: "layer=MxN"))
    var kernelSizes: [String] = []

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
        if foldSeparable { arguments.append("--fold-separable") }
        if let configFile { arguments += ["--config", configFile] }
        for size in kernelSizes { arguments += ["--kernel-size", size] }
        return arguments
    }

    /// `--kernel-size conv1=3x1` as ["conv1": [3, 1]].
    func parsedKernelSizes() throws -> [String: [Int]] { try KernelSizeOption.parse(kernelSizes) }


    func run() throws {
        var options = FoldOptions(verify: !noVerify, tolerance: tolerance)
        options.fuseBatchNorm = fuseBatchNorm
        options.foldSeparable = foldSeparable
        let keras: KerasFoldOptions
        do {
            keras = try KerasFoldOptions(configFile: configFile, kernelSizes: parsedKernelSizes())
        } catch let error as KerasError {
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
            let status: Int32
            if IsolatedRun.readsHDF5(job.input) && !IsolatedRun.isChild {
                status = IsolatedRun.run(tool: "doconv-fold", arguments: childArguments(input: job.input, output: job.output, progress: progress),
                                         inputs: [job.input], output: job.output)
            } else {
                status = FoldJob(input: job.input, output: job.output, options: options, keras: keras).run(quiet: quiet, prefix: progress)
            }
            worst = max(worst, status)
        }
        if worst != 0 { throw ExitCode(worst) }
    }
}
