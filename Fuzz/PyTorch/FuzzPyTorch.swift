import DOConvCore
import DOConvPyTorch
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as a PyTorch checkpoint (zip, legacy stream or safetensors,
/// told apart by content), through the container readers, the restricted unpickler,
/// detection, folding and writing. Built only by scripts/fuzz.
@main
enum FuzzPyTorch {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = "/dev/shm/doconv-fuzz-pytorch-\(getpid()).pth"
    let output = path + ".out"
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { return 0 }
    defer { unlink(path); unlink(output) }
    _ = try? PyTorchFolder.detect(path: path)
    if let result = try? PyTorchFolder.fold(path: path) { try? result.write(to: output) }
    return 0
}
