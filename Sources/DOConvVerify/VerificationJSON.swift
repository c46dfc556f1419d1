import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

extension VerificationReport {
    /// Version of the JSON document's layout (bumped on incompatible changes).
    public static let jsonFormatVersion = 1

    /// The report as one JSON document, keys sorted, two-space indentation, as described by
    /// `schemas/verify-result.schema.json`. `formatName` is the format registry's name
    /// ("onnx", "keras-h5", ...); `version` the tool's. Infinite and NaN values (errors
    /// against a NaN, say) are written as the strings "inf", "-inf" and "nan".
    public func json(formatName: String, version: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let document = VerificationDocument(self, formatName: formatName, version: version)
        return String(decoding: try encoder.encode(document), as: UTF8.self) + "\n"
    }

    /// The first thing that failed, in the order the text report lists them: a structural
    /// difference, a layer (its kernel, graph kernel, probe and bias checks, then its
    /// problems), an output, an end-to-end problem. Nil when the models are equivalent.
    public var firstFailure: VerificationFailure? {
        if let difference = structure.first {
            return VerificationFailure(where: .structure, message: difference)
        }
        for layer in layers where !layer.passed {
            let checks = [("kernel", layer.kernel), ("graph_kernel", layer.graphKernel), ("probe", layer.probe), ("bias", layer.bias)]
            for (check, stats) in checks {
                if let stats, let first = stats.first {
                    return VerificationFailure(where: .layer, name: layer.name, check: check, disagreement: first, tolerance: stats.tolerance)
                }
            }
            let message = layer.problems.first ?? "no check of its kernel could run"
            return VerificationFailure(where: .layer, name: layer.name, check: "problem", message: message)
        }
        for output in outputs {
            if let first = output.stats.first {
                return VerificationFailure(where: .output, name: output.name, check: "output", disagreement: first, tolerance: output.stats.tolerance)
            }
        }
        if let problem = endToEndProblems.first {
            return VerificationFailure(where: .endToEnd, message: problem)
        }
        return nil
    }
}

/// Where verification first failed, with the values when it was a numerical disagreement.
public struct VerificationFailure: Equatable, Sendable {
    public enum Place: String, Sendable {
        case structure, layer, output
        case endToEnd = "end_to_end"
    }

    public var place: Place
    /// The layer or output; nil for the structure and end-to-end problems.
    public var name: String?
    /// "kernel", "graph_kernel", "probe", "bias", "problem" (a layer's) or "output".
    public var check: String?
    /// One line saying what failed.
    public var message: String
    public var disagreement: Disagreement?
    public var tolerance: Double?

    package init(where place: Place, name: String? = nil, check: String? = nil, message: String) {
        self.place = place
        self.name = name
        self.check = check
        self.message = message
    }

    package init(where place: Place, name: String, check: String, disagreement first: Disagreement, tolerance: Double) {
        let index = "[" + first.index.map(String.init).joined(separator: ", ") + "]"
        let message = "\(check == "output" ? "output '\(name)'" : "\(name) \(check)")\(index)\(first.context.map { " (\($0))" } ?? ""): "
            + "expected \(Report.format(first.expected, digits: 9)), FOLDED \(Report.format(first.actual, digits: 9)) (tolerance \(Report.format(tolerance)))"
        self.init(where: place, name: name, check: check, message: message)
        self.disagreement = first
        self.tolerance = tolerance
    }
}

/// The JSON document's layout; every optional is written as null, never left out.
private struct VerificationDocument: Encodable {
    package var formatVersion = VerificationReport.jsonFormatVersion
    package var tool = "verify-equivalence"
    package var version: String
    package var original: String
    package var folded: String
    package var format: String
    package var structure: Structure
    package var layers: [Layer]
    package var endToEnd: EndToEndPart
    package var notes: [String]
    @JSONNull var firstDisagreement: FirstFailure?
    package var equivalent: Bool
    package var verdict: String

    package init(_ report: VerificationReport, formatName: String, version: String) {
        self.version = version
        original = report.original
        folded = report.folded
        format = formatName
        structure = Structure(ok: report.structure.isEmpty, summary: report.structureSummary, differences: report.structure)
        layers = report.layers.map(Layer.init)
        endToEnd = EndToEndPart(report)
        notes = report.notes
        firstDisagreement = report.firstFailure.map(FirstFailure.init)
        equivalent = report.equivalent
        verdict = report.verdictLine
    }

