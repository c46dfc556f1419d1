@testable import DOConvCore
import XCTest

/// `--only` / `--exclude` globs against layer names.
final class LayerSelectionTests: XCTestCase {
    func testGlobsCrossDotsAndMatchBrackets() {
        XCTAssertTrue(Glob("layer1.*").matches("layer1.0.conv1"))
        XCTAssertTrue(Glob("*conv?").matches("module.layer1.0.conv2"))
        XCTAssertTrue(Glob("*.conv[12]").matches("layer1.0.conv2"))
        XCTAssertFalse(Glob("*.conv[!12]").matches("layer1.0.conv2"))
        XCTAssertTrue(Glob("a*b*c").matches("a.x.b.y.c"))
        XCTAssertFalse(Glob("a*b*c").matches("a.x.b.y.d"))
        XCTAssertFalse(Glob("attn").matches("blocks.0.attn"))
        XCTAssertTrue(Glob("[").matches("["), "an unclosed bracket is literal")
        XCTAssertTrue(Glob("").matches(""))
        // No exponential backtracking on many stars.
        XCTAssertFalse(Glob(String(repeating: "*a", count: 30) + "b").matches(String(repeating: "a", count: 200)))
    }

    func testExcludeAndOnly() {
        let selection = LayerSelection(only: ["layer*"], exclude: ["*.conv2"])
        XCTAssertNil(selection.refusal(of: "layer1.0.conv1"))
        XCTAssertEqual(selection.refusal(of: "layer1.0.conv2"), "left as it is: --exclude *.conv2")
        XCTAssertEqual(selection.refusal(of: "stem"), "left as it is: no --only pattern matches it")
        XCTAssertTrue(LayerSelection().takesEverything)
        XCTAssertNil(LayerSelection().refusal(of: "anything"))
    }

    func testNamesInNestedStateDictsMatchWithOrWithoutTheirPath() {
        let selection = LayerSelection(exclude: ["attn"])
        XCTAssertNotNil(selection.refusal(of: "state_dict/attn"))
        XCTAssertNotNil(selection.refusal(of: "attn"))
        XCTAssertNil(selection.refusal(of: "state_dict/module.attn"))
        XCTAssertNotNil(LayerSelection(exclude: ["state_dict_ema/*"]).refusal(of: "state_dict_ema/conv1"))
        XCTAssertNil(LayerSelection(exclude: ["state_dict_ema/*"]).refusal(of: "state_dict/conv1"))
    }
}
