// The fold kernel's throughput over real layer shapes, next to memcpy on the same machine.
//
// A package target only when DOCONV_BENCH is set (bench/run.sh builds it in release, with the
// same flags as the tools): benchmarks are not part of the build or the tests.
//
//   kernel-bench [--json FILE]
//
// For each model's DO-Conv layer shapes it times, as the median of several rounds of every
// layer once (the model's whole working set, as the tool meets it, not one layer hot in cache):
// - the fold W' = D^T o W (1 thread and all threads) with the kernels doconv-fold picks on
//   this CPU, and with the portable kernels every CPU runs, as GB/s of W read plus W'
//   written, and of D + W + W' (depthwise layers read a D far larger than W);
// - the verification probe (2 patches, float64), the same way;
// - memcpy moving as many bytes as the fold touches (read + write, single thread), and the
//   fold (all threads) over memcpy, as the median of the per-round ratios; then memcpy
//   alone, round after round, its buffers hot in the caches (its best case).
// All of them take turns within every round, so a shared machine that drifts hits each alike.
import Dispatch
import DOConvCore
import DOConvFoldKernels
import DOConvFoldKernelsAVX2
#if canImport(Glibc)
import Glibc
#endif

struct Shape {
    var cin: Int, cout: Int, groups: Int, m: Int, n: Int, dmul: Int, count: Int
    var geometry: DOConvGeometry {
        DOConvGeometry(inChannels: cin, outChannels: cout, groups: groups, kernelHeight: m, kernelWidth: n, depthMultiplier: dmul)
    }
}

