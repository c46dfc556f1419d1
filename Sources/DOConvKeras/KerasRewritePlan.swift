import DOConvFileIO
#if canImport(Glibc)
import Glibc
#endif

/// What changes between the input file and the folded file; everything else is copied as is
/// (datasets with their types, chunking, compression and attributes).
struct KerasRewritePlan {
    /// A string attribute to write instead of the original.
    struct StringAttribute {
        var values: [String]
        var style: HDF5StringStyle
    }

    /// A dataset the input does not have (the bias a BatchNormalization fusion gives a
    /// Conv2D that had none).
    struct AddedDataset {
        /// Its name in the group.
        var name: String
        var shape: [Int]
        var values: [Double]
        /// An input dataset whose element type and storage (chunking, compression) it takes.
        var template: String
    }

    /// A dataset's new values: float32 values (a float32 kernel, written as it is), or
    /// float64 ones, which keep a float64 layer's precision (libhdf5 rounds them to the
    /// dataset's type once).
    enum Values {
        case float32([Float])
        case float64([Double])

        var doubles: [Double] {
            switch self {
            case .float32(let values): values.map(Double.init)
            case .float64(let values): values
            }
        }
    }

    /// Dataset path -> the new shape and values (folded kernels).
    var replacedDatasets: [String: (shape: [Int], values: Values)] = [:]
    /// Group path (in the input) -> datasets to create in it.
    var addedDatasets: [String: [AddedDataset]] = [:]
    /// Paths of datasets and groups left out (D, optimizer state).
    var dropped: Set<String> = []
    /// Group path -> attribute name -> new value.
    var stringAttributes: [String: [String: StringAttribute]] = [:]
    /// Group or dataset path -> its new name in the same parent (Keras 3 `.weights.h5` layer
    /// groups; a folded SeparableConv2D's datasets).
    var renamedGroups: [String: String] = [:]

    /// Adds another plan's changes (one layer's) to this one.
    mutating func merge(_ other: KerasRewritePlan) {
        replacedDatasets.merge(other.replacedDatasets) { $1 }
        addedDatasets.merge(other.addedDatasets) { $0 + $1 }
        dropped.formUnion(other.dropped)
        renamedGroups.merge(other.renamedGroups) { $1 }
        for (group, attributes) in other.stringAttributes { stringAttributes[group, default: [:]].merge(attributes) { $1 } }
    }

    /// Writes `source` with the plan applied to `path`, atomically: a temporary file in the
    /// destination folder, renamed into place only once complete.
    func write(_ source: HDF5File, to path: String) throws(KerasError) {
        let temporary = TemporaryFiles.path(beside: path)
        do {
            let target = try HDF5File.create(path: temporary)
            try copyGroup(try source.root(), into: try target.root())
            try target.flush()
        } catch {
            unlink(temporary)
            throw .hdf5(error)
        }
        do { try AtomicFileWriter.replace(path, with: temporary) } catch { throw .file(error) }
    }

    private func copyGroup(_ source: HDF5Group, into target: HDF5Group) throws(HDF5Error) {
        let overrides = stringAttributes[source.path] ?? [:]
        try target.copyAttributes(from: source, except: Set(overrides.keys))
        for (name, attribute) in overrides.sorted(by: { $0.key < $1.key }) {
            try target.setStrings(name, attribute.values, style: attribute.style)
        }
        for name in try source.childNames() {
            let path = source.childPath(name)
            guard !dropped.contains(path) else { continue }
            let newName = renamedGroups[path] ?? name
            switch try source.kind(of: name) {
            case .group:
                try copyGroup(try source.group(name), into: try target.createGroup(newName))
            case .dataset:
                if let replacement = replacedDatasets[path] {
                    let dataset = try source.dataset(name)
                    switch replacement.values {
                    case .float32(let values): try dataset.createSibling(in: target, name: newName, shape: replacement.shape, values: values)
                    case .float64(let values): try dataset.createSibling(in: target, name: newName, shape: replacement.shape, values: values)
                    }
                } else {
                    try target.copy(name, from: source, as: newName)
                }
            case .other:
                try target.copy(name, from: source, as: newName)
            }
        }
        for added in addedDatasets[source.path] ?? [] {
            try source.file.dataset(at: added.template).createSibling(in: target, name: added.name, shape: added.shape, values: added.values)
        }
    }
}
