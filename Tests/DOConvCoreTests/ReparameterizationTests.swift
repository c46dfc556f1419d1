import XCTest
@testable import DOConvCore

/// The merging rules of `--reparam`, each checked by running the block's stages directly on
/// random images (`AffineConv.apply`, a plain loop that shares nothing with the merging).
final class ReparameterizationTests: XCTestCase {
    var generator = SeededGenerator(seed: 7)

    func random(_ count: Int) -> [Double] { (0..<count).map { _ in Double.random(in: -1...1, using: &generator) } }

    func conv(_ cin: Int, _ cout: Int, _ size: [Int], stride: [Int] = [1, 1], dilation: [Int] = [1, 1], pads: [Int], groups: Int = 1,
              bias: Bool = true) throws -> AffineConv {
        try AffineConv(outChannels: cout, inChannels: cin, groups: groups, kernelSize: size, stride: stride, dilation: dilation, pads: pads,
                       kernel: random(cout * cin / groups * size[0] * size[1]), bias: bias ? random(cout) : nil)
    }

    func bn(_ channels: Int) throws -> AffineConv {
        try .channelAffine(scale: random(channels).map { 1 + $0 / 2 }, shift: random(channels))
    }

    /// Merges, then probes the merged conv against the stages.
    @discardableResult
    func assertMerges(_ block: LinearBlock, file: StaticString = #filePath, line: UInt = #line) throws -> AffineConv {
        let merged = try block.merged()
        let error = try LinearBlockProbe.relativeError(branches: try block.probeBranches(), merged: merged, images: 3)
        XCTAssertLessThan(error, 1e-12, file: file, line: line)
        return merged
    }

    func testRepVGGBlockWithIdentity() throws {
        let block = LinearBlock(branches: [[try conv(6, 6, [3, 3], pads: [1, 1, 1, 1], bias: false), try bn(6)],
                                           [try conv(6, 6, [1, 1], pads: [0, 0, 0, 0], bias: false), try bn(6)],
                                           [try bn(6)]], inChannels: 6)
        let merged = try assertMerges(block)
        XCTAssertEqual(merged.kernelSize, [3, 3])
        XCTAssertEqual(merged.groups, 1)
        XCTAssertEqual(merged.pads, [1, 1, 1, 1])
    }

    func testACNetStridedGroupedAndDepthwise() throws {
        for (groups, stride) in [(1, 1), (1, 2), (2, 1), (4, 2)] {
            let block = LinearBlock(branches: [[try conv(4, 4, [3, 3], stride: [stride, stride], pads: [1, 1, 1, 1], groups: groups)],
                                               [try conv(4, 4, [1, 3], stride: [stride, stride], pads: [0, 1, 0, 1], groups: groups)],
                                               [try conv(4, 4, [3, 1], stride: [stride, stride], pads: [1, 0, 1, 0], groups: groups)]], inChannels: 4)
            XCTAssertEqual(try assertMerges(block).groups, groups)
        }
    }

    func testDilatedBranchesAndAPointwiseOne() throws {
        let block = LinearBlock(branches: [[try conv(3, 5, [3, 3], dilation: [2, 2], pads: [2, 2, 2, 2])],
                                           [try conv(3, 5, [1, 1], pads: [0, 0, 0, 0])]], inChannels: 3)
        XCTAssertEqual(try assertMerges(block).dilation, [2, 2])
    }

    func testMobileOneDepthwiseStageWithScaleAndSkip() throws {
        let branches = try (0..<4).map { _ in [try conv(8, 8, [3, 3], pads: [1, 1, 1, 1], groups: 8, bias: false), try bn(8)] }
            + [[try conv(8, 8, [1, 1], pads: [0, 0, 0, 0], groups: 8, bias: false), try bn(8)], [try bn(8)]]
        XCTAssertEqual(try assertMerges(LinearBlock(branches: branches, inChannels: 8)).groups, 8)
    }

