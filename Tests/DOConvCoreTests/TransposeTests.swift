import DOConvCore
import XCTest

/// `Tensor.transposed` (row-wise strided gathers) against the definition, element by element.
final class TransposeTests: XCTestCase {
    func testEveryPermutationOfSmallShapesMatchesTheDefinition() throws {
        var generator = SystemRandomNumberGenerator()
        for shape in [[5], [3, 4], [2, 3, 4], [3, 1, 4, 2], [2, 3, 2, 5]] {
            let count = shape.reduce(1, *)
            let tensor = try Tensor(shape: shape, values: (0..<count).map { _ in Float.random(in: -1...1, using: &generator) })
            for perm in Self.permutations(Array(shape.indices)) {
                let result = try tensor.transposed(perm)
                XCTAssertEqual(result.shape, perm.map { shape[$0] })
                // result[i0, i1, ...] == tensor[j] where j's axis perm[k] is i_k.
                for flat in 0..<count {
                    var rest = flat
                    var source = [Int](repeating: 0, count: shape.count)
                    for k in stride(from: shape.count - 1, through: 0, by: -1) {
                        source[perm[k]] = rest % result.shape[k]
                        rest /= result.shape[k]
                    }
                    let offset = source.indices.reduce(0) { $0 * shape[$1] + source[$1] }
                    XCTAssertEqual(result.values[flat], tensor.values[offset], "shape \(shape) perm \(perm) at \(flat)")
                }
            }
        }
    }

    static func permutations(_ items: [Int]) -> [[Int]] {
        guard items.count > 1 else { return [items] }
        return items.indices.flatMap { k -> [[Int]] in
            var rest = items
            let first = rest.remove(at: k)
            return permutations(rest).map { [first] + $0 }
        }
    }
}
