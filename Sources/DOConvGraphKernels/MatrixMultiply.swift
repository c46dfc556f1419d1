import Dispatch

/// One product C (+)= A * B in float64, row-major with explicit row strides; B may be given
/// transposed (row j of `b` is then column j of B).
public struct GEMMOperands: @unchecked Sendable {
    // @unchecked: the pointers are only read (C only written) for the product's duration.
    public var k: Int
    public var a: UnsafePointer<Double>
    public var lda: Int
    public var b: UnsafePointer<Double>
    public var ldb: Int
    public var transposedB: Bool
    public var c: UnsafeMutablePointer<Double>
    public var ldc: Int
    /// Add to C rather than overwrite it.
    public var accumulate: Bool
    /// A value per row of C added after the product (a convolution's bias), if any.
    public var rowBias: UnsafePointer<Double>?
    /// B as an image's im2col matrix, packed from the image (`b`, `ldb` and `transposedB`
    /// are then unused), if it is one.
    public var im2col: Im2ColView?
}

/// A way to compute one GEMM tile: the portable build, or the AVX2 + FMA or AVX-512 one
/// where the CPU has it (chosen by the executor at run time).
public struct TileMultiplier: Sendable {
    public let name: String
    /// The columns of B one packed panel holds (two vector registers' worth): tiles are
    /// rounded to it, and scratch is sized by it.
    public let panelColumns: Int
    /// (operands, rows, columns, scratch): C[rows, columns] (+)= A[rows, 0..<k] * B[0..<k,
    /// columns], with scratch for the packed panels.
    public let run: @Sendable (GEMMOperands, Range<Int>, Range<Int>, UnsafeMutablePointer<Double>) -> Void

    public init(name: String, panelColumns: Int, run: @escaping @Sendable (GEMMOperands, Range<Int>, Range<Int>, UnsafeMutablePointer<Double>) -> Void) {
        self.name = name
        self.panelColumns = panelColumns
        self.run = run
    }

    /// Doubles of scratch a tile of `columns` columns needs (B packed, K block by K block).
    public func scratchCount(columns: Int) -> Int {
        DoubleGEMMTile.kc * ((columns + panelColumns - 1) / panelColumns * panelColumns)
    }

    /// Separate multiply and add, for every CPU.
    public static let portable = TileMultiplier(name: "portable", panelColumns: DoubleGEMMTile.panelColumns) { operands, rows, columns, scratch in
        DoubleGEMMTile.multiply(operands, rows: rows, columns: columns, scratch: scratch)
    }
}

/// C = A * B (+ C) for row-major float64 matrices, split into tiles that run on all cores.
/// Each element's sum runs over K in one fixed order, so results do not depend on the
/// number of threads.
public enum MatrixMultiply {
    /// Columns of one tile: big enough to amortize packing, small enough that the packed
    /// panels stay in cache and that a layer gives every core work (rows: see `multiply`).
    public static let tileColumns = 192

    public static func multiply(_ multiplier: TileMultiplier, m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int, transposedB: Bool = false, c: UnsafeMutablePointer<Double>, ldc: Int,
                                accumulate: Bool = false, rowBias: UnsafePointer<Double>? = nil, threads: Int) {
        let operands = GEMMOperands(k: k, a: a, lda: lda, b: b, ldb: ldb, transposedB: transposedB, c: c, ldc: ldc, accumulate: accumulate,
                                    rowBias: rowBias)
        multiply(multiplier, m: m, n: n, operands: operands, threads: threads)
    }

    /// C = A * B (+ C) with B the im2col matrix `im2col` (K x n), never built.
    public static func multiply(_ multiplier: TileMultiplier, m: Int, n: Int, k: Int, a: UnsafePointer<Double>, lda: Int, im2col: Im2ColView,
                                c: UnsafeMutablePointer<Double>, ldc: Int, rowBias: UnsafePointer<Double>? = nil, threads: Int) {
        let operands = GEMMOperands(k: k, a: a, lda: lda, b: im2col.image, ldb: 0, transposedB: false, c: c, ldc: ldc, accumulate: false,
                                    rowBias: rowBias, im2col: im2col)
        multiply(multiplier, m: m, n: n, operands: operands, threads: threads)
    }

    static func multiply(_ multiplier: TileMultiplier, m: Int, n: Int, operands: GEMMOperands, threads: Int) {
        let k = operands.k
        guard m > 0, n > 0 else { return }
        // A tile is a band of rows times a range of columns. Its B is packed once per K block
        // and serves the whole band (in blocks of rows that keep their A in L2), so bands are
        // as tall as the cores allow: one per column tile when there are enough column tiles
        // for every core twice over. (Bands of one row block each packed a Gemm's 100 MB B
        // ten times over: Faster R-CNN's box head.) Tiles are of equal size (rounded to a
        // panel's columns and to 8 rows): no thin tile at an edge.
        let columnTiles = (n + tileColumns - 1) / tileColumns
        let blocks = (m + DoubleGEMMTile.rowBlock(k: k) - 1) / DoubleGEMMTile.rowBlock(k: k)
        let rowTiles = max(1, min(blocks, (2 * threads + columnTiles - 1) / columnTiles))
        let height = ((m + rowTiles - 1) / rowTiles + 7) / 8 * 8
        let panel = multiplier.panelColumns
        let width = ((n + columnTiles - 1) / columnTiles + panel - 1) / panel * panel
        let tiles = rowTiles * columnTiles
        let scratchCount = multiplier.scratchCount(columns: width)
        let workers = ParallelLoop.workers(threads: threads, items: tiles, work: m * n * max(k, 1), grain: 500_000)
        let body: (Int) -> Void = { worker in
            let scratch = UnsafeMutablePointer<Double>.allocate(capacity: scratchCount)
            defer { scratch.deallocate() }
            var tile = worker
            while tile < tiles {
                let (rt, ct) = tile.quotientAndRemainder(dividingBy: columnTiles)
                let rows = min(m, rt * height)..<min(m, (rt + 1) * height)
                let columns = min(n, ct * width)..<min(n, (ct + 1) * width)
                if !rows.isEmpty && !columns.isEmpty { multiplier.run(operands, rows, columns, scratch) }
                tile += workers
            }
        }
        // Each worker takes every workers-th row or tile: their writes never meet.
        nonisolated(unsafe) let perform = body
        if workers == 1 { perform(0) } else { DispatchQueue.concurrentPerform(iterations: workers) { perform($0) } }
    }
}
