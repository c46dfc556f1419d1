import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The report as one JSON document (keys sorted, two-space indentation), as described by
/// `schemas/inspect-report.schema.json`.
public enum JSONReport {
    public static func render(_ report: InspectReport) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(report), as: UTF8.self) + "\n"
    }

    public static func decode(_ text: String) throws -> InspectReport {
        try JSONDecoder().decode(InspectReport.self, from: Data(text.utf8))
    }
}
