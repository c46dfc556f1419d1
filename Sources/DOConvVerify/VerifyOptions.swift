import DOConvCore

/// Options of a verification.
public struct VerifyOptions: Sendable {
    /// Largest accepted relative error; nil uses each element type's default (1e-5 for
    /// float32, 1e-10 for float64, 5e-3 for float16, 3e-2 for bfloat16).
    public var tolerance: Double?
    /// Seeded random inputs run end to end (0 skips the end-to-end comparison).
    public var inputs = 3
    public var seed: UInt64 = 0
    /// Sizes of symbolic input dims by name (`--dim batch=2`).
    public var dims: [String: Int] = [:]
    /// Random patches per layer probe.
    public var probePatches = 4
    /// Keras: the model's JSON (`model.to_json()`), for weight files that carry no config.
    public var kerasConfigJSON: String?
    /// The layers the fold was told to take (`--only`, `--exclude`).
    public var selection = LayerSelection()
    /// PyTorch: refuse pickled Python objects (`--strict-pickle`).
    public var strictPickle = false
    /// Kernel sizes by layer (`--kernel-size P=MxN`), where M*N alone leaves them open.
    public var kernelSizes: [String: [Int]] = [:]
    /// MXNet: ORIGINAL's params file, when several sit beside its symbol (`--params`).
    public var paramsFile: String?
    /// FOLDED is the plain model `doconv-expand` started from (`verify-equivalence PLAIN
    /// EXPANDED`, checked as EXPANDED folded back into PLAIN): state only PLAIN holds (the
    /// optimizer's, which the expansion drops) is no difference.
    public var expandedPair = false

    public init() {}
}
