import DOConvTensorFlow
import DOConvVerify

/// TensorFlow checkpoints' side of verify-equivalence.
extension TensorFlowCheckpointFormat: VerifiableFormat {
    public var checks: String { "1 and 2 (weights only: no graph to run)" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try TensorFlowCheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}

/// A SavedModel folds into a checkpoint: its `variables/variables` is ORIGINAL.
extension TensorFlowSavedModelFormat: VerifiableFormat {
    public var checks: String { "1 and 2, on its variables checkpoint (weights only: no graph to run)" }
    public var foldedFormatName: String { TensorFlowCheckpointFormat().name }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        let variables: String
        do { variables = try Self.variables(of: original) } catch { throw VerifyError("\(error)") }
        var report = try TensorFlowCheckpointEquivalence.verify(original: variables, folded: folded, options: options, format: displayName)
        report.original = original
        return report
    }
}
