import DOConvJSON
import XCTest

/// The JSON reader and writer that replaced JSONSerialization, on what the configs doconv
/// reads hold: Python's json.dumps output (its escapes, NaN, Infinity, 1.0 floats), Keras
/// layer names with slashes and non-ASCII letters, and hostile texts.
final class JSONTreeTests: XCTestCase {
    func testValuesAreThePlainSwiftTypes() throws {
        let value = try JSONTree.parse(#"{"a": [1, -2, 3.5, 1.0, 1e-05, true, false, null, "x"], "b": {}}"#)
        let object = try XCTUnwrap(value as? [String: Any])
        let list = try XCTUnwrap(object["a"] as? [Any])
        XCTAssertEqual(list[0] as? Int, 1)
        XCTAssertEqual(list[1] as? Int, -2)
        XCTAssertEqual(list[2] as? Double, 3.5)
        XCTAssertEqual(list[3] as? Double, 1.0, "1.0 stays a float, as Python wrote it")
        XCTAssertEqual(list[4] as? Double, 1e-05)
        XCTAssertEqual(list[5] as? Bool, true)
        XCTAssertEqual(list[6] as? Bool, false)
        XCTAssertTrue(list[7] is JSONNull)
        XCTAssertEqual(list[8] as? String, "x")
        XCTAssertEqual((object["b"] as? [String: Any])?.count, 0)
    }

    func testPythonsNonFiniteNumbersAndHugeIntegers() throws {
        let list = try XCTUnwrap(try JSONTree.parse("[NaN, Infinity, -Infinity, 18446744073709551616, -0]") as? [Any])
        XCTAssertTrue((list[0] as? Double)?.isNaN == true)
        XCTAssertEqual(list[1] as? Double, .infinity)
        XCTAssertEqual(list[2] as? Double, -.infinity)
        XCTAssertEqual(list[3] as? Double, 18446744073709551616.0, "past Int's range: a double, as JSONSerialization read it")
        XCTAssertEqual(list[4] as? Int, 0)
    }

    func testEscapesAndSurrogatePairsAsPythonWritesThem() throws {
        // json.dumps("conv/1 \u00e9\u4e2d\U0001F600\t\"\\") with ensure_ascii=True
        let text = #""conv/1 \u00e9\u4e2d\ud83d\ude00\t\"\\""#
        XCTAssertEqual(try JSONTree.parse(text) as? String, "conv/1 é中😀\t\"\\")
        XCTAssertEqual(try JSONTree.parse(#""a\/b""#) as? String, "a/b")
    }

    func testWritingKeepsNamesAndFloatsAsRead() throws {
        let source = #"{"name": "block/conv 1", "eps": 1.0, "rate": 0.001, "n": 3, "t": "é\u0001", "z": null, "l": [1, 2.5]}"#
        let written = try JSONTree.string(try JSONTree.parse(source))
        XCTAssertEqual(written, #"{"eps":1.0,"l":[1,2.5],"n":3,"name":"block/conv 1","rate":0.001,"t":"é\u0001","z":null}"#)
        XCTAssertEqual(try JSONTree.string(["a/b": 1], style: JSONTree.Style(escapesSlashes: true)), #"{"a\/b":1}"#)
        XCTAssertEqual(try JSONTree.string([Double.nan, Double.infinity] as [Any]), "[NaN,Infinity]")
    }

    func testPrettyPrintingIndentsByTwo() throws {
        let written = try JSONTree.string(["b": [1], "a": [String: Any]()] as [String: Any], style: JSONTree.Style(prettyPrinted: true))
        XCTAssertEqual(written, "{\n  \"a\": {},\n  \"b\": [\n    1\n  ]\n}")
    }

    func testBadTextsAreErrorsWithTheirOffset() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "\"abc", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "tru", "[1] 2", "\"a\u{01}\""] {
            XCTAssertThrowsError(try JSONTree.parse(text), text) { error in
                XCTAssertTrue(error is JSONTree.SyntaxError, "\(text): \(error)")
            }
        }
        XCTAssertThrowsError(try JSONTree.parse([UInt8]([0x22, 0xFF, 0x22])), "invalid UTF-8 in a string")
    }

    func testDeepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try JSONTree.parse(deep)) { error in
            XCTAssertTrue("\(error)".contains("nested deeper"), "\(error)")
        }
    }

    func testNumbersReadAsTheConfigsUseThem() {
        XCTAssertEqual(JSONNumber.int(3), 3)
        XCTAssertEqual(JSONNumber.int(3.0), 3)
        XCTAssertNil(JSONNumber.int(2.5))
        XCTAssertNil(JSONNumber.int(1e30))
        XCTAssertNil(JSONNumber.int("3"))
        XCTAssertEqual(JSONNumber.double(2), 2.0)
        XCTAssertEqual(JSONNumber.bool(true), true)
        XCTAssertEqual(JSONNumber.bool(0), false)
        XCTAssertEqual(JSONNumber.ints([1, 2.0] as [Any]), [1, 2])
        XCTAssertNil(JSONNumber.ints([1, "2"] as [Any]))
    }
}
