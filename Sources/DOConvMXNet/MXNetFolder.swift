import DOConvCore
import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Options of an MXNet fold.
public struct MXNetFoldOptions: Sendable {
    public var fold = FoldOptions()
    /// The export's params file, when several `NAME-NNNN.params` sit beside the symbol.
    public var paramsFile: String?
    public init() {}
}

/// What an MXNet input is: a `.params` file alone, or an export pair.
public struct MXNetInput {
    public let params: String
    /// `NAME-symbol.json`, for an export pair.
    public let symbol: String?
    /// Whether the user named the symbol (the output is then named as a symbol too).
    public let givenAsSymbol: Bool

    /// Finds the other half of an export pair beside `path`.
    public init(path: String, paramsFile: String?) throws(MXNetError) {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent()
        let name = url.lastPathComponent
        if let head = FilePath.bytes(of: path, at: 0, count: 64), SymbolGraph.looksLikeSymbol(head: head) || path.hasSuffix("-symbol.json") {
            guard name.hasSuffix("-symbol.json") else { throw .pair(path: path, reason: "an MXNet symbol must be named NAME-symbol.json to find its NAME-NNNN.params") }
            let stem = String(name.dropLast("-symbol.json".count))
            symbol = path
            givenAsSymbol = true
            if let paramsFile {
                params = paramsFile
                return
            }
            let candidates = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { Self.epoch(of: $0, stem: stem) != nil }.sorted()
            guard candidates.count == 1 else {
                throw .pair(path: path, reason: candidates.isEmpty ? "no \(stem)-NNNN.params beside the symbol"
                                : "\(candidates.count) params files beside the symbol (\(candidates.joined(separator: ", "))); pass --params FILE")
            }
            params = folder.appendingPathComponent(candidates[0]).path
        } else {
            params = path
            givenAsSymbol = false
            if let (stem, _) = Self.split(name) {
                let beside = folder.appendingPathComponent(stem + "-symbol.json").path
                symbol = FileManager.default.fileExists(atPath: beside) ? beside : nil
            } else {
                symbol = nil
            }
        }
    }

    /// "net-0007.params" -> ("net", "0007").
    public static func split(_ name: String) -> (stem: String, epoch: String)? {
        guard name.hasSuffix(".params"), let dash = name.lastIndex(of: "-") else { return nil }
        let epoch = name[name.index(after: dash)..<name.index(name.endIndex, offsetBy: -".params".count)]
        guard epoch.count == 4, epoch.allSatisfy(\.isNumber) else { return nil }
        return (String(name[..<dash]), String(epoch))
    }

    static func epoch(of name: String, stem: String) -> String? {
        guard let (s, epoch) = split(name), s == stem else { return nil }
        return epoch
    }

    /// Where the folded pair goes when the user named `output`.
    func outputs(for output: String) throws(MXNetError) -> (params: String, symbol: String?) {
        guard symbol != nil else { return (output, nil) }
        let url = URL(fileURLWithPath: output)
        let folder = url.deletingLastPathComponent()
        let epoch = Self.split(URL(fileURLWithPath: params).lastPathComponent)?.epoch ?? "0000"
        if givenAsSymbol {
            guard url.lastPathComponent.hasSuffix("-symbol.json") else { throw .pair(path: output, reason: "the folded symbol must be named NAME-symbol.json (its params go to NAME-\(epoch).params)") }
            let stem = String(url.lastPathComponent.dropLast("-symbol.json".count))
            return (folder.appendingPathComponent("\(stem)-\(epoch).params").path, output)
        }
        guard let (stem, _) = Self.split(url.lastPathComponent) else {
            throw .pair(path: output, reason: "the folded params of an export pair must be named NAME-NNNN.params (its symbol goes to NAME-symbol.json)")
        }
        return (output, folder.appendingPathComponent("\(stem)-symbol.json").path)
    }
}

/// A folded `.params` file (and symbol), ready to be written.
public struct MXNetFoldResult {
    public let summary: FoldSummary
    let input: MXNetInput
    let list: NDArrayList
    let symbol: SymbolGraph?
    /// Array position -> its new data (in `kernels`); positions of the arrays left out.
    let replaced: [Int: UnsafeRawBufferPointer]
    let kernels: [KernelBuffer]
    let removed: Set<Int>
    /// The float32 kernels still being computed, and their layers' indices in
    /// `summary.layers` (their probe errors are not in it yet: see `write`).
    let pending: PendingKernels
    let deferredLayers: [Int]

