import DOConvCore
import DOConvTensorFlow
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as a TensorFlow checkpoint, through the table and bundle
/// readers, the object graph, layer detection, folding and writing. The input is a 4-byte
/// little-endian length, that many bytes of `.index`, then the one data shard (scripts/fuzz
/// seeds it from fixtures/tf in this shape). Built only by scripts/fuzz.
@main
enum FuzzTensorFlow {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size >= 4 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let declared = UnsafeRawBufferPointer(bytes).loadUnaligned(as: UInt32.self)
    let indexLength = min(Int(UInt32(littleEndian: declared)), size - 4)
    let prefix = "/dev/shm/doconv-fuzz-tf-\(getpid())"
    let output = prefix + "-out"
    let files = [prefix + ".index", prefix + ".data-00000-of-00001"]
    guard FileManager.default.createFile(atPath: files[0], contents: Data(bytes[4..<(4 + indexLength)])),
          FileManager.default.createFile(atPath: files[1], contents: Data(bytes[(4 + indexLength)...])) else { return 0 }
    defer {
        for file in files + [output + ".index", output + ".data-00000-of-00001"] { unlink(file) }
    }
    var options = TensorFlowFoldOptions()
    options.allowPartial = true
    _ = try? TensorFlowCheckpointFolder.detect(path: prefix, options: options)
    if let result = try? TensorFlowCheckpointFolder.fold(path: prefix, options: options) { try? result.write(to: output) }
    return 0
}
