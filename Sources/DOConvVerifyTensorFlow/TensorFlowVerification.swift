import DOConvKeras
import DOConvTensorFlow
import DOConvVerify

/// TensorFlow checkpoints' side of verify-equivalence.
extension TensorFlowCheckpointFormat: VerifiableFormat {
    public var checks: String { "1 and 2 (weights only: no graph to run)" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try TensorFlowCheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}

/// A SavedModel folds into a checkpoint (its `variables/variables` is ORIGINAL) or, from a
/// tf_keras `model.save`, into a Keras full model (`.h5`), checked end to end.
extension TensorFlowSavedModelFormat: VerifiableFormat {
    public var checks: String { "1 and 2 on its variables checkpoint; 1, 2 and 3 against a Keras .h5" }
    public var foldedFormatNames: [String] { [TensorFlowCheckpointFormat().name, KerasHDF5Format().name] }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        if SavedModelKerasEquivalence.isHDF5(folded) {
            return try SavedModelKerasEquivalence.verify(savedModel: original, folded: folded, options: options, format: displayName)
        }
        let variables: String
        do { variables = try Self.variables(of: original) } catch { throw VerifyError("\(error)") }
        var report = try TensorFlowCheckpointEquivalence.verify(original: variables, folded: folded, options: options, format: displayName)
        report.original = original
        return report
    }
}
