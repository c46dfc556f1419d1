import DOConvGraph
import DOConvVerify
import DOConvVerifyONNX
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as an ONNX model run by verify-equivalence's reference
/// executor on inputs it makes itself (seeded with the single-op models of the oracle
/// tests, so mutations land in attributes, constant inputs and shapes). Built only by
/// scripts/fuzz.
@main
enum FuzzExecutor {
    static func main() {
        // Tensors of up to 2^20 elements: legal but huge ones would only be slow.
        ExecutorLimits.maxElements = 1 << 20
        runFuzzer(fuzzOne)
    }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = "/dev/shm/doconv-fuzz-executor-\(getpid()).onnx"
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { return 0 }
    defer { unlink(path) }
    _ = try? EquivalenceVerifier.run(model: path, feeds: [:])
    return 0
}
