import Dispatch

/// A way to compute one GEMM tile: the portable build, or the AVX2 + FMA one where the CPU
/// has it (chosen by the executor at run time).
public struct TileMultiplier: Sendable {
    public let name: String
    /// (k, a, lda, b, ldb, c, ldc, rows, columns, accumulate, scratch): C[rows, columns] (+)=
    /// A[rows, 0..<k] * B[0..<k, columns], with scratch for the packed panels.
    public let run: @Sendable (Int, UnsafePointer<Double>, Int, UnsafePointer<Double>, Int, UnsafeMutablePointer<Double>, Int,
                               Range<Int>, Range<Int>, Bool, UnsafeMutablePointer<Double>) -> Void

    public init(name: String, run: @escaping @Sendable (Int, UnsafePointer<Double>, Int, UnsafePointer<Double>, Int, UnsafeMutablePointer<Double>, Int,
                                                         Range<Int>, Range<Int>, Bool, UnsafeMutablePointer<Double>) -> Void) {
        self.name = name
        self.run = run
    }

    /// Separate multiply and add, for every CPU.
    public static let portable = TileMultiplier(name: "portable") { k, a, lda, b, ldb, c, ldc, rows, columns, accumulate, scratch in
        DoubleGEMMTile.multiply(k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, rows: rows, columns: columns,
                                accumulate: accumulate, scratch: scratch)
    }
}

/// C = A * B (+ C) for row-major float64 matrices, split into tiles that run on all cores.
/// Each element's sum runs over K in one fixed order, so results do not depend on the
/// number of threads.
public enum MatrixMultiply {
    /// Rows and columns of one tile: big enough to amortize packing, small enough that the
    /// packed panels stay in cache and that a layer gives every core work.
    public static let tileRows = 64
    public static let tileColumns = 192

    public static func multiply(_ multiplier: TileMultiplier, m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int, c: UnsafeMutablePointer<Double>, ldc: Int,
                                accumulate: Bool = false, threads: Int) {
        guard m > 0, n > 0 else { return }
        let rowTiles = (m + tileRows - 1) / tileRows
        let columnTiles = (n + tileColumns - 1) / tileColumns
        let tiles = rowTiles * columnTiles
        let scratchCount = DoubleGEMMTile.kc * (tileRows + 8 + tileColumns + 8)
        let workers = max(1, min(threads, tiles, m * n * max(k, 1) / 500_000 + 1))
        let body: (Int) -> Void = { worker in
            let scratch = UnsafeMutablePointer<Double>.allocate(capacity: scratchCount)
            defer { scratch.deallocate() }
            var tile = worker
            while tile < tiles {
                let (rt, ct) = tile.quotientAndRemainder(dividingBy: columnTiles)
                let rows = (rt * tileRows)..<min(m, (rt + 1) * tileRows)
                let columns = (ct * tileColumns)..<min(n, (ct + 1) * tileColumns)
                multiplier.run(k, a, lda, b, ldb, c, ldc, rows, columns, accumulate, scratch)
                tile += workers
            }
        }
        if workers == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: body) }
    }
}
