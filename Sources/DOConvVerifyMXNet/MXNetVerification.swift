import DOConvMXNet
import DOConvVerify

/// MXNet's side of verify-equivalence.
extension MXNetFormat: VerifiableFormat {
    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try MXNetEquivalence.verify(original: original, folded: folded, options: options)
    }

    /// doconv-expand's pair (ORIGINAL `.params` without a Gluon DO-Conv layer, FOLDED with
    /// some): FOLDED must fold back into ORIGINAL.
    public func expansionPair(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        let holds: (Bool, Bool)
        do {
            holds = (try !GluonLayerReading.layers(of: try NDArrayList(path: original), options: VerifyOptions()).isEmpty,
                     try !GluonLayerReading.layers(of: try NDArrayList(path: folded), options: VerifyOptions()).isEmpty)
        } catch {
            return nil // not two .params files (an export pair, say): the ordinary check says what is wrong
        }
        guard !holds.0, holds.1 else { return nil }
        var report = try MXNetEquivalence.verify(original: folded, folded: original, options: options)
        report.notes.append("ORIGINAL holds no DO-Conv layer and FOLDED does: checked as doconv-expand's pair, FOLDED folded back into ORIGINAL")
        return report
    }
}
