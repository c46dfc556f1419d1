import DOConvFormats
import DOConvGraph

/// A format whose folded pairs verify-equivalence can check: the verification side of the
/// format seam (kept here so that the fold and inspect tools do not carry the checks and
/// the reference executor).
public protocol VerifiableFormat: ModelFormat {
    /// Checks, independently of the fold's code, that FOLDED computes what ORIGINAL does.
    func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport
    /// Which of verify-equivalence's checks its pairs get, for the help ("1, 2 and 3").
    var checks: String { get }
    /// Runs one model with the reference executor on `feeds` (inputs not given are made as
    /// in the end-to-end check): the oracle tests' `--dump-outputs` hook.
    func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue]
}

extension VerifiableFormat {
    public var checks: String { "1 and 2" }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        throw VerifyError("\(model): the reference executor does not run \(displayName) files")
    }
}

extension ONNXFormat: VerifiableFormat {
    public var checks: String { "1, 2 and 3" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try EquivalenceVerifier.verifyONNX(original: original, folded: folded, options: options)
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try EquivalenceVerifier.run(model: model, feeds: feeds, options: options)
    }
}

extension KerasHDF5Format: VerifiableFormat {
    public var checks: String { "1 and 2, and 3 when a model config is at hand" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verify(original: original, folded: folded, options: options)
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try KerasEquivalence.run(model: model, configJSON: options.kerasConfigJSON, feeds: feeds, options: options)
    }
}

extension KerasArchiveFormat: VerifiableFormat {
    public var checks: String { "1, 2 and 3" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verifyArchives(original: original, folded: folded, options: options)
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try KerasEquivalence.run(model: model, configJSON: options.kerasConfigJSON, feeds: feeds, options: options)
    }
}

extension PyTorchFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}

extension SafetensorsFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}

extension ShardedCheckpointFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}

extension MXNetFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try MXNetEquivalence.verify(original: original, folded: folded, options: options)
    }
}

/// The verifiable formats, for the help: each with the checks its pairs get.
public enum VerifiableFormats {
    public static var checksByFormat: String {
        FormatRegistry.formats.compactMap { $0 as? any VerifiableFormat }.map { "\($0.displayName): \($0.checks)" }.joined(separator: "; ")
    }
}
