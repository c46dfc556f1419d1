import DOConvCore
import Foundation
import XCTest

/// The reports' number formats against printf, which they replace inside the core.
final class ReportFormatTests: XCTestCase {
    func testGroupedThousands() {
        XCTAssertEqual(ReportFormat.grouped(0), "0")
        XCTAssertEqual(ReportFormat.grouped(999), "999")
        XCTAssertEqual(ReportFormat.grouped(1000), "1,000")
        XCTAssertEqual(ReportFormat.grouped(1_234_567), "1,234,567")
        XCTAssertEqual(ReportFormat.grouped(-1234), "-1,234")
    }

    func testBytesRoundLikePrintf() {
        var random = SeededGenerator(seed: 3)
        // Exact halves (1.25 MiB, 2.75 KiB) and random sizes across the three units.
        var sizes = [0, 1, 1023, 1024, 1 << 20, (1 << 20) + (1 << 18), 2816, 5 << 30]
        sizes += (0..<2000).map { _ in Int.random(in: 0...(1 << 34), using: &random) >> Int.random(in: 0...30, using: &random) }
        for n in sizes {
            let expected: String
            if n >= 1 << 20 { expected = String(format: "%.1f MiB", Double(n) / Double(1 << 20)) }
            else if n >= 1 << 10 { expected = String(format: "%.1f KiB", Double(n) / Double(1 << 10)) }
            else { expected = "\(n) B" }
            XCTAssertEqual(ReportFormat.bytes(n), expected, "\(n)")
        }
    }
}
