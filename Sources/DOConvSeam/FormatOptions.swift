import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// A command-line option that only some formats read. Declared once, here and in
/// `FormatOptionDeclarations.swift`: the three tools' shared option group, their help and
/// completions, and the Python API's keywords all come from these declarations, and which
/// formats read an option comes from each format's `options`.
public enum FormatOption: String, CaseIterable, Sendable {
    case config = "--config"
    case kernelSize = "--kernel-size"
    case fuseBatchNorm = "--fuse-bn"
    case foldSeparable = "--fold-separable"
    case reparameterize = "--reparam"
    case keepNames = "--keep-names"
    case params = "--params"
    case strictPickle = "--strict-pickle"
    case allowPartial = "--allow-partial"
    case keepGrouped = "--keep-grouped"
}

/// Everything the command lines hand to a format adapter.
public struct FormatOptions: Sendable {
    public var fold = FoldOptions()
    /// The model's Keras JSON (`--config`), for files that carry no config.
    public var configJSON: String?
    /// Where `configJSON` came from, for messages.
    public var configSource = "--config"
    /// Kernel sizes by layer name (`--kernel-size LAYER=MxN`).
    public var kernelSizes: [String: [Int]] = [:]
    /// ONNX: also fold each inference-mode BatchNormalization into the Conv before it.
    public var fuseBatchNorm = false
    /// ONNX: also merge linear over-parameterizations into single Convs (`--reparam`).
    public var reparameterize = false
    /// PyTorch: keep the key `P.W` for the folded kernel instead of nn.Conv2d's `P.weight`.
    public var keepNames = false
    /// MXNet: an export's params file, when several sit beside its symbol (`--params`).
    public var paramsFile: String?
    /// PyTorch: refuse pickled Python objects instead of carrying them (`--strict-pickle`).
    public var strictPickle = false
    /// Keras, TensorFlow: leave a layer that cannot be told apart unfolded (`--allow-partial`).
    public var allowPartial = false
    /// Keras, TensorFlow: write a folded DO-DConv as Conv2D(groups=Cin), not DepthwiseConv2D.
    public var keepGrouped = false

    public init() {}

    /// The format-specific options that are set.
    public var given: Set<FormatOption> {
        var given = Set<FormatOption>()
        if configJSON != nil { given.insert(.config) }
        if !kernelSizes.isEmpty { given.insert(.kernelSize) }
        if fuseBatchNorm { given.insert(.fuseBatchNorm) }
        if fold.foldSeparable { given.insert(.foldSeparable) }
        if reparameterize { given.insert(.reparameterize) }
        if keepNames { given.insert(.keepNames) }
        if paramsFile != nil { given.insert(.params) }
        if strictPickle { given.insert(.strictPickle) }
        if allowPartial { given.insert(.allowPartial) }
        if keepGrouped { given.insert(.keepGrouped) }
        return given
    }

    /// Reads `--config FILE` into `configJSON`.
    public mutating func readConfig(file: String) throws(FormatError) {
        guard let json = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw FormatError("\(file): model config: cannot read the file")
        }
        configJSON = json
        configSource = file
    }

    /// Throws, naming the first option given that `format` does not read.
    public func check(appliesTo format: any ModelFormat, path: String) throws(FormatError) {
        let foreign = given.subtracting(format.options)
        guard let first = FormatOption.allCases.first(where: foreign.contains) else { return }
        throw FormatError("\(path): \(first.rawValue) does not apply to \(format.displayName) files")
    }
}

/// Why a file's format could not be told or an option does not fit it: one line.
public struct FormatError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension FormatOptions {
    /// Clears the options `format` does not read (with `-o DIR`, where each option applies
    /// to the files it fits).
    public mutating func dropOptions(notReadBy format: any ModelFormat) {
        let foreign = given.subtracting(format.options)
        if foreign.contains(.config) { configJSON = nil }
        if foreign.contains(.kernelSize) { kernelSizes = [:] }
        if foreign.contains(.fuseBatchNorm) { fuseBatchNorm = false }
        if foreign.contains(.foldSeparable) { fold.foldSeparable = false }
        if foreign.contains(.reparameterize) { reparameterize = false }
        if foreign.contains(.keepNames) { keepNames = false }
        if foreign.contains(.params) { paramsFile = nil }
        if foreign.contains(.strictPickle) { strictPickle = false }
        if foreign.contains(.allowPartial) { allowPartial = false }
        if foreign.contains(.keepGrouped) { keepGrouped = false }
    }
}
