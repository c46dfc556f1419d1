import DOConvTensorFlow
import DOConvVerify

/// TensorFlow checkpoints' side of verify-equivalence.
extension TensorFlowCheckpointFormat: VerifiableFormat {
    public var checks: String { "1 and 2 (weights only: no graph to run)" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try TensorFlowCheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }
}
