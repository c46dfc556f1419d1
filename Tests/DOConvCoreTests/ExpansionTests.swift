@testable import DOConvCore
import XCTest

/// doconv-expand's arithmetic: a plain kernel expanded into W and D composes back to exactly
/// that kernel, in both layouts, for every group count and Dmul, and no column is dead.
final class ExpansionTests: XCTestCase {
    /// The composite kernel written out as the reference layers compute it (FORMATS.md),
    /// OIHW, independently of ScalarFold: PyTorch `einsum('ims,ois->oim', D + I, reshape(W,
    /// (Cout/g, Cin, Dmul)))`, Keras `einsum('msi,sio->mio', D + I, reshape(W, (Dmul, Cin,
    /// Cout/g)))` transposed from HWIO.
    func composed(_ e: DOConvExpansion) -> [Double] {
        let g = e.geometry
        let (mn, dmul, cin, cout) = (g.kernelArea, g.depthMultiplier, g.inChannels, g.outChannels)
        var d = e.d ?? []
        if let identity = e.identity { for k in d.indices { d[k] += identity[k] } }
        var kernel = [Double](repeating: 0, count: g.kernelCount)
        let perGroup = cout / g.groups
        for o in 0..<perGroup {
            for i in 0..<cin {
                for m in 0..<mn {
                    var sum = 0.0
                    for s in 0..<dmul {
                        let dt: Double
                        let w: Double
                        switch e.layout {
                        case .pytorch:
                            dt = mn == 1 ? (s == m ? 1 : 0) : d[(i * mn + m) * dmul + s]
                            w = e.w[(o * cin + i) * dmul + s]
                        case .keras:
                            dt = mn == 1 ? (s == m ? 1 : 0) : d[(m * dmul + s) * cin + i]
                            w = e.w[(s * cin + i) * perGroup + o]
                        }
                        sum += dt * w
                    }
                    switch e.layout {
                    case .pytorch: kernel[(o * cin + i) * mn + m] = sum // (Cout/g, Cin, MN) is (Cout, Cin/g, M, N)'s memory
                    case .keras: kernel[(m * cin + i) * perGroup + o] = sum // (MN, Cin, Cout/g) is HWIO's memory
                    }
                }
            }
        }
        return kernel
    }

    func plainKernel(count: Int, seed: UInt64) -> [Double] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Double(Float.random(in: -1...1, using: &generator)) }
    }

    func testEveryGeometryComposesBackExactly() throws {
        let cases: [(cin: Int, cout: Int, groups: Int, m: Int, n: Int, dmul: Int?)] = [
            (3, 8, 1, 3, 3, nil), (8, 8, 8, 3, 3, nil), (8, 16, 2, 3, 3, nil), (16, 16, 1, 1, 3, nil),
            (16, 8, 1, 1, 1, nil), (4, 6, 2, 3, 3, 20), (6, 6, 6, 3, 3, 18), (4, 4, 1, 1, 3, 4), (2, 4, 1, 2, 2, 13),
        ]
        for (k, c) in cases.enumerated() {
            let mn = c.m * c.n
            let g = DOConvGeometry(inChannels: c.cin, outChannels: c.cout, groups: c.groups, kernelHeight: c.m, kernelWidth: c.n,
                                   depthMultiplier: mn == 1 ? 1 : c.dmul ?? mn)
            for layout in [DOConvLayout.pytorch, .keras] {
                let kernel = plainKernel(count: g.kernelCount, seed: UInt64(k))
                let e = try DOConvExpansion(layout: layout, geometry: g, kernel: kernel, seed: 7)
                XCTAssertEqual(composed(e), kernel, "\(c) \(layout)")
                XCTAssertEqual(try DOConvExpansion.relativeError(layout: layout, geometry: g, storedW: e.w, storedD: e.d,
                                                                 kernelOIHW: layout == .pytorch ? kernel : Self.oihw(kernel, g)), 0, "\(c) \(layout)")
                // No dead column: wherever D + I is 0, W is not (D then gets a gradient).
                if mn > 1, let d = e.d, let identity = e.identity {
                    for s in 0..<g.depthMultiplier {
                        let dtZero = (0..<c.cin).allSatisfy { i in (0..<mn).allSatisfy { m in
                            let at = layout == .pytorch ? (i * mn + m) * g.depthMultiplier + s : (m * g.depthMultiplier + s) * c.cin + i
                            return d[at] + identity[at] == 0
                        } }
                        let rows = g.outChannels * g.inChannelsPerGroup
                        let wColumn = (0..<rows).map { r in layout == .pytorch ? e.w[r * g.depthMultiplier + s] : e.w[s * rows + r] }
                        XCTAssertTrue(!dtZero || wColumn.contains { $0 != 0 }, "\(c) \(layout): column \(s) is dead")
                        XCTAssertEqual(s < mn, !dtZero, "\(c) \(layout): column \(s)")
                    }
                }
            }
        }
    }

    func testADepthMultiplierBelowTheKernelAreaIsRefused() {
        let g = DOConvGeometry(inChannels: 2, outChannels: 2, groups: 1, kernelHeight: 3, kernelWidth: 3, depthMultiplier: 4)
        XCTAssertThrowsError(try DOConvExpansion(layout: .pytorch, geometry: g, kernel: [Double](repeating: 0, count: g.kernelCount), seed: 0)) {
            XCTAssertTrue("\($0)".contains("Dmul 4 < M*N = 9"), "\($0)")
        }
    }

    /// HWIO (Keras) to OIHW.
    static func oihw(_ hwio: [Double], _ g: DOConvGeometry) -> [Double] {
        let (mn, cpg, cout) = (g.kernelArea, g.inChannelsPerGroup, g.outChannels)
        var out = [Double](repeating: 0, count: hwio.count)
        for m in 0..<mn { for i in 0..<cpg { for o in 0..<cout { out[(o * cpg + i) * mn + m] = hwio[(m * cpg + i) * cout + o] } } }
        return out
    }
}
