import DOConvGraph
import DOConvONNX
import DOConvVerify

/// ONNX's side of verify-equivalence.
extension ONNXFormat: VerifiableFormat {
    public var checks: String { "1, 2 and 3" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try EquivalenceVerifier.verifyONNX(original: original, folded: folded, options: options)
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try EquivalenceVerifier.run(model: model, feeds: feeds, options: options)
    }
}
