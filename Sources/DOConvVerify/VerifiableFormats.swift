import DOConvSeam
import DOConvGraph

/// A format whose folded pairs verify-equivalence can check: the verification side of the
/// format seam. Each format conforms in a verification module of its own
/// (DOConvVerifyONNX, ...), so that doconv-fold and doconv-inspect carry neither the checks
/// nor the reference executor.
public protocol VerifiableFormat: ModelFormat {
    /// Checks, independently of the fold's code, that FOLDED computes what ORIGINAL does.
    func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport
    /// Which of verify-equivalence's checks its pairs get, for the help ("1, 2 and 3").
    var checks: String { get }
    /// The names of the formats its folds are written in: its own, but for a SavedModel,
    /// whose fold is a checkpoint or a Keras file.
    var foldedFormatNames: [String] { get }
    /// The pair checked the other way round when it is `doconv-expand`'s (ORIGINAL plain,
    /// FOLDED holding DO-Conv layers: FOLDED must fold back into ORIGINAL); nil when it is
    /// not such a pair, or the format has no expansion.
    func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport?
    /// Runs one model with the reference executor on `feeds` (inputs not given are made as
    /// in the end-to-end check): the oracle tests' `--dump-outputs` hook.
    func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue]
}

extension VerifiableFormat {
    public var checks: String { "1 and 2" }
    public var foldedFormatNames: [String] { [name] }

    public func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport? { nil }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        throw VerifyError("\(model): the reference executor does not run \(displayName) files")
    }
}
