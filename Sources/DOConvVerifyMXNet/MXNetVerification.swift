import DOConvMXNet
import DOConvVerify

/// MXNet's side of verify-equivalence.
extension MXNetFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try MXNetEquivalence.verify(original: original, folded: folded, options: options)
    }
}
