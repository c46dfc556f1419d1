import ArgumentParser

/// The options all three tools take alike: which layers to fold (`--exclude`, `--only`)
/// and whether pickled Python objects are refused (`--strict-pickle`), declared once so
/// that the tools cannot drift apart.
public struct LayerPickOptions: ParsableArguments {
    @Option(name: .customLong("exclude"), help: ArgumentHelp("Leave the layers whose name matches this glob unfolded (repeatable; * also crosses dots and slashes).", valueName: "glob"))
    public var excluded: [String] = []

    @Option(name: .customLong("only"), help: ArgumentHelp("Fold only the layers whose name matches one of these globs (repeatable).", valueName: "glob"))
    public var only: [String] = []

    @Flag(name: .customLong("strict-pickle"), help: "PyTorch: refuse checkpoints that pickle Python objects (as torch.load(weights_only=True) does) instead of carrying them through unexecuted.")
    public var strictPickle = false

    public init() {}

    /// The same options as command-line arguments (for a child process).
    public var arguments: [String] {
        excluded.flatMap { ["--exclude", $0] } + only.flatMap { ["--only", $0] } + (strictPickle ? ["--strict-pickle"] : [])
    }
}
