import DOConvGraph
import DOConvKeras
import DOConvVerify

/// Keras's side of verify-equivalence.
extension KerasHDF5Format: VerifiableFormat {
    public var checks: String { "1 and 2, and 3 when a model config is at hand" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verify(original: original, folded: folded, options: options)
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try KerasEquivalence.run(model: model, configJSON: options.kerasConfigJSON, feeds: feeds, options: options)
    }

    /// doconv-expand's pair (ORIGINAL without a DOConv2D layer, FOLDED with some): FOLDED
    /// must fold back into ORIGINAL, and both models run end to end.
    public func expansionPair(original: String, folded: String, options given: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        guard !KerasEquivalence.holdsDOConvLayers(original), KerasEquivalence.holdsDOConvLayers(folded) else { return nil }
        var options = given
        options.expandedPair = true
        // Weights-only files with --config: that is PLAIN's config; EXPANDED's is the same
        // with each expanded Conv2D a DOConv2D of the Dmul its kernel dataset has.
        var plainConfig: String?
        if let json = given.kerasConfigJSON, let config = try? KerasModelConfig(json: json, source: "--config") {
            plainConfig = json
            options.kerasConfigJSON = config.expandedJSON(KerasEquivalence.depthMultipliers(of: folded, conv2Ds: config))
        }
        var report = try KerasEquivalence.verify(original: folded, folded: original, options: options, foldedConfigJSON: plainConfig)
        report.notes.append("ORIGINAL holds no DO-Conv layer and FOLDED does: checked as doconv-expand's pair, FOLDED folded back into ORIGINAL")
        return report
    }
}

extension KerasArchiveFormat: VerifiableFormat {
    public var checks: String { "1, 2 and 3" }

    public func verify(original: String, folded: String, options: VerifyOptions) throws(VerifyError) -> VerificationReport {
        try KerasEquivalence.verifyArchives(original: original, folded: folded, options: options)
    }

    /// doconv-expand's pair: ORIGINAL's config has no DOConv2D, FOLDED's has.
    public func expansionPair(original: String, folded: String, options given: VerifyOptions) throws(VerifyError) -> VerificationReport? {
        func holdsDOConv(_ path: String) -> Bool {
            guard let contents = try? KerasArchiveContents(path: path) else { return false }
            defer { contents.close() }
            return (try? KerasModelConfig(json: contents.configJSON, source: path))?.layers.contains(where: \.isDOConv) ?? false
        }
        guard !holdsDOConv(original), holdsDOConv(folded) else { return nil }
        var options = given
        options.expandedPair = true
        var report = try KerasEquivalence.verifyArchives(original: folded, folded: original, options: options)
        report.notes.append("ORIGINAL holds no DO-Conv layer and FOLDED does: checked as doconv-expand's pair, FOLDED folded back into ORIGINAL")
        return report
    }

    public func run(model: String, feeds: [String: TensorValue], options: VerifyOptions) throws(VerifyError) -> [String: TensorValue] {
        try KerasEquivalence.run(model: model, configJSON: options.kerasConfigJSON, feeds: feeds, options: options)
    }
}
