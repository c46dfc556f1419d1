import DOConvFormats

/// A format whose folded pairs verify-equivalence can check: the verification side of the
/// format seam (kept here so that the fold and inspect tools do not carry the checks and
/// the reference executor).
public protocol VerifiableFormat: ModelFormat {
    /// Checks, independently of the fold's code, that FOLDED computes what ORIGINAL does.
    func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport
}

extension ONNXFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try EquivalenceVerifier.verifyONNX(original: original, folded: folded, options: options)
    }
}

extension KerasHDF5Format: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verify(original: original, folded: folded, options: options)
    }
}

extension KerasArchiveFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verifyArchives(original: original, folded: folded, options: options)
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
