import DOConvCore
import DOConvPyTorch
import Foundation
import FuzzDriver

/// libFuzzer target: any bytes as a `.safetensors` file (a length, a JSON header, the data),
/// through the header's validation, detection, folding and writing; and the same bytes as
/// the one shard of a sharded checkpoint, through the index's checks. Built only by
/// scripts/fuzz.
@main
enum FuzzSafetensors {
    static func main() { runFuzzer(fuzzOne) }
}

private func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let folder = "/dev/shm/doconv-fuzz-safetensors-\(getpid())"
    let shard = folder + "/model-00001-of-00001.safetensors"
    let output = folder + "/out"
    let bytes = Data(bytes: data, count: size)
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    guard FileManager.default.createFile(atPath: shard, contents: bytes) else { return 0 }
    _ = try? PyTorchFolder.detect(path: shard)
    if let result = try? PyTorchFolder.fold(path: shard) { try? result.write(to: output + ".safetensors") }
    // As a shard: an index naming every tensor the header names (when it parses as JSON).
    if size > 8 {
        let length = bytes.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if length <= UInt64(size - 8), let header = try? JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + Int(length)))) as? [String: Any] {
            let map = header.keys.filter { $0 != "__metadata__" }.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\": \"model-00001-of-00001.safetensors\"" }
            let index = "{\"metadata\": {\"total_size\": \(size)}, \"weight_map\": {\(map.joined(separator: ", "))}}"
            FileManager.default.createFile(atPath: folder + "/model.safetensors.index.json", contents: Data(index.utf8))
            _ = try? PyTorchFolder.detect(path: folder)
            if let result = try? PyTorchFolder.fold(path: folder) { _ = try? result.write(to: output) }
        }
    }
    return 0
}
