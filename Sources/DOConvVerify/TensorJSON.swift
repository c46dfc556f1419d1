import DOConvGraph
import DOConvJSON
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Tensors as JSON, for the oracle tests' hidden options: an object of
/// `name: {"dtype": "float32", "shape": [1, 3], "data": [0.5, "nan", ...]}` (non-finite
/// floats as the strings "nan", "inf", "-inf").
public enum TensorJSON {
    public static func read(path: String) throws(VerifyError) -> [String: TensorValue] {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONTree.parse(data) as? [String: Any] else {
            throw VerifyError("\(path): not a JSON object of tensors")
        }
        var result: [String: TensorValue] = [:]
        for (name, value) in object {
            guard let entry = value as? [String: Any], let typeName = entry["dtype"] as? String, let type = DataType(name: typeName),
                  let dims = entry["shape"] as? [Any], let items = entry["data"] as? [Any] else {
                throw VerifyError("\(path): tensor '\(name)' needs dtype, shape and data of matching size")
            }
            let shape = dims.compactMap(wholeNumber)
            guard shape.count == dims.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw VerifyError("\(path): tensor '\(name)' has a shape whose dims are not all non-negative integers")
            }
            // The file's dims, multiplied with overflow checks (an empty tensor may claim any
            // others): a product past Int's range is an error, not a trap.
            var count = 1
            for dim in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw VerifyError("\(path): tensor '\(name)': the element count of shape \(shape) overflows") }
                count = product
            }
            guard count == items.count else {
                throw VerifyError("\(path): tensor '\(name)' needs dtype, shape and data of matching size")
            }
            let numbers: [Double] = items.map { item in
                if let n = JSONNumber.double(item) { return n }
                switch item as? String {
                case "nan": return .nan
                case "inf": return .infinity
                case "-inf": return -.infinity
                default: return .nan
                }
            }
            if type.isFloat {
                result[name] = TensorValue(type, shape: shape, floats: numbers)
            } else {
                let ints = items.map { Int64(JSONNumber.int($0) ?? 0) }
                result[name] = TensorValue(type, shape: shape, ints: ints)
            }
        }
        return result
    }

    /// A dim of a JSON shape: a whole number in Int's range, or nil (not 1e30, 2^64 - 1
    /// or 2.5).
    package static func wholeNumber(_ item: Any) -> Int? { JSONNumber.int(item) }

    public static func write(_ tensors: [String: TensorValue], to path: String) throws(VerifyError) {
        var object: [String: Any] = [:]
        for (name, t) in tensors {
            let data: [Any]
            switch t.storage {
            case .floats(let v): data = v.map { $0.isNaN ? "nan" as Any : ($0.isInfinite ? ($0 > 0 ? "inf" : "-inf") as Any : $0 as Any) }
            case .ints(let v): data = v
            case .opaque: data = []
            }
            object[name] = ["dtype": t.type.description, "shape": t.shape, "data": data]
        }
        do {
            let bytes = try JSONTree.serialize(object)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        } catch {
            throw VerifyError("\(path): cannot write: \(error)")
        }
    }
}
