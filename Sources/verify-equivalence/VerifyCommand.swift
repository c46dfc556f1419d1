import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import DOConvVerify
import Foundation

@main
struct VerifyCommand: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-equivalence",
        abstract: "Check that a folded model computes what the DO-Conv original computes, independently of the fold.",
        discussion: """
        ONNX: 1. structure: every node, initializer, input and output of FOLDED matches ORIGINAL, except DO-Conv kernel computations (or depthwise + 1x1 pairs, or fused BatchNormalization) replaced by one Conv with constant weights; 2. each folded kernel against a float64 recomputation from D and W, and a probe of the layer both ways; 3. both models run by a reference executor on seeded random inputs, every output compared.

        Keras (.h5, .weights.h5 with --config, .keras): 1 and 2 (the same datasets except D removed and kernels reshaped).

        PyTorch checkpoints (zip, legacy, .safetensors, sharded) and MXNet .params files and export pairs: 1 and 2, with the DO-Conv layers read from ORIGINAL and the flags alone (--kernel-size, --params, --exclude, --only, as given to doconv-fold).

        --json prints the report as one JSON document on standard output instead (schemas/verify-result.schema.json): every section's findings with its numbers, the first disagreement, and the verdict. Bad input still ends with one error line on standard error and no document.

        Exit status: 0 equivalent, 1 not equivalent, 2 bad input or usage.
        """,
        version: DOConvVersion.string)

    @Argument(help: ArgumentHelp("The model before folding.", valueName: "original"))
    var original: String

    @Argument(help: ArgumentHelp("The folded model.", valueName: "folded"))
    var folded: String?

    @Option(help: "Largest accepted relative error (default: 1e-5 for float32/float64, 5e-3 for float16, 3e-2 for bfloat16).")
    var tolerance: Double?

    @Option(help: "Seeded random inputs to run end to end (0: skip).")
    var inputs = 3

    @Option(help: "Seed of the random inputs and probes.")
    var seed: UInt64 = 0

    @Option(name: .customLong("dim"), help: ArgumentHelp("Size of a symbolic input dim (repeatable); batch-like dims default to 1.", valueName: "name=value"))
    var dims: [String] = []

    @Option(name: .customLong("config"), help: ArgumentHelp("Keras: the model's JSON (model.to_json()), for weight files that carry no config.", valueName: "file"))
    var configFile: String?

    @Option(name: .customLong("kernel-size"), help: ArgumentHelp("Keras and PyTorch: a layer's kernel size when nothing else gives it, as given to doconv-fold (repeatable).", valueName: "layer=MxN"))
    var kernelSizes: [String] = []

    @Option(name: .customLong("params"), help: ArgumentHelp("MXNet: ORIGINAL's params file, when several NAME-NNNN.params sit beside NAME-symbol.json (FOLDED's of the same epoch is used).", valueName: "file"))
    var paramsFile: String?

    @Flag(help: "Print the report as one JSON document instead of the text.")
    var json = false

    @OptionGroup var picks: LayerPickOptions




    // Test hooks: run ORIGINAL alone on given inputs and write its outputs.
    @Option(name: .customLong("input-json"), help: .hidden)
    var inputJSON: String?

    @Option(name: .customLong("dump-outputs"), help: .hidden)
    var dumpOutputs: String?

    func validate() throws {
        if let tolerance, !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if inputs < 0 { throw ValidationError("--inputs must not be negative") }
        if folded == nil, dumpOutputs == nil { throw ValidationError("expected ORIGINAL FOLDED") }
        _ = try parsedDims()
        _ = try KernelSizeOption.parse(kernelSizes)
    }

    func parsedDims() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for item in dims {
            guard let equals = item.lastIndex(of: "="), let value = Int(item[item.index(after: equals)...]), value > 0,
                  equals != item.startIndex else {
                throw ValidationError("--dim expects NAME=VALUE with a positive VALUE, got '\(item)'")
            }
            result[String(item[..<equals])] = value
        }
        return result
    }


    func run() throws {
        var options = VerifyOptions()
        options.tolerance = tolerance
        options.inputs = inputs
        options.seed = seed
        options.dims = try parsedDims()
        options.selection = LayerSelection(only: picks.only, exclude: picks.excluded)
        options.kernelSizes = try KernelSizeOption.parse(kernelSizes)
        options.paramsFile = paramsFile
        options.strictPickle = picks.strictPickle
        do {
            if let dumpOutputs {
                let feeds = try inputJSON.map { (path) throws(VerifyError) in try TensorJSON.read(path: path) } ?? [:]
                // Keras files run through the Keras model converter (with --config for weights-only files).
                if [".h5", ".keras"].contains(where: original.lowercased().hasSuffix) {
                    let config = try configFile.map { (file) throws(VerifyError) -> String in
                        guard let json = try? String(contentsOfFile: file, encoding: .utf8) else { throw VerifyError("\(file): cannot read the model config") }
                        return json
                    }
                    try TensorJSON.write(try KerasEquivalence.run(model: original, configJSON: config, feeds: feeds, options: options), to: dumpOutputs)
                    return
                }
                if let configFile { throw VerifyError("\(configFile): --config does not apply to --dump-outputs") }
                try TensorJSON.write(try EquivalenceVerifier.run(model: original, feeds: feeds, options: options), to: dumpOutputs)
                return
            }
            let folded = folded ?? ""
            let format = try formatOfPair(original: original, folded: folded)
            // A reader that may crash or loop on a hostile file (libhdf5) runs in a child process.
            if format.runsInChildProcess && !IsolatedRun.isChild {
                throw ExitCode(IsolatedRun.run(tool: "verify-equivalence", arguments: Array(CommandLine.arguments.dropFirst()), inputs: [original, folded]))
            }
            if let configFile {
                guard format.options.contains(.config) else { throw VerifyError("\(original): --config does not apply to \(format.displayName) files") }
                guard let json = try? String(contentsOfFile: configFile, encoding: .utf8) else { throw VerifyError("\(configFile): cannot read the model config") }
                options.kerasConfigJSON = json
            }
            guard let verifiable = format as? any VerifiableFormat else { throw VerifyError("\(original): verify-equivalence does not check \(format.displayName) files") }
            let report = try verifiable.verify(original: original, folded: folded, options: options)
            if json {
                guard let document = try? report.json(formatName: format.name, version: DOConvVersion.string) else {
                    throw VerifyError("cannot encode the report as JSON")
                }
                print(document, terminator: "")
            } else {
                print(report.render())
            }
            if !report.equivalent { throw ExitCode(1) }
        } catch let error as VerifyError {
            FileHandle.standardError.write(Data("verify-equivalence: error: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
    }

    /// The one format both files are in, by content.
    private func formatOfPair(original: String, folded: String) throws(VerifyError) -> any ModelFormat {
        do {
            let formats = (try FormatRegistry.format(of: original), try FormatRegistry.format(of: folded))
            guard formats.0.name == formats.1.name else {
                throw VerifyError("\(original) is \(formats.0.displayName) but \(folded) is \(formats.1.displayName)")
            }
            return formats.0
        } catch let error as VerifyError {
            throw error
        } catch {
            throw VerifyError("\(error)")
        }
    }
}
