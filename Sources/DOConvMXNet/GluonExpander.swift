import DOConvCore
import DOConvFileIO

/// The reverse of the fold for Gluon `.params` (`save_parameters`): the Gluon DO-Conv layer
/// keeps the standard `weight` (Cout, Cin/g, M, N) and trains a `D` (M*N, M*N, Cin) beside
/// it, so each conv's weight stays and `<p>D` = zeros follows it; the layer then computes
/// exactly the plain conv (see `DOConvExpansion`). The layer supports only Dmul = M*N.
public enum GluonExpander {
    /// Expanded `.params`, ready to be written.
    public struct Result {
        public let summary: FoldSummary
        let list: NDArrayList
        /// Weight position -> the D written after it.
        let inserted: [Int: [NDArrayList.NewArray]]

        /// Writes the params atomically.
        public func write(to output: String) throws(MXNetError) {
            let file: AtomicFileWriter
            do { file = try AtomicFileWriter(destination: output, sources: [list.file]) } catch { throw .file(error) }
            list.write(into: file, replaced: [:], removed: [], inserted: inserted)
            do { try file.commit() } catch { throw .file(error) }
        }
    }

    public static func expand(path: String, options: ExpandOptions) throws(MXNetError) -> Result {
        let list = try NDArrayList(path: path)
        if list.arrays.contains(where: { $0.name.hasPrefix("arg:") || $0.name.hasPrefix("aux:") }) {
            throw .pair(path: path, reason: "an export's params (arg:/aux: names) are for deployment: expand the weights the training net saves with save_parameters")
        }
        let template = try options.template.map { (template) throws(MXNetError) in try templateGroups(template) }
        let names = Set(list.arrays.map(\.name))
        var summary = FoldSummary()
        var unsettled: [String] = []
        var assumed = 0
        var inserted: [Int: [NDArrayList.NewArray]] = [:]
        for (index, weight) in list.arrays.enumerated() where weight.name.hasSuffix("weight") && weight.shape.count == 4 {
            let prefix = String(weight.name.dropLast("weight".count))
            let name = GluonLayerDetector.layerName(prefix)
            func leave(_ reason: String) { summary.rejected.append(RejectedCandidate(name: name, reason: reason, isDOConvLayer: false)) }
            guard let type = weight.dtype.elementType else { leave("a non-floating-point weight"); continue }
            if names.contains(prefix + "D") { leave("already a DO-Conv layer (\(prefix)D beside it)"); continue }
            if let refusal = options.selection.refusal(of: name) { leave(refusal); continue }
            let (cout, perGroup, m, n) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
            let area = m * n
            // A 1x1 conv has no D: nothing to add.
            guard area > 1 else { leave("a 1x1 conv: the Gluon DO-Conv layer adds no D to it"); continue }
            var groups: Int?
            if let template {
                guard let settled = template[name] else { leave("not a DO-Conv layer in --like \(options.template ?? "")"); continue }
                groups = settled
            }
            if groups == nil { groups = options.givenGroups(of: name) }
            if groups == nil, perGroup > 1 { assumed += 1 }
            if groups == nil, perGroup == 1, cout > 1 {
                unsettled.append(name)
                continue
            }
            let g = groups ?? 1
            guard g >= 1, cout % g == 0, !perGroup.multipliedReportingOverflow(by: g).overflow else {
                throw .pair(path: path, reason: "layer '\(name)': \(g) groups do not divide its \(cout) output channels")
            }
            if let dmul = options.depthMultiplier, dmul != area {
                throw .pair(path: path, reason: "layer '\(name)': --dmul \(dmul), but the Gluon DO-Conv layer supports only Dmul = M*N = \(area)")
            }
            let geometry = DOConvGeometry(inChannels: perGroup * g, outChannels: cout, groups: g, kernelHeight: m, kernelWidth: n, depthMultiplier: area)
            do { try DOConvExpansion.checkSize(geometry) } catch { throw .inconsistentLayer(path: path, layer: name, reason: "\(error)") }
            // The Gluon layer views the weight as Keras's (M, N, Cin/g, Cout) W.
            let oihw: [Double]
            if type == .float64 {
                oihw = (0..<weight.count).map { weight.data.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
            } else {
                do { oihw = try ElementCodec.decode(weight.data, as: type, count: weight.count).map(Double.init) } catch {
                    throw .inconsistentLayer(path: path, layer: name, reason: "\(error)")
                }
            }
            let hwio = geometry.hwio(oihw: oihw)
            let expansion: DOConvExpansion
            do { expansion = try DOConvExpansion(layout: .keras, geometry: geometry, kernel: hwio, seed: options.seed) } catch {
                throw .inconsistentLayer(path: path, layer: name, reason: "\(error)")
            }
            let d = expansion.d ?? []
            inserted[index] = [NDArrayList.NewArray(name: prefix + "D", dtype: weight.dtype, shape: [area, area, geometry.inChannels],
                                                    data: [UInt8](repeating: 0, count: d.count * weight.dtype.byteWidth))]
            var record = FoldedLayer(name: name, layout: .keras, geometry: geometry, elementType: type, stride: [], dilation: [],
                                     tolerance: options.tolerance ?? type.defaultTolerance)
            if options.verify {
                // The weight as stored is W: composed back with D = 0 it must be the weight.
                do {
                    record.relativeError = try DOConvExpansion.relativeError(layout: .keras, geometry: geometry, storedW: hwio, storedD: d, kernelOIHW: oihw)
                } catch {
                    throw .inconsistentLayer(path: path, layer: name, reason: "\(error)")
                }
            }
            summary.layers.append(record)
        }
        if !unsettled.isEmpty { throw .pair(path: path, reason: ExpandOptions.unsettledGroups(unsettled)) }
        for array in list.arrays {
            summary.parametersBefore += array.count
            summary.bytesBefore += array.count * array.dtype.byteWidth
        }
        let added = inserted.values.flatMap { $0 }
        summary.parametersAfter = summary.parametersBefore + added.reduce(0) { $0 + $1.shape.reduce(1, *) }
        summary.bytesAfter = summary.bytesBefore + added.reduce(0) { $0 + $1.data.count }
        if !summary.layers.isEmpty {
            summary.notes.append("load it into the DO-Conv net with load_parameters: each weight stays, <p>D (zeros) beside it")
            if let note = ExpandOptions.assumedGroupsNote(assumed) { summary.notes.append(note) }
        }
        return Result(summary: summary, list: list, inserted: inserted)
    }

    /// The groups of each DO-Conv layer of a freshly initialized Gluon DO-Conv net's params.
    static func templateGroups(_ path: String) throws(MXNetError) -> [String: Int] {
        let list = try NDArrayList(path: path)
        let byName = Dictionary(list.arrays.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var groups: [String: Int] = [:]
        for d in list.arrays where d.name.hasSuffix("D") && d.shape.count == 3 {
            let prefix = String(d.name.dropLast())
            guard let weight = byName[prefix + "weight"], weight.shape.count == 4, weight.shape[1] > 0, d.shape[2] % weight.shape[1] == 0 else { continue }
            groups[GluonLayerDetector.layerName(prefix)] = d.shape[2] / weight.shape[1]
        }
        guard !groups.isEmpty else { throw .pair(path: path, reason: "--like: no Gluon DO-Conv layer (<p>D beside <p>weight) in this file") }
        return groups
    }
}
