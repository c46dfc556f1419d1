import DOConvFileIO
import ArgumentParser
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Runs the `doconv` executable: the tool its subcommand names (`doconv fold ...`), or the
/// tool whose name it was run under (`doconv-fold ...`, through a link or a console script
/// that sets argv[0]), with the same flags, output and exit status either way.
public enum ToolDispatch {
    /// The name the executable was run under: argv[0]'s last path component.
    public static func invokedName(_ argv: [String]) -> String {
        guard let first = argv.first else { return "" }
        return first.split(separator: "/").last.map(String.init) ?? first
    }

    /// The arguments `root` parses and the tool they select (nil for the root's own
    /// `--help`, `--version` or an unknown subcommand). Run under a tool's name, the tool's
    /// subcommand is put in front, so `doconv-fold a b` parses as `doconv fold a b`.
    static func resolve(_ argv: [String], tools: [any ToolCommand.Type]) -> (arguments: [String], tool: (any ToolCommand.Type)?, alias: Bool) {
        var arguments = Array(argv.dropFirst())
        let name = invokedName(argv)
        if let tool = tools.first(where: { $0.toolName == name }) {
            arguments.insert(tool.subcommandName, at: 0)
            return (arguments, tool, true)
        }
        return (arguments, tools.first { $0.subcommandName == arguments.first }, false)
    }

    /// Parses the command line against `root` (whose subcommands are `tools`) and runs the
    /// selected tool; exits with its status.
    public static func main<Root: ParsableCommand>(root: Root.Type, tools: [any ToolCommand.Type]) -> Never {
        // A test hook: a child that dies as a failed runtime check of ours would (SIGILL).
        if IsolatedRun.isChild, ProcessInfo.processInfo.environment["DOCONV_TEST_CHILD_TRAP"] == "1" {
            kill(getpid(), SIGILL)
        }
        // A test hook: a child that never finishes (a library looping on a hostile file).
        if IsolatedRun.isChild, ProcessInfo.processInfo.environment["DOCONV_TEST_CHILD_HANG"] == "1" {
            while true { sleep(60) }
        }
        let (arguments, tool, alias) = resolve(CommandLine.arguments, tools: tools)
        do {
            var command = try root.parseAsRoot(arguments)
            try command.run()
            exit(0)
        } catch {
            let code = root.exitCode(for: error)
            if code == .success || error is ExitCode { root.exit(withError: error) }
            let name = tool?.toolName ?? root.configuration.commandName ?? "doconv"
            let help = tool.map { alias ? "\($0.toolName) --help" : "doconv \($0.subcommandName) --help" } ?? "doconv --help"
            let message = root.message(for: error).split(separator: "\n").first ?? ""
            StandardStreams.error("\(name): error: \(message)\nUsage: see '\(help)'\n")
            exit(2)
        }
    }
}
