import DOConvCore
import DOConvONNX
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as an ONNX model, through loading, detection and folding.
/// Built only by scripts/fuzz (DOCONV_FUZZ=1, -sanitize=fuzzer,address).
@main
enum FuzzONNX {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = "/dev/shm/doconv-fuzz-onnx-\(getpid()).onnx"
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { return 0 }
    defer { unlink(path) }
    guard let model = try? ONNXModel.load(path: path) else { return 0 }
    _ = try? ONNXFolder.detect(model)
    _ = try? ONNXFolder.fold(model, fuseBatchNorm: true)
    return 0
}
