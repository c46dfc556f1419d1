import DOConvGraph
import DOConvKeras
import DOConvVerify

/// Keras's side of verify-equivalence.
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
