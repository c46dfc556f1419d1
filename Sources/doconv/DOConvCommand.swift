import ArgumentParser
import CommandLineSupport

/// The `doconv` executable: every tool as a subcommand, and each tool also under its own
/// name (`doconv-fold`, `doconv-inspect`, `verify-equivalence`, `doconv-expand` are links to
/// this executable), so that one binary carries the Swift runtime once.
@main
struct DOConvCommand: ParsableCommand {
    static let tools: [any ToolCommand.Type] = [FoldCommand.self, InspectCommand.self, VerifyCommand.self, ExpandCommand.self]

    static let configuration = CommandConfiguration(
        commandName: "doconv",
        abstract: "Fold DO-Conv layers into plain convolutions, inspect them, verify the result, and expand plain weights for DO-Conv training.",
        discussion: """
        Each tool also runs under its own name, with the same flags, output and exit status:
        doconv-fold = doconv fold, doconv-inspect = doconv inspect,
        verify-equivalence = doconv verify, doconv-expand = doconv expand.
        """,
        version: DOConvVersion.string,
        subcommands: tools.map { $0 as any ParsableCommand.Type })

    static func main() {
        ToolDispatch.main(root: Self.self, tools: tools)
    }
}
