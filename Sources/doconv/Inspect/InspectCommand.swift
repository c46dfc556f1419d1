import DOConvFileIO
import ArgumentParser
import CommandLineSupport
import DOConvCore
import DOConvFormats
import DOConvInspect
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

struct InspectCommand: ToolCommand {
    static let toolName = "doconv-inspect"

    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Describe the DO-Conv layers of a model and what folding them would change.",
        discussion: """
        Prints one row per DO-Conv layer in graph order: kind, form, Cin -> Cout, kernel M x N, stride, dilation, groups, Dmul, parameters as trained (D and W) -> folded, and |D-I|/|I| = ||D - I||_F / ||I||_F, how far the D the layer composes is from the identity offset I. Then totals, and the layers that looked like DO-Conv but would not be folded, with the reason.

        H map (the paper's Figure 6): H[m,n] = sum over output channels o and input channels c of |W'[o,c,m,n] - W[o,c,m,n]|, where W' is the layer's folded kernel and W the kernel the same W gives with D = I (the trained part of D all zeros). It shows where D moved the kernel: all zero when D = I and for 1x1 layers (no D).

        MACs are per output position (Cout x Cin/g x M x N): weight files carry no feature-map sizes. Folding leaves them unchanged for kernel composition; a feature-composition pair (depthwise conv, then 1x1 conv) runs Cin x Dmul x M x N + Cout x Cin/g x Dmul before folding.

        Models, told apart by their content: \(FormatList.summaries). --exclude and --only list the layers they leave under "not folded". The JSON document follows schemas/inspect-report.schema.json.

        Exit status: 0 success (also when the model has no DO-Conv layer), 2 bad input or usage.
        """,
        version: DOConvVersion.string)

    @Argument(help: ArgumentHelp("The model to inspect.", valueName: "model"))
    var model: String

    @Flag(help: "Print the report as one JSON document instead of the table.")
    var json = false

    @Option(name: .customLong("svg"), help: ArgumentHelp("Write every layer's H map into this SVG file.", valueName: "file"))
    var svgFile: String?

    @Flag(help: "Print each layer's H map as text under its row (the JSON document always has them, as h_map).")
    var maps = false

    @OptionGroup var formats: FormatOptionGroup<InspectTool>

    @OptionGroup var picks: LayerPickOptions

    static func printError(_ line: String) {
        StandardStreams.error("doconv-inspect: error: \(line)\n")
    }

    func run() throws {
        var fold = FoldOptions()
        fold.selection = picks.selection
        let options: FormatOptions
        let format: any ModelFormat
        do {
            options = try formats.formatOptions(fold: fold)
            format = try FormatRegistry.format(of: model)
            try options.check(appliesTo: format, path: model)
        } catch {
            Self.printError("\(error)")
            throw ExitCode(2)
        }
        // A reader that may crash or loop on a hostile file (libhdf5) runs in a child process.
        if format.runsInChildProcess && !IsolatedRun.isChild {
            throw ExitCode(IsolatedRun.run(Self.self, arguments: Self.ownArguments, inputs: [model]))
        }
        let report: InspectReport
        do {
            report = InspectReport(model: model, format: format.name, detection: try format.detect(path: model, options: options))
        } catch {
            Self.printError("\(error)")
            throw ExitCode(2)
        }
        if let svgFile {
            do {
                let file = try AtomicFileWriter(destination: svgFile)
                file.write(Array(SVGReport.render(report).utf8))
                try file.commit()
            } catch {
                Self.printError("\(svgFile): cannot write the SVG (\(error.reason))")
                throw ExitCode(2)
            }
        }
        if json {
            print(try JSONReport.render(report), terminator: "")
        } else {
            print(TextReport.render(report, maps: maps, formatName: format.displayName), terminator: "")
        }
    }
}
