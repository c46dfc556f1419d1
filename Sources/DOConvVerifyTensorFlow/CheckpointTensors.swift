import DOConvCore
import DOConvTensorFlow
import DOConvVerify
import DOConvVerifyKeras

/// One checkpoint as verification reads it, through the format's public reader: its
/// variables by key, the model's apart from the optimizer's, values in float64.
struct CheckpointTensors {
    let bundle: TensorBundle
    let byKey: [String: CheckpointVariable]
    /// The model's variables, in key order.
    let model: [CheckpointVariable]
    /// The optimizer's and the compiled metrics' state.
    let trainingState: [CheckpointVariable]

    init(path: String) throws(TensorFlowError) {
        bundle = try TensorBundle(checkpoint: path)
        let variables = try bundle.variables()
        byKey = Dictionary(variables.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        model = variables.filter { !$0.isTrainingState }
        trainingState = variables.filter(\.isTrainingState)
    }

    /// The variable's stored bytes, checksum checked.
    func bytes(_ variable: CheckpointVariable) throws(VerifyError) -> [UInt8] {
        do {
            if variable.dtype == .string { return try bundle.strings(variable.key).flatMap { $0 } }
            return try bundle.tensorBytes(variable.key).array
        } catch {
            throw VerifyError("\(error)")
        }
    }

    /// The variable as a Keras weight: float64 values (exact for float64 variables).
    func entry(_ variable: CheckpointVariable) throws(VerifyError) -> KerasEquivalence.Entry {
        guard let type = variable.dtype.elementType else {
            return KerasEquivalence.Entry(path: variable.key, key: variable.key, shape: variable.shape, values: nil, elementType: nil)
        }
        let values: [Double]
        do {
            let stored = try bundle.tensorBytes(variable.key)
            values = try withExtendedLifetime(stored.owner) { () throws(TensorError) -> [Double] in
                let count = stored.entry.elementCount
                if type == .float64 { return (0..<count).map { stored.bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) } }
                return try ElementCodec.decode(stored.bytes, as: type, count: count).map(Double.init)
            }
        } catch let error as TensorFlowError {
            throw VerifyError("\(error)")
        } catch {
            throw VerifyError("\(bundle.prefix): tensor '\(variable.key)': \(error)")
        }
        return KerasEquivalence.Entry(path: variable.key, key: variable.key, shape: variable.shape, values: values, elementType: type)
    }
}
