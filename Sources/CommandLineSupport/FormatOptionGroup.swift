import ArgumentParser
import DOConvCore
import DOConvFormats

/// Names the tool a `FormatOptionGroup` belongs to.
public protocol ToolIdentity {
    static var tool: Tool { get }
}

public enum FoldTool: ToolIdentity { public static let tool = Tool.fold }
public enum InspectTool: ToolIdentity { public static let tool = Tool.inspect }
public enum VerifyTool: ToolIdentity { public static let tool = Tool.verify }

/// The format options, declared for all three tools at once from `FormatOption`'s
/// declarations: their names, values and help, which tools read them (the others hide
/// them and refuse them), and which formats (from the registry). Command files name no
/// format and no format option.
public struct FormatOptionGroup<Tool: ToolIdentity>: ParsableArguments {
    @Option(name: .customLong(FormatOption.config.longName), help: Self.help(.config))
    public var configFile: String?

    @Option(name: .customLong(FormatOption.kernelSize.longName), help: Self.help(.kernelSize))
    public var kernelSizes: [String] = []

    @Option(name: .customLong(FormatOption.params.longName), help: Self.help(.params))
    public var paramsFile: String?

    @Flag(name: .customLong(FormatOption.fuseBatchNorm.longName), help: Self.help(.fuseBatchNorm))
    public var fuseBatchNorm = false

    @Flag(name: .customLong(FormatOption.foldSeparable.longName), help: Self.help(.foldSeparable))
    public var foldSeparable = false

    @Flag(name: .customLong(FormatOption.reparameterize.longName), help: Self.help(.reparameterize))
    public var reparameterize = false

    @Flag(name: .customLong(FormatOption.keepNames.longName), help: Self.help(.keepNames))
    public var keepNames = false

    @Flag(name: .customLong(FormatOption.strictPickle.longName), help: Self.help(.strictPickle))
    public var strictPickle = false

    @Flag(name: .customLong(FormatOption.allowPartial.longName), help: Self.help(.allowPartial))
    public var allowPartial = false

    @Flag(name: .customLong(FormatOption.keepGrouped.longName), help: Self.help(.keepGrouped))
    public var keepGrouped = false

    public init() {}

    /// An option's help for this tool, hidden where the tool does not read it.
    static func help(_ option: FormatOption) -> ArgumentHelp {
        ArgumentHelp(option.help(for: Tool.tool), valueName: option.valueName,
                     visibility: option.tools.contains(Tool.tool) ? .default : .hidden)
    }

    /// The options given on the command line.
    public var given: Set<FormatOption> {
        var given = Set<FormatOption>()
        if configFile != nil { given.insert(.config) }
        if !kernelSizes.isEmpty { given.insert(.kernelSize) }
        if paramsFile != nil { given.insert(.params) }
        if fuseBatchNorm { given.insert(.fuseBatchNorm) }
        if foldSeparable { given.insert(.foldSeparable) }
        if reparameterize { given.insert(.reparameterize) }
        if keepNames { given.insert(.keepNames) }
        if strictPickle { given.insert(.strictPickle) }
        if allowPartial { given.insert(.allowPartial) }
        if keepGrouped { given.insert(.keepGrouped) }
        return given
    }

    public func validate() throws {
        if let option = FormatOption.allCases.first(where: { given.contains($0) && !$0.tools.contains(Tool.tool) }) {
            throw ValidationError("\(option.rawValue) does not apply to \(Tool.tool.rawValue)")
        }
        _ = try KernelSizeOption.parse(kernelSizes)
    }

    /// The options for the format adapters, the config file read; `fold` carries the
    /// tool's own settings (verification, tolerance, the layer picks).
    public func formatOptions(fold: FoldOptions = FoldOptions()) throws(FormatError) -> FormatOptions {
        var options = FormatOptions()
        options.fold = fold
        options.fold.foldSeparable = foldSeparable
        options.fuseBatchNorm = fuseBatchNorm
        options.reparameterize = reparameterize
        options.keepNames = keepNames
        options.paramsFile = paramsFile
        options.strictPickle = strictPickle
        options.allowPartial = allowPartial
        options.keepGrouped = keepGrouped
        do { options.kernelSizes = try KernelSizeOption.parse(kernelSizes) } catch { throw FormatError("\(error)") }
        if let configFile { try options.readConfig(file: configFile) }
        return options
    }

    /// The same options as command-line arguments (for a child process), each value joined
    /// to its flag (`--config=FILE`): a value that begins with '-' is still a value.
    public var arguments: [String] {
        var arguments: [String] = []
        if let configFile { arguments.append("\(FormatOption.config.rawValue)=\(configFile)") }
        for size in kernelSizes { arguments.append("\(FormatOption.kernelSize.rawValue)=\(size)") }
        if let paramsFile { arguments.append("\(FormatOption.params.rawValue)=\(paramsFile)") }
        let flags: [(Bool, FormatOption)] = [(fuseBatchNorm, .fuseBatchNorm), (foldSeparable, .foldSeparable), (reparameterize, .reparameterize),
                                             (keepNames, .keepNames), (strictPickle, .strictPickle), (allowPartial, .allowPartial),
                                             (keepGrouped, .keepGrouped)]
        arguments += flags.filter(\.0).map(\.1.rawValue)
        return arguments
    }
}

/// What the tools read, for their help: each registered format's summary.
public enum FormatList {
    public static var summaries: String {
        FormatRegistry.formats.map(\.summary).joined(separator: "; ")
    }
}
