import DOConvFileIO
import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import DOConvMXNet
import DOConvVerify

/// MXNet pairs (`.params` files, or export pairs given by either half): the same arrays in
/// the same order except each DO-Conv layer's D removed and its weight holding the folded
/// kernel (every other array equal bit for bit), each folded kernel in float64, and for
/// export pairs the symbol: every node of FOLDED is ORIGINAL's (op, attributes, inputs by
/// name), except that each DO-Conv Convolution reads its weight variable directly, and the
/// only nodes gone are its kernel computation and D. Which arrays form a layer comes from
/// ORIGINAL alone (`GluonLayerReading`), never from the fold's detector.
public enum MXNetEquivalence {
    public static func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        var report = VerificationReport(original: original, folded: folded, format: "MXNet")
        report.endToEndSkipped = "MXNet files are checked by structure and per layer; the reference executor runs ONNX graphs only"
        let inputs: (MXNetInput, MXNetInput)
        let lists: (NDArrayList, NDArrayList)
        let layers: [GluonOriginalLayer]
        do {
            // --params picks ORIGINAL's params file among several; FOLDED's pair then has
            // the one of the same epoch, as doconv-fold names it.
            let first = try MXNetInput(path: original, paramsFile: options.paramsFile)
            var foldedParams: String?
            if options.paramsFile != nil, folded.hasSuffix("-symbol.json"),
               let epoch = MXNetInput.split(FilePath.baseName(of: first.params))?.epoch {
                foldedParams = String(folded.dropLast("-symbol.json".count)) + "-\(epoch).params"
            }
            inputs = (first, try MXNetInput(path: folded, paramsFile: foldedParams))
            lists = (try NDArrayList(path: inputs.0.params), try NDArrayList(path: inputs.1.params))
            layers = try GluonLayerReading.layers(of: lists.0, options: options)
        } catch {
            throw VerifyError("\(error)")
        }
        guard (inputs.0.symbol == nil) == (inputs.1.symbol == nil) else {
            throw VerifyError("\(original) and \(folded): one is an export pair (symbol + params) and the other is not")
        }
        let removed = Set(layers.map(\.d.name))
        let folds = Dictionary(layers.map { ($0.weight.name, $0) }, uniquingKeysWith: { a, _ in a })
        let expected = lists.0.arrays.filter { !removed.contains($0.name) }
        if expected.map(\.name) != lists.1.arrays.map(\.name) {
            let missing = Set(expected.map(\.name)).subtracting(lists.1.arrays.map(\.name)).sorted().prefix(5)
            let extra = Set(lists.1.arrays.map(\.name)).subtracting(expected.map(\.name)).sorted().prefix(5)
            report.structure.append("FOLDED's arrays are not ORIGINAL's without D, in order" + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))")
                                    + (extra.isEmpty ? "" : "; unexpected: \(extra.joined(separator: ", "))"))
        }
        let foldedByName = Dictionary(lists.1.arrays.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var equal = 0
        for array in expected {
            guard let after = foldedByName[array.name] else { continue }
            guard array.dtype == after.dtype, array.shape == after.shape else {
                report.structure.append("array '\(array.name)' changed from \(array.dtype) \(array.shape) to \(after.dtype) \(after.shape)")
                continue
            }
            if let layer = folds[array.name] {
                report.layers.append(check(layer, after, options: options))
            } else if array.data.elementsEqual(after.data) {
                equal += 1
            } else {
                report.structure.append("array '\(array.name)' changed values")
            }
        }
        if let a = inputs.0.symbol, let b = inputs.1.symbol {
            do {
                report.structure += symbolDifferences(original: try SymbolGraph(path: a), folded: try SymbolGraph(path: b), layers: layers)
            } catch {
                throw VerifyError("\(error)")
            }
        }
        report.structureSummary = "\(equal) arrays equal, \(report.layers.count) kernel\(report.layers.count == 1 ? "" : "s") folded, \(removed.count) D removed"
            + (inputs.0.symbol == nil ? "" : "; symbol checked node by node")
        return report
    }

    /// FOLDED's kernel against the float64 recomputation from ORIGINAL's D and weight, and
    /// random patches through both kernels.
    static func check(_ layer: GluonOriginalLayer, _ after: NDArrayList.Array, options: VerifyOptions) -> LayerResult {
        var result = LayerResult(name: layer.name, conv: after.name, description: layer.description)
        guard let type = after.dtype.elementType else {
            result.problems.append("FOLDED's kernel '\(after.name)' is not a float array")
            return result
        }
        StoredKernelCheck.compare(&result, reference: { try GluonLayerReading.kernel(of: layer) },
                                  kernel: { try GluonLayerReading.values(of: after) }, shape: after.shape, type: type, options: options)
        return result
    }

    static func symbolDifferences(original a: SymbolGraph, folded b: SymbolGraph, layers: [GluonOriginalLayer]) -> [String] {
        var differences: [String] = []
        // Each DO layer's Convolution in ORIGINAL, and the nodes of its kernel computation.
        var weightOf: [String: String] = [:] // conv name -> weight variable
        var computation = Set<String>()
        for layer in layers {
            let (w, d) = (MXNetFolder.variable(layer.weight.name), MXNetFolder.variable(layer.d.name))
            guard let wi = a.variable(w), let di = a.variable(d), let conv = a.convolutionComposing(weight: wi, d: di) else {
                differences.append("ORIGINAL's symbol has no Convolution composing its weight from '\(w)' and '\(d)'")
                continue
            }
            weightOf[a.name(of: conv)] = w
            let source = a.inputs(of: conv)[1]
            computation.formUnion(a.ancestors(of: source).map { a.name(of: $0) })
            computation.insert(d)
        }
        computation.subtract(weightOf.values)
        let originalByName = Dictionary((0..<a.nodeCount).map { (a.name(of: $0), $0) }, uniquingKeysWith: { x, _ in x })
        let foldedNames = Set((0..<b.nodeCount).map { b.name(of: $0) })
        for k in 0..<b.nodeCount {
            let name = b.name(of: k)
            guard let j = originalByName[name] else {
                differences.append("symbol node '\(name)' of FOLDED is not in ORIGINAL")
                continue
            }
            if a.op(of: j) != b.op(of: k) || a.attributes(of: j) != b.attributes(of: k) {
                differences.append("symbol node '\(name)' changed its op or attributes")
            }
            var want = a.inputs(of: j).map { a.name(of: $0) }
            if let weight = weightOf[name], want.count >= 2 { want[1] = weight }
            let have = b.inputs(of: k).map { b.name(of: $0) }
            if want != have { differences.append("symbol node '\(name)' reads \(have), expected \(want)") }
        }
        for name in originalByName.keys.sorted() where !foldedNames.contains(name) && !computation.contains(name) {
            differences.append("symbol node '\(name)' of ORIGINAL is missing from FOLDED")
        }
        if a.headNodes.map({ a.name(of: $0) }) != b.headNodes.map({ b.name(of: $0) }) {
            differences.append("the symbol's outputs changed")
        }
        return differences
    }
}
