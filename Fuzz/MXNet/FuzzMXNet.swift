import DOConvCore
import DOConvMXNet
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as an MXNet `.params` file (an NDArray list), through the
/// list reader, Gluon layer detection, folding and writing. Built only by scripts/fuzz.
@main
enum FuzzMXNet {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = "/dev/shm/doconv-fuzz-mxnet-\(getpid()).params"
    let output = path + ".out.params"
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { return 0 }
    defer { unlink(path); unlink(output) }
    _ = try? MXNetFolder.detect(path: path)
    if let result = try? MXNetFolder.fold(path: path) { try? result.write(to: output) }
    return 0
}
