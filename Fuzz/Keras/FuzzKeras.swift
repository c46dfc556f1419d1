import DOConvCore
import DOConvKeras
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as a Keras HDF5 file, through the HDF5 layer, the layouts,
/// detection and folding (nothing written). Built only by scripts/fuzz.
@main
enum FuzzKeras {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let path = "/dev/shm/doconv-fuzz-keras-\(getpid()).h5"
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { return 0 }
    defer { unlink(path) }
    _ = try? KerasFolder.detect(path: path)
    _ = try? KerasFolder.fold(path: path)
    return 0
}
