import XCTest
@testable import DOConvCore

final class ElementCodecTests: XCTestCase {
    func roundTrip(_ values: [Float], _ type: ElementType) throws -> [Float] {
        let bytes = ElementCodec.encode(values, as: type)
        XCTAssertEqual(bytes.count, values.count * type.byteWidth)
        return try bytes.withUnsafeBytes { raw throws(TensorError) in try ElementCodec.decode(raw, as: type, count: values.count) }
    }

    func testExactValuesSurviveEveryType() throws {
        let values: [Float] = [0, 1, -2, 0.5, 1024, -0.125]
        for type in ElementType.allCases { XCTAssertEqual(try roundTrip(values, type), values, "\(type)") }
    }

    func testBFloat16RoundsToNearestEven() throws {
        // 1 + 2^-8 is halfway between two bfloat16 values: ties go to the even one (1.0).
        XCTAssertEqual(try roundTrip([1 + 0x1p-8], .bfloat16), [1])
        XCTAssertEqual(try roundTrip([1 + 0x1p-8 + 0x1p-12], .bfloat16), [1 + 0x1p-7])
        XCTAssertTrue(try roundTrip([.nan], .bfloat16)[0].isNaN)
    }

    func testFloat16Rounds() throws {
        XCTAssertEqual(try roundTrip([1 + 0x1p-12], .float16), [1])
        XCTAssertEqual(try roundTrip([70000], .float16), [.infinity])
    }

    func testDecodeRejectsWrongByteCount() {
        let bytes: [UInt8] = [0, 0, 0]
        XCTAssertThrowsError(try bytes.withUnsafeBytes { raw throws(TensorError) in try ElementCodec.decode(raw, as: .float32, count: 1) })
    }

    func testTensorChecksShapeAndTransposes() throws {
        XCTAssertThrowsError(try Tensor(shape: [2, 2], values: [1, 2, 3]))
        XCTAssertThrowsError(try Tensor(shape: [-1], values: []))
        XCTAssertNil(Tensor.elementCount(of: [Int.max, 2]))
        let t = try Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try t.transposed([1, 0]), try Tensor(shape: [3, 2], values: [1, 4, 2, 5, 3, 6]))
    }
}