    /// Writes the folded params (and symbol) atomically; the pair's second file is named
    /// after the first. `accept` sees the complete summary once everything is written and
    /// before anything is committed: false leaves every file as it was.
    public func write(to output: String, accepting accept: (FoldSummary) -> Bool = { _ in true }) throws(MXNetError) -> (summary: FoldSummary, committed: Bool) {
        let (paramsPath, symbolPath) = try input.outputs(for: output)
        let paramsFile: AtomicFileWriter
        do { paramsFile = try AtomicFileWriter(destination: paramsPath, sources: [list.file]) } catch { throw .file(error) }
        list.write(into: paramsFile, replaced: replaced, removed: removed, pending: pending)
        var symbolFile: AtomicFileWriter?
        if let symbol, let symbolPath {
            do { symbolFile = try AtomicFileWriter(destination: symbolPath) } catch { throw .file(error) }
            symbolFile?.write(Array(try symbol.json()))
        }
        let complete = finishedSummary()
        guard accept(complete) else { return (complete, false) } // the writers discard their files
        // Both are written and synced before either is renamed into place.
        do {
            try AtomicFileWriter.commit([paramsFile] + (symbolFile.map { [$0] } ?? []))
        } catch {
            throw .file(error)
        }
        return (complete, true)
    }

    /// The summary with the deferred probes' results in (waiting for them).
    func finishedSummary() -> FoldSummary {
        pending.completing(summary, deferredLayers: deferredLayers)
    }
}

/// Folds every Gluon DO-Conv layer of a `.params` file, or of an export pair (the symbol's
/// kernel computations removed, each Convolution reading its weight directly).
public enum MXNetFolder {
    public static func detect(path: String, options: MXNetFoldOptions = MXNetFoldOptions()) throws(MXNetError) -> Detection {
        let input = try MXNetInput(path: path, paramsFile: options.paramsFile)
        let list = try NDArrayList(path: input.params)
        var (layers, rejected) = try GluonLayerDetector(list: list, selection: options.fold.selection).detect()
        if let path = input.symbol { annotate(&layers, from: try SymbolGraph(path: path)) }
        return Detection(layers: layers.map(\.detected), rejected: rejected)
    }

    public static func fold(path: String, options: MXNetFoldOptions = MXNetFoldOptions()) throws(MXNetError) -> MXNetFoldResult {
        let input = try MXNetInput(path: path, paramsFile: options.paramsFile)
        let list = try NDArrayList(path: input.params)
        var (layers, rejected) = try GluonLayerDetector(list: list, selection: options.fold.selection).detect()
        var summary = FoldSummary(rejected: rejected)
        for array in list.arrays {
            summary.parametersBefore += array.count
            summary.bytesBefore += array.count * array.dtype.byteWidth
        }
        var replaced: [Int: UnsafeRawBufferPointer] = [:]
        var kernels: [KernelBuffer] = []
        var removed = Set<Int>()
        // float32 kernels are folded and probed while the file is written (see PendingKernels).
        let pending = PendingKernels()
        var deferredLayers: [Int] = []
        var symbol = try input.symbol.map { (path) throws(MXNetError) in try SymbolGraph(path: path) }
        if let symbol { annotate(&layers, from: symbol) }
        let neededBefore = symbol?.neededNodes ?? []
        for found in layers {
            let layer = found.detected.layer
            let type = found.detected.elementType
            // float64 layers fold in float64, from the arrays as stored; float32 ones straight
            // into the kernel's bytes.
            let exactLayer = type == .float64 ? try float64Layer(found, list: list) : nil
            let exact = exactLayer?.foldedKernel()
            let count = layer.geometry.kernelCount
            let byteCount = count * type.byteWidth
            guard let kernel = KernelBuffer(byteCount: byteCount) else {
                throw .outOfMemory(path: input.params, what: "the folded kernel of '\(found.detected.name)'", byteCount: byteCount)
            }
            kernels.append(kernel)
            let stored = UnsafeRawBufferPointer(kernel.bytes)
            var deferred = false
            if let exact {
                exact.withUnsafeBytes { kernel.bytes.copyMemory(from: $0) }
            } else if type == .float32, isLittleEndian {
                pending.addFold(of: layer, into: kernel.bytes, verify: options.fold.verify, patches: options.fold.probePatches,
                                seed: options.fold.seed, keeping: kernel)
                deferredLayers.append(summary.layers.count)
                deferred = true
            } else {
                layer.foldedKernel().values.withUnsafeBufferPointer { ElementCodec.encode($0, as: type, into: kernel.bytes) }
            }
            var record = FoldedLayer(name: found.detected.name, layout: .keras, geometry: layer.geometry, elementType: type,
                                     stride: found.detected.stride, dilation: found.detected.dilation,
                                     tolerance: options.fold.tolerance ?? type.defaultTolerance)
            if options.fold.verify && !deferred {
                // Probe the kernel as stored (after rounding to the element type).
                if let exactLayer, let exact {
                    record.relativeError = exactLayer.probe(kernel: exact, patches: options.fold.probePatches, seed: options.fold.seed).relativeError
                } else {
                    let values = (try? ElementCodec.decode(stored, as: type, count: count)) ?? []
                    record.relativeError = LayerProbe.compare(layer: layer, kernel: values, patches: options.fold.probePatches, seed: options.fold.seed).relativeError
                }
            }
            summary.layers.append(record)
            replaced[found.weightIndex] = stored
            removed.insert(found.dIndex)
            let dCount = layer.geometry.dCount
            summary.parametersAfter -= dCount
            summary.bytesAfter -= dCount * found.dtype.byteWidth
            if var graph = symbol {
                let names = (variable(found.weightName), variable(found.dName))
                guard let weight = graph.variable(names.0), let d = graph.variable(names.1), let conv = graph.convolutionComposing(weight: weight, d: d) else {
                    throw .inconsistentLayer(path: graph.path, layer: found.detected.name, reason: "the symbol has no Convolution whose weight is composed from '\(names.0)' and '\(names.1)'")
                }
                graph.readWeightDirectly(conv: conv, weight: weight)
                symbol = graph
            }
        }
        symbol?.removeUnread(neededBefore: neededBefore)
        summary.parametersAfter += summary.parametersBefore
        summary.bytesAfter += summary.bytesBefore
        if let symbol, !layers.isEmpty {
            summary.notes.append("symbol rewritten: \(layers.count) Convolution\(layers.count == 1 ? "" : "s") read their weight directly, \(symbol.removedCount(from: neededBefore)) nodes of kernel computation removed")
        }
        return MXNetFoldResult(summary: summary, input: input, list: list, symbol: symbol, replaced: replaced, kernels: kernels, removed: removed,
                               pending: pending, deferredLayers: deferredLayers)
    }

