import DOConvPyTorch
import DOConvVerify

/// The checkpoint formats' side of verify-equivalence.
extension PyTorchFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }

    public func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        try CheckpointEquivalence.verifyExpansion(plain: original, expanded: folded, options: options, format: displayName)
    }
}

extension SafetensorsFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }

    public func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        try CheckpointEquivalence.verifyExpansion(plain: original, expanded: folded, options: options, format: displayName)
    }
}

extension ShardedCheckpointFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try CheckpointEquivalence.verify(original: original, folded: folded, options: options, format: displayName)
    }

    public func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        try CheckpointEquivalence.verifyExpansion(plain: original, expanded: folded, options: options, format: displayName)
    }
}
