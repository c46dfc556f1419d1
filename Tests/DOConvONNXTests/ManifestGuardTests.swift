import DOConvTestSupport
import Foundation
import XCTest

/// Issue 14, item 7: a manifest without entries fails the tests that loop over it.
final class ManifestGuardTests: XCTestCase {
    func testAnEmptyManifestThrows() throws {
        let folder = try PackageTestSupport.temporaryDirectory(self)
        try Data("[]".utf8).write(to: folder.appendingPathComponent("MANIFEST.json"))
        XCTAssertThrowsError(try PackageTestSupport.manifest(folder)) { error in
            XCTAssertTrue(error is PackageTestSupport.EmptyManifest, "\(error)")
        }
    }

    func testTheCommittedManifestListsFixtures() throws {
        XCTAssertFalse(try PackageTestSupport.manifest().isEmpty)
    }
}