    /// A float64 layer's kernel (OIHW) in float64: the weight viewed as (M, N, Cin/g, Cout),
    /// D plus the identity, the Keras-layout arithmetic.
    static func float64Layer(_ found: GluonLayer, list: NDArrayList) throws(MXNetError) -> Float64Layer {
        let g = found.detected.layer.geometry
        guard let weight = list.arrays.first(where: { $0.name == found.weightName }), let d = list.arrays.first(where: { $0.name == found.dName }),
              weight.dtype == .float64, d.dtype == .float64 else {
            throw .inconsistentLayer(path: list.path, layer: found.detected.name, reason: "not a float64 layer")
        }
        let read = { (array: NDArrayList.Array) in (0..<array.count).map { array.data.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) } }
        let oihw = read(weight)
        let (cout, perGroup, mn) = (g.outChannels, g.inChannelsPerGroup, g.kernelArea)
        var hwio = [Double](repeating: 0, count: oihw.count)
        for o in 0..<cout {
            for c in 0..<perGroup {
                for q in 0..<mn { hwio[(q * perGroup + c) * cout + o] = oihw[(o * perGroup + c) * mn + q] }
            }
        }
        var composed = read(d)
        IdentityOffset.add(to: &composed, layout: .keras, geometry: g)
        do { return try Float64Layer(layout: .keras, geometry: g, d: composed, w: hwio) } catch {
            throw .inconsistentLayer(path: list.path, layer: found.detected.name, reason: "\(error)")
        }
    }

    /// Strides and dilations, which only the symbol records: from each layer's Convolution.
    static func annotate(_ layers: inout [GluonLayer], from graph: SymbolGraph) {
        for k in layers.indices {
            guard let w = graph.variable(variable(layers[k].weightName)), let d = graph.variable(variable(layers[k].dName)),
                  let conv = graph.convolutionComposing(weight: w, d: d) else { continue }
            let attributes = graph.attributes(of: conv)
            let pair = { (text: String?) -> [Int] in
                (text ?? "").split { "(), ".contains($0) }.compactMap { Int($0) }
            }
            let (stride, dilation) = (pair(attributes["stride"]), pair(attributes["dilate"]))
            layers[k].detected.stride = stride.count == 2 ? stride : [1, 1]
            layers[k].detected.dilation = dilation.count == 2 ? dilation : [1, 1]
        }
    }

    /// The Gluon DO-Conv layers of a `.params` list, and the look-alikes.
    public static func layers(of list: NDArrayList, selection: LayerSelection = LayerSelection()) throws(MXNetError) -> (layers: [GluonLayer], rejected: [RejectedCandidate]) {
        try GluonLayerDetector(list: list, selection: selection).detect()
    }

    /// An export's array name ("arg:conv0_weight") as the symbol's variable ("conv0_weight").
    public static func variable(_ arrayName: String) -> String {
        for prefix in ["arg:", "aux:"] where arrayName.hasPrefix(prefix) { return String(arrayName.dropFirst(prefix.count)) }
        return arrayName
    }
}

extension SymbolGraph {
    /// How many of the nodes needed before are gone.
    func removedCount(from neededBefore: Set<Int>) -> Int { neededBefore.count - neededNodes.count }
}

/// Whether float32 bytes in memory are stored as files hold them (little-endian).
private var isLittleEndian: Bool {
    #if _endian(little)
    return true
    #else
    return false
    #endif
}
