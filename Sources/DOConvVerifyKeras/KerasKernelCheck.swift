import DOConvCore
import DOConvVerify

extension KerasEquivalence {
    /// A DOConv2D's folded kernel as Keras and TensorFlow store it, (M, N, Cin/g, Cout),
    /// against the float64 recomputation from ORIGINAL's D and W, and random patches through
    /// both (the check every container of Keras weights shares).
    package static func checkFoldedKernel(of layer: KerasOriginalLayer, folded after: Entry?, conv: String, key: String, options: VerifyOptions) -> LayerResult {
        var result = LayerResult(name: layer.name, conv: conv, description: layer.description)
        guard let after, let values = after.values else {
            result.problems.append("FOLDED has no float kernel at '\(key)'")
            return result
        }
        // A DO-DConv may be written as a DepthwiseConv2D: (M, N, Cin, Cout/Cin), the same
        // memory as Conv2D(groups=Cin)'s (M, N, 1, Cout).
        let depthwise = layer.depthwiseShape
        guard after.shape == layer.foldedShape || after.shape == depthwise else {
            result.problems.append("FOLDED's kernel has shape \(after.shape), expected (M, N, Cin/g, Cout) = \(layer.foldedShape)"
                + (depthwise.map { " or, as a DepthwiseConv2D, \($0)" } ?? ""))
            return result
        }
        let reference = doConvReference(layer)
        let actual = oihw(values, hwio: layer.foldedShape)
        let type = [layer.kernel.elementType, after.elementType].compactMap { $0 }.map(\.defaultTolerance).max()
        let tolerance = options.tolerance ?? type ?? ElementType.float32.defaultTolerance
        result.kernel = ErrorStats.compare(expected: reference.kernel, actual: actual, shape: reference.shape, tolerance: tolerance)
        result.probe = probe(reference, kernel: actual, patches: options.probePatches, seed: options.seed, tolerance: tolerance)
        return result
    }
}
