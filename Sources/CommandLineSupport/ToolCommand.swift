import DOConvFileIO
import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// One of doconv's tools: a subcommand of the `doconv` executable (`doconv fold`), also run
/// under its own name (`doconv-fold`, a link to the same executable). Usage errors exit with
/// 2, like bad input, rather than with ArgumentParser's 64, and every error is one line on
/// standard error beginning with the tool's name.
public protocol ToolCommand: ParsableCommand {
    /// The tool's own name (`doconv-fold`): the name it also runs under, the start of its
    /// error lines and the `tool` of its JSON documents.
    static var toolName: String { get }
}

extension ToolCommand {
    /// The subcommand that runs this tool (`fold`).
    public static var subcommandName: String { configuration.commandName ?? toolName }

    /// This tool's own arguments: the command line without the program and, when run as
    /// `doconv SUBCOMMAND`, without the subcommand.
    public static var ownArguments: [String] {
        let argv = CommandLine.arguments
        return Array(argv.dropFirst(ToolDispatch.invokedName(argv) == toolName ? 1 : 2))
    }

    /// Writes one line to standard error.
    public static func printError(_ line: String) {
        StandardStreams.error(line + "\n")
    }
}

/// `--kernel-size LAYER=MxN` values (repeatable), as a layer -> [M, N] map.
public enum KernelSizeOption {
    /// The largest kernel side accepted.
    public static let largestSide = 1 << 16

    public static func parse(_ items: [String]) throws -> [String: [Int]] {
        var sizes: [String: [Int]] = [:]
        for item in items {
            guard let equals = item.lastIndex(of: "="), equals != item.startIndex else {
                throw ValidationError("--kernel-size expects LAYER=MxN, got '\(item)'")
            }
            let dims = item[item.index(after: equals)...].lowercased().split(separator: "x").compactMap { Int($0) }
            guard dims.count == 2, dims.allSatisfy({ $0 > 0 }) else { throw ValidationError("--kernel-size expects LAYER=MxN, got '\(item)'") }
            // No kernel is that large; the bound keeps M*N and everything sized by it in range.
            guard dims.allSatisfy({ $0 <= Self.largestSide }) else {
                throw ValidationError("--kernel-size \(item): a side over \(Self.largestSide) is not a kernel size")
            }
            sizes[String(item[..<equals])] = dims
        }
        return sizes
    }
}
