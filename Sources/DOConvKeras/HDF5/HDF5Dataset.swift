import CHDF5
import CHDF5Shim
import DOConvCore

/// A dataset: its shape and element type, its values as Float, and new datasets like it.
public struct HDF5Dataset {
    let file: HDF5File
    /// The dataset's absolute path in its file.
    public let path: String
    let handle: HDF5Handle

    var fileName: String { file.path }

    /// Dimension sizes.
    public func shape() throws(HDF5Error) -> [Int] {
        let space = try HDF5Handle(H5Dget_space(handle.id), file: fileName, "cannot read the shape of '\(path)'")
        let rank = Int(H5Sget_simple_extent_ndims(space.id))
        guard rank >= 0, rank <= 32 else { throw HDF5Error(file: fileName, message: "'\(path)' has an invalid rank") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        guard H5Sget_simple_extent_dims(space.id, &dims, nil) >= 0 else {
            throw HDF5Error(file: fileName, message: "cannot read the shape of '\(path)'")
        }
        let shape = dims.prefix(rank).map { Int(clamping: $0) }
        guard Tensor.elementCount(of: shape) != nil else { throw HDF5Error(file: fileName, message: "'\(path)' has invalid dims \(shape)") }
        return shape
    }

    /// The element type, when it is a float type the fold handles.
    public func elementType() throws(HDF5Error) -> ElementType? {
        let type = try HDF5Handle(H5Dget_type(handle.id), file: fileName, "cannot read the type of '\(path)'")
        guard H5Tget_class(type.id) == H5T_FLOAT else { return nil }
        switch H5Tget_size(type.id) {
        case 2: return .float16
        case 4: return .float32
        case 8: return .float64
        default: return nil
        }
    }

    /// Bytes per element as stored.
    public func elementSize() throws(HDF5Error) -> Int {
        let type = try HDF5Handle(H5Dget_type(handle.id), file: fileName, "cannot read the type of '\(path)'")
        return H5Tget_size(type.id)
    }

    /// All values converted to Float by libhdf5. `limit` bounds the element count, so a
    /// header that lies about the size cannot make us allocate more than the file could hold.
    public func floats(limit: Int) throws(HDF5Error) -> [Float] {
        let count = Tensor.elementCount(of: try shape()) ?? 0
        guard count <= limit else {
            throw HDF5Error(file: fileName, message: "'\(path)' claims \(count) elements, more than the file can hold")
        }
        guard try elementType() != nil else { throw HDF5Error(file: fileName, message: "'\(path)' is not a float dataset") }
        var values = [Float](repeating: 0, count: max(count, 1))
        try check(H5Dread(handle.id, doconv_h5t_native_float(), h5All, h5All, h5Default, &values),
                  file: fileName, "cannot read '\(path)'")
        return count == 0 ? [] : values
    }

    /// Creates dataset `name` in `group` with this dataset's element type and creation
    /// properties (chunking, compression) but shape `shape`, holding `values`.
    public func createSibling(in target: HDF5Group, name: String, shape: [Int], values: [Float]) throws(HDF5Error) {
        let what = "'\(target.childPath(name))'"
        let type = try HDF5Handle(H5Dget_type(handle.id), file: fileName, "cannot read the type of '\(path)'")
        let properties = try HDF5Handle(H5Dget_create_plist(handle.id), file: fileName, "cannot read the layout of '\(path)'")
        var dims = shape.map { hsize_t($0) }
        if H5Pget_layout(properties.id) == H5D_CHUNKED {
            // Chunks must match the new rank; one chunk per dataset suits weight tensors.
            var chunk = dims.map { max($0, 1) }
            try check(H5Pset_chunk(properties.id, Int32(chunk.count), &chunk), file: target.fileName, "cannot lay out \(what)")
        }
        let space = try HDF5Handle(H5Screate_simple(Int32(dims.count), &dims, nil), file: target.fileName, "cannot shape \(what)")
        let dataset = try HDF5Handle(H5Dcreate2(target.handle.id, name, type.id, space.id, h5Default, properties.id, h5Default),
                                     file: target.fileName, "cannot create \(what)")
        var data = values
        try check(H5Dwrite(dataset.id, doconv_h5t_native_float(), h5All, h5All, h5Default, &data),
                  file: target.fileName, "cannot write \(what)")
    }
}
