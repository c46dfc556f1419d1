@testable import DOConvTensorFlow
import XCTest

final class CRC32CTests: XCTestCase {
    /// Bit by bit, the definition: the reference the sliced tables must agree with.
    static func bitwise(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            c ^= UInt32(byte)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    func testStandardCheckValues() {
        // The CRC-32C of "123456789" is 0xE3069283 (the standard check value); of 32 zero
        // bytes 0x8A9136AA (RFC 3720, iSCSI).
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum([]), 0)
    }

    func testSlicedTablesAgreeWithTheBitwiseDefinition() {
        var generator = SystemRandomNumberGenerator()
        for length in Array(0..<40) + [63, 64, 65, 1000, 4097] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertEqual(CRC32C.checksum(bytes), Self.bitwise(bytes), "\(length) bytes")
            // Piece by piece, at every split, gives the same CRC.
            if length < 40 {
                for split in 0...length {
                    let head = bytes[..<split].withUnsafeBytes { CRC32C.checksum($0) }
                    XCTAssertEqual(bytes[split...].withUnsafeBytes { CRC32C.extend(head, $0) }, Self.bitwise(bytes))
                }
            }
        }
    }

    func testMaskRoundTripsAndMatchesTensorFlow() {
        for crc: UInt32 in [0, 1, 0xFFFF_FFFF, 0xE306_9283, 0x1234_5678] {
            XCTAssertEqual(CRC32C.unmask(CRC32C.mask(crc)), crc)
            XCTAssertEqual(CRC32C.mask(crc), ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
        }
    }
}