    package struct Structure: Encodable {
        var ok: Bool
        var summary: String
        var differences: [String]
    }

    package struct Layer: Encodable {
        var name: String
        var conv: String
        var description: String
        var passed: Bool
        var linearBlock: Bool
        @JSONNull var kernel: Stats?
        @JSONNull var graphKernel: Stats?
        @JSONNull var probe: Stats?
        @JSONNull var bias: Stats?
        var problems: [String]

        init(_ layer: LayerResult) {
            name = layer.name
            conv = layer.conv
            description = layer.description
            passed = layer.passed
            linearBlock = layer.isLinearBlock
            kernel = layer.kernel.map(Stats.init)
            graphKernel = layer.graphKernel.map(Stats.init)
            probe = layer.probe.map(Stats.init)
            bias = layer.bias.map(Stats.init)
            problems = layer.problems
        }
    }

    package struct EndToEndPart: Encodable {
        var ran: Bool
        @JSONNull var skippedReason: String?
        @JSONNull var inputs: String?
        var outputs: [Output]
        var problems: [String]

        init(_ report: VerificationReport) {
            ran = report.endToEndSkipped == nil
            skippedReason = report.endToEndSkipped
            inputs = ran && !report.inputsDescription.isEmpty ? report.inputsDescription : nil
            outputs = report.outputs.map(Output.init)
            problems = report.endToEndProblems
        }
    }

    /// Error statistics of one comparison.
    package struct Stats: Encodable {
        var worstAbsolute: Double
        var worstRelative: Double
        var tolerance: Double
        var passed: Bool
        var elementCount: Int
        var firstDisagreement: Values?

        init(_ s: ErrorStats) {
            worstAbsolute = s.worstAbsolute
            worstRelative = s.worstRelative
            tolerance = s.tolerance
            passed = s.passed
            elementCount = s.elementCount
            firstDisagreement = s.first.map(Values.init)
        }

        /// Its keys, and `name` for an output, which carries the same fields beside its name.
        enum CodingKeys: String, CodingKey {
            case tolerance, passed, name
            case worstAbsolute
            case worstRelative
            case elementCount
            case firstDisagreement
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try encodeFields(into: &c)
        }

        func encodeFields(into c: inout KeyedEncodingContainer<CodingKeys>) throws {
            try c.encode(worstAbsolute, forKey: .worstAbsolute)
            try c.encode(worstRelative, forKey: .worstRelative)
            try c.encode(tolerance, forKey: .tolerance)
            try c.encode(passed, forKey: .passed)
            try c.encode(elementCount, forKey: .elementCount)
            try c.encode(firstDisagreement, forKey: .firstDisagreement) // nil as null
        }
    }

    /// A graph output's comparison: its name beside the statistics' fields.
    package struct Output: Encodable {
        var name: String
        var stats: Stats

        init(_ output: OutputResult) {
            name = output.name
            stats = Stats(output.stats)
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Stats.CodingKeys.self)
            try c.encode(name, forKey: .name)
            try stats.encodeFields(into: &c)
        }
    }

    /// Where two tensors first disagree.
    package struct Values: Encodable {
        var index: [Int]
        @JSONNull var context: String?
        var expected: Double
        var actual: Double

        init(_ d: Disagreement) {
            index = d.index
            context = d.context
            expected = d.expected
            actual = d.actual
        }
    }

    package struct FirstFailure: Encodable {
        var place: String
        @JSONNull var name: String?
        @JSONNull var check: String?
        var message: String
        @JSONNull var index: [Int]?
        @JSONNull var context: String?
        @JSONNull var expected: Double?
        @JSONNull var actual: Double?
        @JSONNull var tolerance: Double?

        init(_ f: VerificationFailure) {
            place = f.place.rawValue
            name = f.name
            check = f.check
            message = f.message
            index = f.disagreement?.index
            context = f.disagreement?.context
            expected = f.disagreement?.expected
            actual = f.disagreement?.actual
            tolerance = f.tolerance
        }

        /// `place` is written as "where", a Swift keyword.
        enum CodingKeys: String, CodingKey {
            case name, check, message, index, context, expected, actual, tolerance
            case place = "where"
        }
    }
}

/// An optional written as `null` rather than left out (synthesized Encodable drops nil
/// keys), so every key the schema requires is always there.
@propertyWrapper
private struct JSONNull<Value: Encodable>: Encodable {
    package var wrappedValue: Value?

    package init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}
