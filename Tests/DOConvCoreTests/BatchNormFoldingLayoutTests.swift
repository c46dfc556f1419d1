import XCTest
@testable import DOConvCore

/// `BatchNormFolding` with the output channel last (Keras HWIO kernels) must compute what it
/// computes with the output channel first, transposed; its probe must accept a true
/// channels-last fusion and reject a wrong one, including one folded along the wrong axis.
final class BatchNormFoldingLayoutTests: XCTestCase {
    /// (M, N, Cin, Cout) = (3, 2, 4, 5): a row of 24 weights per output channel.
    let (m, n, cin, cout) = (3, 2, 4, 5)

    func folding(seed: UInt64 = 7) throws -> BatchNormFolding {
        var random = SeededGenerator(seed: seed)
        func values(_ range: ClosedRange<Float>) -> [Float] { (0..<cout).map { _ in Float.random(in: range, using: &random) } }
        return try BatchNormFolding(gamma: values(-2...2), beta: values(-1...1), mean: values(-1...1), variance: values(0.5...2), epsilon: 1e-3)
    }

    /// A random OIHW kernel and the same kernel as HWIO.
    func kernels(seed: UInt64 = 11) -> (oihw: [Float], hwio: [Float]) {
        var random = SeededGenerator(seed: seed)
        let oihw = (0..<(cout * cin * m * n)).map { _ in Float.random(in: -1...1, using: &random) }
        var hwio = [Float](repeating: 0, count: oihw.count)
        for o in 0..<cout {
            for c in 0..<cin {
                for i in 0..<m {
                    for j in 0..<n { hwio[((i * n + j) * cin + c) * cout + o] = oihw[((o * cin + c) * m + i) * n + j] }
                }
            }
        }
        return (oihw, hwio)
    }

    func testChannelsLastIsTheTransposeOfChannelsFirst() throws {
        let bn = try folding()
        let (oihw, hwio) = kernels()
        let bias: [Float] = [0.5, -0.25, 1, 0, -1]
        let first = try bn.fold(kernel: oihw, bias: bias)
        let last = try bn.fold(kernel: hwio, bias: bias, outputAxis: .last)
        XCTAssertEqual(last.bias, first.bias)
        // The OIHW result transposed to HWIO by the same index map as `kernels`.
        var expected = [Float](repeating: 0, count: hwio.count)
        for o in 0..<cout {
            for c in 0..<cin {
                for i in 0..<m {
                    for j in 0..<n { expected[((i * n + j) * cin + c) * cout + o] = first.kernel[((o * cin + c) * m + i) * n + j] }
                }
            }
        }
        XCTAssertEqual(last.kernel, expected)
    }

    func testProbeAcceptsTrueChannelsLastFusionAndRejectsWrongOnes() throws {
        let bn = try folding()
        let hwio = kernels().hwio
        let fused = try bn.fold(kernel: hwio, bias: nil, outputAxis: .last)
        XCTAssertLessThan(bn.probe(kernel: hwio, bias: nil, fused: fused, outputAxis: .last), 1e-6)

        var tampered = fused
        tampered.kernel[7] += 0.05
        XCTAssertGreaterThan(bn.probe(kernel: hwio, bias: nil, fused: tampered, outputAxis: .last), 1e-4)

        // Scaling the wrong axis (treating an HWIO kernel as OIHW) is caught.
        let wrongAxis = try bn.fold(kernel: hwio, bias: nil)
        XCTAssertGreaterThan(bn.probe(kernel: hwio, bias: nil, fused: wrongAxis, outputAxis: .last), 1e-2)
    }

    func testMissingBiasCountsAsZero() throws {
        let bn = try folding()
        let hwio = kernels().hwio
        let withZeros = try bn.fold(kernel: hwio, bias: [Float](repeating: 0, count: cout), outputAxis: .last)
        let without = try bn.fold(kernel: hwio, bias: nil, outputAxis: .last)
        XCTAssertEqual(withZeros.kernel, without.kernel)
        XCTAssertEqual(withZeros.bias, without.bias)
    }

    func testMismatchedChannelsThrow() throws {
        let bn = try folding()
        XCTAssertThrowsError(try bn.fold(kernel: [Float](repeating: 1, count: 7), bias: nil, outputAxis: .last))
        XCTAssertThrowsError(try bn.fold(kernel: kernels().hwio, bias: [1, 2], outputAxis: .last))
    }
}
