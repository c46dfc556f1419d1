import DOConvCore
import DOConvGraph
import DOConvVerify

/// Checks a Conv that stands for a block merged by `--reparam`: seeded random images go
/// through ORIGINAL's block (every branch and Add, run by the reference executor from the
/// block's input value) and through FOLDED's Conv, and the outputs must agree. The images are
/// a few pixels larger than the kernel, so most outputs touch the border, where a wrong
/// padding or a bias pushed through a padded conv would show.
struct LinearBlockCheck {
    /// ORIGINAL as the structure check indexed it (`ReplacedConv.chain` points into its nodes).
    let structure: Graph
    /// ORIGINAL as it runs (constants computed: its node list may be shorter).
    let original: Graph
    let folded: Graph
    let tolerance: Double?
    let images: Int
    let seed: UInt64
    /// ORIGINAL's seeded input: when the block cannot run on a small image (index arithmetic
    /// an exporter baked for the traced size), the images take the size the block sees there.
    var feeds: [String: TensorValue] = [:]

    func check(_ r: ReplacedConv) -> LayerResult {
        let conv = folded.nodes[r.foldedNode]
        let ops = r.chain.map { structure.nodes[$0].opType }
        let convs = ops.filter { $0 == "Conv" }.count, adds = ops.filter { $0 == "Add" }.count
        var result = LayerResult(name: conv.name.isEmpty ? conv.outputs.first ?? "" : conv.name, conv: StructureDiff.label(conv),
                                 description: "\(r.chain.count) linear nodes (\(convs) Conv, \(adds) Add, \(ops.count - convs - adds) other) merged")
        result.isLinearBlock = true
        guard let kernel = folded.initializers[r.foldedWeight], kernel.type.isFloat, kernel.rank == 4 else {
            result.problems.append("FOLDED's kernel '\(r.foldedWeight)' is not a 4-D float initializer")
            return result
        }
        result.description += " into one \(kernel.shape[2])x\(kernel.shape[3]) Conv"
        let groups = LayerCheck.group(conv)
        func pair(_ name: String) -> [Int] {
            if case .ints(let v)? = conv[attribute: name], v.count == 2 { return v.map { Int(clamping: $0) } }
            return [1, 1]
        }
        let (stride, dilation) = (pair("strides"), pair("dilations"))
        let channels = kernel.shape[1] * groups
        let height = 3 * stride[0] + dilation[0] * (kernel.shape[2] - 1) + 2
        let width = 3 * stride[1] + dilation[1] * (kernel.shape[3] - 1) + 2
        let tol = tolerance ?? kernel.type.defaultTolerance
        let (source, output) = (conv.inputs[0], conv.outputs[0])
        var imageShape = [1, channels, height, width]
        var expected: [Double] = [], actual: [Double] = []
        var shape: [Int] = []
        for attempt in 0..<2 {
            var generator = SeededGenerator(seed: seed ^ 0xB10C)
            (expected, actual) = ([], [])
            do {
                for _ in 0..<max(images, 1) {
                    let image = TensorValue(kernel.type, shape: imageShape,
                                            floats: (0..<imageShape.reduce(1, *)).map { _ in Double.random(in: -1...1, using: &generator) })
                    guard let want = try ReferenceExecutor(graph: original).evaluate([output], feeds: [source: image])[output],
                          let got = try ReferenceExecutor(graph: folded).evaluate([output], feeds: [source: image])[output] else { continue }
                    guard want.shape == got.shape else {
                        result.problems.append("the merged Conv's output is \(got.shape), the block's \(want.shape)")
                        return result
                    }
                    expected += want.doubles
                    actual += got.doubles
                    shape = [expected.count / max(want.count, 1)] + want.shape
                }
                break
            } catch {
                // Once: the block's input as ORIGINAL computes it on the seeded input gives the size.
                if attempt == 0, !feeds.isEmpty, let seen = try? ReferenceExecutor(graph: original).evaluate([source], feeds: feeds)[source],
                   seen.shape.count == 4, seen.shape != imageShape {
                    imageShape = seen.shape
                    result.description += " (checked at its input's size \(seen.shape[2])x\(seen.shape[3]), the size its index arithmetic was exported for)"
                    continue
                }
                result.problems.append("the block cannot be run on a probe image: \(error)")
                return result
            }
        }
        result.probe = ErrorStats.compare(expected: expected, actual: actual, shape: shape, tolerance: tol)
        return result
    }
}
