import DOConvCore
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Lines the tools' text summaries share (doconv-fold's and doconv-expand's).
public enum SummaryLines {
    /// "parameters 1,234 -> 567 (-54.1%), weights 4.8 KiB -> 2.2 KiB".
    public static func sizes(_ s: FoldSummary) -> String {
        let change = s.parametersBefore > 0 ? 100 * Double(s.parametersAfter - s.parametersBefore) / Double(s.parametersBefore) : 0
        return "parameters \(ReportFormat.grouped(s.parametersBefore)) -> \(ReportFormat.grouped(s.parametersAfter)) (\(CFormat.string("%+.1f", change))%), "
            + "weights \(ReportFormat.bytes(s.bytesBefore)) -> \(ReportFormat.bytes(s.bytesAfter))"
    }

    /// "time 12.3 ms".
    public static func time(_ elapsed: Duration) -> String {
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return "time \(CFormat.string("%.1f", ms)) ms"
    }

    /// One significant digit and an exponent: "1.2e-07".
    public static func scientific(_ x: Double) -> String { CFormat.string("%.1e", x) }
}
