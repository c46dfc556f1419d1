import ArgumentParser
import DOConvCore

/// The options all three tools take alike, whatever the format: which layers to fold
/// (`--exclude`, `--only`), declared once so that the tools cannot drift apart.
public struct LayerPickOptions: ParsableArguments {
    @Option(name: .customLong("exclude"), help: ArgumentHelp("Leave the layers whose name matches this glob unfolded (repeatable; * also crosses dots and slashes).", valueName: "glob"))
    public var excluded: [String] = []

    @Option(name: .customLong("only"), help: ArgumentHelp("Fold only the layers whose name matches one of these globs (repeatable).", valueName: "glob"))
    public var only: [String] = []

    public init() {}

    /// The picks as the format adapters take them.
    public var selection: LayerSelection { LayerSelection(only: only, exclude: excluded) }

    /// The same options as command-line arguments (for a child process), each value joined
    /// to its flag: a glob that begins with '-' is still a glob.
    public var arguments: [String] {
        excluded.map { "--exclude=\($0)" } + only.map { "--only=\($0)" }
    }
}