/// The DO layers of the two benchmark models (what doconv-fold reports folding).
let models: [(name: String, shapes: [Shape])] = [
    ("ResNet-50-DO", [
        Shape(cin: 3, cout: 64, groups: 1, m: 7, n: 7, dmul: 49, count: 1),
        Shape(cin: 64, cout: 64, groups: 1, m: 3, n: 3, dmul: 9, count: 3),
        Shape(cin: 128, cout: 128, groups: 1, m: 3, n: 3, dmul: 9, count: 4),
        Shape(cin: 256, cout: 256, groups: 1, m: 3, n: 3, dmul: 9, count: 6),
        Shape(cin: 512, cout: 512, groups: 1, m: 3, n: 3, dmul: 9, count: 3),
    ]),
    ("MobileNetV3-DO", [
        Shape(cin: 72, cout: 72, groups: 72, m: 5, n: 5, dmul: 25, count: 1),
        Shape(cin: 120, cout: 120, groups: 120, m: 5, n: 5, dmul: 25, count: 2),
        Shape(cin: 240, cout: 240, groups: 240, m: 3, n: 3, dmul: 9, count: 1),
        Shape(cin: 200, cout: 200, groups: 200, m: 3, n: 3, dmul: 9, count: 1),
        Shape(cin: 184, cout: 184, groups: 184, m: 3, n: 3, dmul: 9, count: 2),
        Shape(cin: 480, cout: 480, groups: 480, m: 3, n: 3, dmul: 9, count: 1),
        Shape(cin: 672, cout: 672, groups: 672, m: 3, n: 3, dmul: 9, count: 1),
        Shape(cin: 672, cout: 672, groups: 672, m: 5, n: 5, dmul: 25, count: 1),
        Shape(cin: 960, cout: 960, groups: 960, m: 5, n: 5, dmul: 25, count: 2),
    ]),
]

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Seconds per call of each body, one sample per round, the bodies taking turns within
/// every round (each repeated until it took 30 ms), so that a machine whose speed drifts
/// (a shared VM) slows all of them alike and per-round ratios stay fair.
func measureInterleaved(rounds: Int = 11, _ bodies: [() -> Void]) -> [[Double]] {
    bodies.forEach { $0() } // warm: page faults and caches
    var samples = [[Double]](repeating: [], count: bodies.count)
    for round in 0..<rounds {
        for k in 0..<bodies.count {
            let index = (k + round) % bodies.count
            var repeats = 0
            let start = now()
            var elapsed = 0.0
            repeat {
                bodies[index]()
                repeats += 1
                elapsed = now() - start
            } while elapsed < 0.03
            samples[index].append(elapsed / Double(repeats))
        }
    }
    return samples
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

struct Row {
    var model: String
    var layers: Int
    var dBytes: Int
    var wBytes: Int
    var kernelBytes: Int
    var foldOneThread: Double   // seconds for every layer of the model
    var foldAllThreads: Double
    var portableOneThread: Double
    var portableAllThreads: Double
    var probe: Double
    var memcpyGBs: Double
    /// Median over rounds of fold (all threads) speed over memcpy's, both moving D + W + W'.
    var foldOverMemcpy: Double
    /// memcpy run alone, its buffers hot in the caches.
    var hotMemcpyGBs: Double
    var threads: Int
    var shapes: [Shape]

    /// W read + W' written, the issue's measure; `all` adds D (the bulk of depthwise layers).
    func gbs(_ seconds: Double, all: Bool = false) -> Double {
        Double((all ? dBytes : 0) + wBytes + kernelBytes) / seconds / 1e9
    }
}

@main
enum KernelBench {
    static func main() throws {
        var jsonPath: String?
        var arguments = CommandLine.arguments.dropFirst().makeIterator()
        while let argument = arguments.next() {
            if argument == "--json" { jsonPath = arguments.next() }
        }
        var random = SeededGenerator(seed: 1)
        var rows: [Row] = []
        for (name, shapes) in models {
            var layers: [DOConvLayer] = []
            for shape in shapes {
                let g = shape.geometry
                for _ in 0..<shape.count {
                    let d = (0..<g.dCount).map { _ in Float.random(in: -1...1, using: &random) }
                    let w = (0..<g.wCount).map { _ in Float.random(in: -1...1, using: &random) }
                    layers.append(try DOConvLayer(layout: .pytorch, geometry: g, d: d, w: w))
                }
            }
            let outputs = layers.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.geometry.kernelCount) }
            defer { outputs.forEach { $0.deallocate() } }
            let dBytes = layers.reduce(0) { $0 + $1.geometry.dCount * 4 }
            let wBytes = layers.reduce(0) { $0 + $1.geometry.wCount * 4 }
            let kernelBytes = layers.reduce(0) { $0 + $1.geometry.kernelCount * 4 }

            func foldAll(_ threads: Int, _ kernels: FoldKernelSet) {
                for (layer, out) in zip(layers, outputs) { layer.fold(into: out, maxThreads: threads, kernels: kernels) }
            }
            var sink = 0.0
            func probeAll() {
                for (layer, out) in zip(layers, outputs) {
                    sink += LayerProbe.compare(layer: layer, kernel: UnsafeBufferPointer(out), patches: 2).relativeError
                }
            }
            // memcpy moving as many bytes as the fold touches (D + W read, W' written).
            let half = (dBytes + wBytes + kernelBytes) / 2
            let source = UnsafeMutableRawBufferPointer.allocate(byteCount: half, alignment: 64)
            let target = UnsafeMutableRawBufferPointer.allocate(byteCount: half, alignment: 64)
            defer { source.deallocate(); target.deallocate() }
            memset(source.baseAddress!, 1, half)

            let all = ParallelWork.defaultThreads
            let samples = measureInterleaved([
                { foldAll(1, .fastest) }, { foldAll(all, .fastest) }, { foldAll(1, .portable) }, { foldAll(all, .portable) },
                { probeAll() }, { memcpy(target.baseAddress!, source.baseAddress!, half) },
            ])
            precondition(sink.isFinite)
            let (one, allThreads, portableOne, portableAll, probe, copy) =
                (median(samples[0]), median(samples[1]), median(samples[2]), median(samples[3]), median(samples[4]), median(samples[5]))
            // Fold (all threads) over memcpy, per round, both moving D + W + W' bytes.
            let ratio = median(zip(samples[1], samples[5]).map { fold, copy in copy / fold })
            // memcpy alone, round after round: its buffers stay in the caches, the best case.
            let hotCopy = median(measureInterleaved([{ memcpy(target.baseAddress!, source.baseAddress!, half) }]).first ?? [])

            rows.append(Row(model: name, layers: layers.count, dBytes: dBytes, wBytes: wBytes, kernelBytes: kernelBytes,
                            foldOneThread: one, foldAllThreads: allThreads,
                            portableOneThread: portableOne, portableAllThreads: portableAll, probe: probe, memcpyGBs: 2 * Double(half) / copy / 1e9, foldOverMemcpy: ratio, hotMemcpyGBs: 2 * Double(half) / hotCopy / 1e9,
                            threads: ParallelWork.defaultThreads, shapes: shapes))
        }
        let t = ParallelWork.defaultThreads
        let fastest = FoldKernelSet.fastest.name
        print("GB/s of W read + W' written (in brackets: D + W + W'); memcpy moves D + W + W' bytes, one thread, taking turns")
        print("with the folds (same cache conditions; the ratio compares D + W + W' per second), and alone (hot in cache);")
        print("kernels: \(fastest) (what doconv-fold uses on this CPU) and portable (any CPU)")
        print("| model | layers | D MB | W MB | W' MB | fold 1 thread | fold \(t) threads | portable 1 thread | portable \(t) threads | verify (\(t) threads) | memcpy | fold \(t) threads / memcpy | memcpy alone (hot) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows {
            func both(_ seconds: Double) -> String { "\(fmt(r.gbs(seconds))) (\(fmt(r.gbs(seconds, all: true))))" }
            print("| \(r.model) | \(r.layers) | \(fmt(Double(r.dBytes) / 1e6)) | \(fmt(Double(r.wBytes) / 1e6)) | \(fmt(Double(r.kernelBytes) / 1e6)) | "
                  + "\(both(r.foldOneThread)) | \(both(r.foldAllThreads)) | \(both(r.portableOneThread)) | \(both(r.portableAllThreads)) | "
                  + "\(both(r.probe)) | \(fmt(r.memcpyGBs)) | \(fmt(r.foldOverMemcpy * 100))% | \(fmt(r.hotMemcpyGBs)) |")
        }
        if let jsonPath {
            let text = "[" + rows.map(json).joined(separator: ",\n") + "]\n"
            guard let file = fopen(jsonPath, "w") else { fatalError("cannot write \(jsonPath)") }
            fputs(text, file)
            fclose(file)
        }
    }

    static func fmt(_ x: Double) -> String {
        let scaled = (x * 10).rounded() / 10
        return "\(scaled)"
    }

    static func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return right ? fill + s : s + fill
    }

    /// Hand-written JSON: the core has no Foundation, and the bench should not need it.
    static func json(_ r: Row) -> String {
        let shapes = r.shapes.map { "{\"cin\":\($0.cin),\"cout\":\($0.cout),\"groups\":\($0.groups),\"m\":\($0.m),\"n\":\($0.n),\"dmul\":\($0.dmul),\"count\":\($0.count)}" }
        return "{\"model\":\"\(r.model)\",\"layers\":\(r.layers),\"d_bytes\":\(r.dBytes),\"w_bytes\":\(r.wBytes),\"kernel_bytes\":\(r.kernelBytes),"
            + "\"kernels\":\"\(FoldKernelSet.fastest.name)\",\"fold_1t_gbs\":\(r.gbs(r.foldOneThread)),\"fold_all_gbs\":\(r.gbs(r.foldAllThreads)),"
            + "\"portable_1t_gbs\":\(r.gbs(r.portableOneThread)),\"portable_all_gbs\":\(r.gbs(r.portableAllThreads)),\"probe_gbs\":\(r.gbs(r.probe)),"
            + "\"fold_1t_all_bytes_gbs\":\(r.gbs(r.foldOneThread, all: true)),\"fold_all_all_bytes_gbs\":\(r.gbs(r.foldAllThreads, all: true)),"
            + "\"probe_all_bytes_gbs\":\(r.gbs(r.probe, all: true)),\"threads\":\(r.threads),"
            + "\"memcpy_gbs\":\(r.memcpyGBs),\"fold_all_over_memcpy\":\(r.foldOverMemcpy),\"hot_memcpy_gbs\":\(r.hotMemcpyGBs),\"shapes\":[\(shapes.joined(separator: ","))]}"
    }
}
