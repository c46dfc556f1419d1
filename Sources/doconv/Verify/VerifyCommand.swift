import DOConvFileIO
import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import DOConvVerify
import DOConvVerifyKeras
import DOConvVerifyMXNet
import DOConvVerifyONNX
import DOConvVerifyPyTorch
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

struct VerifyCommand: ToolCommand {
    static let toolName = "verify-equivalence"

    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check that a folded model computes what the DO-Conv original computes, independently of the fold.",
        discussion: """
        Three checks: 1. structure: FOLDED holds everything ORIGINAL holds, unchanged, except each DO-Conv layer (or depthwise + 1x1 pair, or fused BatchNormalization) replaced by one conv with constant weights; 2. each folded kernel against a float64 recomputation from ORIGINAL's D and W, read by verify-equivalence itself with the flags alone (the format options, --exclude and --only, as given to doconv-fold), and a probe of the layer both ways; 3. both models run by a reference executor on seeded random inputs, every output compared.

        By format: \(FormatRegistry.formats.compactMap { $0 as? any VerifiableFormat }.map { "\($0.displayName): \($0.checks)" }.joined(separator: "; ")).

        --json prints the report as one JSON document on standard output instead (schemas/verify-result.schema.json): every section's findings with its numbers, the first disagreement, and the verdict. Bad input still ends with one error line on standard error and no document.

        Exit status: 0 equivalent, 1 not equivalent, 2 bad input or usage.
        """,
        version: DOConvVersion.string)

    @Argument(help: ArgumentHelp("The model before folding.", valueName: "original"))
    var original: String

    @Argument(help: ArgumentHelp("The folded model.", valueName: "folded"))
    var folded: String?

    @Option(help: "Largest accepted relative error (default: 1e-5 for float32, 1e-10 for float64, 5e-3 for float16, 3e-2 for bfloat16).")
    var tolerance: Double?

    @Option(help: "Seeded random inputs to run end to end (0: skip).")
    var inputs = 3

    @Option(help: "Seed of the random inputs and probes.")
    var seed: UInt64 = 0

    @Option(name: .customLong("dim"), help: ArgumentHelp("Size of a symbolic input dim (repeatable); batch-like dims default to 1.", valueName: "name=value"))
    var dims: [String] = []

    @Flag(help: "Print the report as one JSON document instead of the text.")
    var json = false

    @OptionGroup var formats: FormatOptionGroup<VerifyTool>

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
        options.selection = picks.selection
        do {
            let given: FormatOptions
            do { given = try formats.formatOptions() } catch { throw VerifyError("\(error)") }
            options.kernelSizes = given.kernelSizes
            options.paramsFile = given.paramsFile
            options.strictPickle = given.strictPickle
            options.kerasConfigJSON = given.configJSON
            if let dumpOutputs {
                // Test hook: ORIGINAL alone, run by its format's converter on given inputs.
                let feeds = try inputJSON.map { (path) throws(VerifyError) in try TensorJSON.read(path: path) } ?? [:]
                let format = try formatOf(original)
                try check(given, appliesTo: format)
                guard let runnable = format as? any VerifiableFormat else { throw VerifyError("\(original): verify-equivalence does not run \(format.displayName) files") }
                try TensorJSON.write(try runnable.run(model: original, feeds: feeds, options: options), to: dumpOutputs)
                return
            }
            let folded = folded ?? ""
            let format = try formatOfPair(original: original, folded: folded)
            try check(given, appliesTo: format)
            // A reader that may crash or loop on a hostile file (libhdf5) runs in a child process.
            if format.runsInChildProcess && !IsolatedRun.isChild {
                throw ExitCode(IsolatedRun.run(Self.self, arguments: Self.ownArguments, inputs: [original, folded]))
            }
            guard let verifiable = format as? any VerifiableFormat else { throw VerifyError("\(original): verify-equivalence does not check \(format.displayName) files") }
            let report = try verifiable.expansionPair(original: original, folded: folded, options: options)
                ?? verifiable.verify(original: original, folded: folded, options: options)
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
            StandardStreams.error("verify-equivalence: error: \(error.message)\n")
            throw ExitCode(2)
        }
    }

    /// Refuses an option that `format` does not read.
    private func check(_ given: FormatOptions, appliesTo format: any ModelFormat) throws(VerifyError) {
        do { try given.check(appliesTo: format, path: original) } catch { throw VerifyError("\(error)") }
    }

    private func formatOf(_ path: String) throws(VerifyError) -> any ModelFormat {
        do { return try FormatRegistry.format(of: path) } catch { throw VerifyError("\(error)") }
    }

    /// ORIGINAL's format, by content; FOLDED must be in the format its folds are written in.
    private func formatOfPair(original: String, folded: String) throws(VerifyError) -> any ModelFormat {
        do {
            let formats = (try FormatRegistry.format(of: original), try FormatRegistry.format(of: folded))
            guard ((formats.0 as? any VerifiableFormat)?.foldedFormatNames ?? [formats.0.name]).contains(formats.1.name) else {
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