    func testAveragePoolBranchAndPlainIdentity() throws {
        let block = LinearBlock(branches: [[try conv(4, 4, [3, 3], pads: [1, 1, 1, 1])],
                                           [try .averagePool(channels: 4, kernelSize: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1]), try bn(4)],
                                           []], inChannels: 4)
        try assertMerges(block)
    }

    func testExpandNetsChain() throws {
        let block = LinearBlock(branches: [[try conv(3, 12, [1, 1], pads: [0, 0, 0, 0], bias: false),
                                            try conv(12, 16, [3, 3], stride: [2, 2], pads: [1, 1, 1, 1]),
                                            try conv(16, 4, [1, 1], pads: [0, 0, 0, 0])]], inChannels: 3)
        let merged = try assertMerges(block)
        XCTAssertEqual([merged.outChannels, merged.inChannels, merged.stride[0]], [4, 3, 2])
    }

    func testAChainWithABiasBeforePaddingIsRefused() throws {
        let block = LinearBlock(branches: [[try conv(3, 6, [1, 1], pads: [0, 0, 0, 0], bias: true), try conv(6, 4, [3, 3], pads: [1, 1, 1, 1])]], inChannels: 3)
        XCTAssertThrowsError(try block.merged()) { XCTAssertTrue("\($0)".contains("zero padding"), "\($0)") }
        // Without padding the same chain is exact.
        try assertMerges(LinearBlock(branches: [[try conv(3, 6, [1, 1], pads: [0, 0, 0, 0]), try conv(6, 4, [3, 3], pads: [0, 0, 0, 0])]], inChannels: 3))
    }

    /// DBB's 1x1 -> BNAndPad -> kxk: the kxk conv pads with the value the 1x1 conv (with its
    /// BN) computes from a zero, so the chain is one kxk conv padding with zeros.
    func testAPaddingWithTheBiasBeforeItComposes() throws {
        let first = try conv(3, 6, [1, 1], pads: [0, 0, 0, 0], bias: true)
        var second = try conv(6, 4, [3, 3], pads: [1, 1, 1, 1])
        second.padValue = first.bias
        let merged = try assertMerges(LinearBlock(branches: [[first, second]], inChannels: 3))
        XCTAssertNil(merged.padValue)
        XCTAssertEqual(merged.pads, [1, 1, 1, 1])
        // An average pool padded alike (DBB's 1x1 -> BNAndPad -> average branch).
        var pool = try AffineConv.averagePool(channels: 6, kernelSize: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1])
        pool.padValue = first.bias
        XCTAssertNil(try assertMerges(LinearBlock(branches: [[first, pool]], inChannels: 3)).padValue)
        // Another value is refused, naming the difference.
        second.padValue = first.bias.map { $0 + 0.5 }
        XCTAssertThrowsError(try LinearBlock(branches: [[first, second]], inChannels: 3).merged()) {
            XCTAssertTrue("\($0)".contains("pads with values that differ from the first conv's bias"), "\($0)")
        }
    }

    /// `apply` pads with `padValue`: the same as the image padded by hand with those values,
    /// then the conv without padding.
    func testApplyPadsWithTheValue() throws {
        let value = [0.75, -1.5]
        var padded = try conv(2, 3, [3, 3], pads: [1, 2, 1, 0], bias: true)
        padded.padValue = value
        let image = FeatureMap(channels: 2, height: 4, width: 5, values: random(40))
        // 1 row above and below, 2 columns left, none right.
        var grown = FeatureMap(channels: 2, height: 6, width: 7, values: [])
        for c in 0..<2 {
            for y in 0..<6 {
                for x in 0..<7 {
                    let inside = y >= 1 && y < 5 && x >= 2
                    grown.values.append(inside ? image.values[(c * 4 + y - 1) * 5 + x - 2] : value[c])
                }
            }
        }
        var plain = padded
        plain.padValue = nil
        plain.pads = [0, 0, 0, 0]
        let want = try plain.apply(to: grown).values
        let got = try padded.apply(to: image).values
        XCTAssertEqual(got.count, want.count)
        for k in want.indices { XCTAssertEqual(got[k], want[k], accuracy: 1e-12) }
    }

    func testRefusals() throws {
        let wide = LinearBlock(branches: [[try conv(3, 3, [3, 3], pads: [1, 1, 1, 1]), try conv(3, 3, [3, 3], pads: [1, 1, 1, 1])]], inChannels: 3)
        XCTAssertThrowsError(try wide.merged()) { XCTAssertTrue("\($0)".contains("larger kernel"), "\($0)") }
        let strides = LinearBlock(branches: [[try conv(3, 3, [3, 3], stride: [2, 2], pads: [1, 1, 1, 1])], [try conv(3, 3, [1, 1], pads: [0, 0, 0, 0])]], inChannels: 3)
        XCTAssertThrowsError(try strides.merged()) { XCTAssertTrue("\($0)".contains("strides differ"), "\($0)") }
        // A 1x1 branch padded by 1 reads other pixels than the 3x3 centre: no place lines it up.
        let misaligned = LinearBlock(branches: [[try conv(3, 3, [3, 3], pads: [0, 0, 0, 0])], [try conv(3, 3, [1, 1], pads: [0, 0, 0, 0])]], inChannels: 3)
        XCTAssertThrowsError(try misaligned.merged()) { XCTAssertTrue("\($0)".contains("does not line up"), "\($0)") }
    }

    func testRegroupingKeepsTheMap() throws {
        let grouped = try conv(8, 8, [3, 3], pads: [1, 1, 1, 1], groups: 4)
        for target in [1, 2] {
            let error = try LinearBlockProbe.relativeError(branches: [[grouped]], merged: grouped.regrouped(to: target))
            XCTAssertLessThan(error, 1e-14)
        }
    }

    func testTheProbeSeesAWrongMerge() throws {
        let block = LinearBlock(branches: [[try conv(4, 4, [3, 3], pads: [1, 1, 1, 1])], [try conv(4, 4, [1, 1], pads: [0, 0, 0, 0])]], inChannels: 4)
        var merged = try block.merged()
        merged.kernel[0] += 0.1 // a corner tap
        XCTAssertGreaterThan(try LinearBlockProbe.relativeError(branches: block.probeBranches(), merged: merged), 1e-3)
    }
}
