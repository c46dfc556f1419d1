import DOConvCore
import Glibc
import XCTest

/// Memory for folded kernels: aligned for huge pages when large, populated on request, and
/// nil (an error line for the caller) rather than an abort when it cannot be had.
final class KernelMemoryTests: XCTestCase {
    func testLargeKernelMemoryIsAlignedAndFreeable() throws {
        for size in [1, 4096, (2 << 20) + 12, 9 << 20] {
            let memory = try XCTUnwrap(KernelMemory.allocate(byteCount: size))
            if size >= 2 << 20 { XCTAssertEqual(Int(bitPattern: memory) % (2 << 20), 0) }
            KernelMemory.populate(UnsafeMutableRawBufferPointer(start: memory, count: size))
            memory.initializeMemory(as: UInt8.self, repeating: 7, count: size)
            XCTAssertEqual(memory.load(fromByteOffset: size - 1, as: UInt8.self), 7)
            free(memory)
        }
    }

    func testKernelMemoryThatCannotBeHadIsNil() {
        XCTAssertNil(KernelMemory.allocate(byteCount: Int.max / 2))
        XCTAssertNil(KernelBuffer(byteCount: Int.max / 2))
        XCTAssertEqual(KernelBuffer(byteCount: 12)?.bytes.count, 12)
    }
}
