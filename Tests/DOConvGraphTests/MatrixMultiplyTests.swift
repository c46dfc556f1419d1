import XCTest
@testable import DOConvGraph
import DOConvGraphKernels
import DOConvGraphKernelsAVX2

/// The executor's GEMM and permutes against plain loops, on shapes that cross every tile and
/// panel edge, with each option (B transposed, a row bias, accumulation) and thread count.
final class MatrixMultiplyTests: XCTestCase {
    var random = SystemRandomNumberGenerator()

    func randomMatrix(_ count: Int) -> [Double] { (0..<count).map { _ in Double.random(in: -1...1, using: &random) } }

    /// The builds this machine can run: portable, and AVX2 + FMA where the CPU has it.
    var multipliers: [TileMultiplier] { [FastKernels.multiplier, .portable] }

    func testProductsMatchPlainLoopsForEveryOption() {
        // Rows over a tile (64), columns over a tile (192) and not a multiple of 8, K over a
        // block (256); and a shallow K, which makes taller tiles.
        for (m, n, k) in [(70, 201, 300), (131, 45, 17), (3, 5, 1)] {
            let a = randomMatrix(m * k), b = randomMatrix(k * n), bias = randomMatrix(m), start = randomMatrix(m * n)
            let bt = (0..<(n * k)).map { b[($0 % k) * n + $0 / k] } // B transposed, row j = column j
            for multiplier in multipliers {
                for transposed in [false, true] {
                    for withBias in [false, true] {
                        for accumulate in [false, true] {
                            var results: [[Double]] = []
                            for threads in [1, 3] {
                                var c = start
                                a.withUnsafeBufferPointer { a in
                                    (transposed ? bt : b).withUnsafeBufferPointer { b in
                                        bias.withUnsafeBufferPointer { bias in
                                            c.withUnsafeMutableBufferPointer { c in
                                                MatrixMultiply.multiply(multiplier, m: m, n: n, k: k, a: a.baseAddress!, lda: k, b: b.baseAddress!,
                                                                        ldb: transposed ? k : n, transposedB: transposed, c: c.baseAddress!, ldc: n,
                                                                        accumulate: accumulate, rowBias: withBias ? bias.baseAddress : nil, threads: threads)
                                            }
                                        }
                                    }
                                }
                                results.append(c)
                            }
                            XCTAssertEqual(results[0], results[1], "\(multiplier.name) \(m)x\(n)x\(k): the thread count changed the result")
                            var worst = 0.0
                            for i in 0..<m {
                                for j in 0..<n {
                                    var sum = 0.0
                                    for p in 0..<k { sum += a[i * k + p] * b[p * n + j] }
                                    let expected = (accumulate ? start[i * n + j] : 0) + sum + (withBias ? bias[i] : 0)
                                    worst = max(worst, abs(expected - results[0][i * n + j]))
                                }
                            }
                            XCTAssertLessThan(worst, 1e-12, "\(multiplier.name) \(m)x\(n)x\(k) transposed \(transposed) bias \(withBias) accumulate \(accumulate)")
                        }
                    }
                }
            }
        }
    }

    func testPermuteMatchesIndexArithmetic() {
        let shape = [3, 20, 1, 37]
        let labels: [Character] = ["a", "b", "c", "d"]
        let data = randomMatrix(shape.reduce(1, *))
        let strides = TensorValue.strides(of: shape)
        for target in [["d", "a", "c", "b"], ["b", "d", "a", "c"], ["a", "c", "d", "b"], ["c", "a", "b", "d"]] as [[Character]] {
            let result = EinsumContraction.permute(data, labels: labels, shape: shape, to: target)
            let dims = target.map { shape[labels.firstIndex(of: $0)!] }
            for flat in 0..<data.count {
                let index = TensorValue.index(of: flat, in: dims)
                var source = 0
                for (axis, label) in target.enumerated() { source += index[axis] * strides[labels.firstIndex(of: label)!] }
                if result[flat] != data[source] { return XCTFail("permute to \(String(target)) differs at \(index)") }
            }
        }
    }

    func testShortAndLongContractionsAgree() throws {
        // One summed label of 9 (summed in place) and of 80 (through the GEMM), against a plain loop.
        for depth in [9, 80] {
            let (i, m, o) = (7, 9, 20)
            let d = TensorValue(.float, shape: [i, m, depth], floats: randomMatrix(i * m * depth))
            let w = TensorValue(.float, shape: [o, i, depth], floats: randomMatrix(o * i * depth))
            let result = try XCTUnwrap(EinsumContraction.contract("ims,ois->oim", [d, w], threads: 2))
            XCTAssertEqual(result.shape, [o, i, m])
            let (dv, wv, rv) = (d.doubles, w.doubles, result.doubles)
            for a in 0..<o {
                for b in 0..<i {
                    for c in 0..<m {
                        var sum = 0.0
                        for s in 0..<depth { sum += dv[(b * m + c) * depth + s] * wv[(a * i + b) * depth + s] }
                        XCTAssertEqual(rv[(a * i + b) * m + c], sum, accuracy: 1e-12)
                    }
                }
            }
        }
    }
}
