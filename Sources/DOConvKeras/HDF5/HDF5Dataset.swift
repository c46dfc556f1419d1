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

    /// Checks, before anything reads the dataset, that its dims claim no more data than the
    /// file can hold, and that the data is in this file: libhdf5 sizes reads by the dims and
    /// is not hardened against headers that lie. Data stored as is (contiguous, compact, or
    /// chunked without filters) must fit in the file. Filtered (compressed) chunks may expand,
    /// but deflate cannot expand more than 1032-fold, so they may claim 1100 times the bytes
    /// their chunks occupy (which must themselves fit in the file) plus 1 MiB. External and
    /// virtual storage (data in other files) is refused.
    public func checkClaimedSize() throws(HDF5Error) {
        let shape = try shape()
        let width = try elementSize()
        let properties = try HDF5Handle(H5Dget_create_plist(handle.id), file: fileName, "cannot read the layout of '\(path)'")
        let layout = H5Pget_layout(properties.id)
        guard H5Pget_external_count(properties.id) == 0, layout != H5D_VIRTUAL else {
            throw HDF5Error(file: fileName, message: "'\(path)' keeps its data in other files (external or virtual storage), which doconv does not read")
        }
        var limit = file.size
        if layout == H5D_CHUNKED, H5Pget_nfilters(properties.id) > 0 {
            let stored = Int(clamping: H5Dget_storage_size(handle.id))
            limit = min(stored, file.size).multipliedReportingOverflow(by: 1100).partialValue + (1 << 20)
        }
        let count = Tensor.elementCount(of: shape) ?? Int.max
        let (bytes, overflow) = count.multipliedReportingOverflow(by: max(width, 1))
        guard !overflow, bytes <= limit else {
            throw HDF5Error(file: fileName, message: "'\(path)' claims \(overflow ? "more than \(Int.max)" : String(bytes)) bytes of data "
                + "(dims \(shape), \(width)-byte elements), more than the \(file.size)-byte file can hold")
        }
    }

    /// All values converted to Float by libhdf5, after `checkClaimedSize`: a header that
    /// lies about the size cannot make us allocate more than the file could hold.
    public func floats() throws(HDF5Error) -> [Float] {
        try read(as: Float.self, memoryType: doconv_h5t_native_float())
    }

    /// All values converted to Double by libhdf5 (exact for every float type it stores),
    /// after `checkClaimedSize`.
    public func doubles() throws(HDF5Error) -> [Double] {
        try read(as: Double.self, memoryType: doconv_h5t_native_double())
    }

    private func read<T: BinaryFloatingPoint>(as: T.Type, memoryType: hid_t) throws(HDF5Error) -> [T] {
        try checkClaimedSize()
        let count = Tensor.elementCount(of: try shape()) ?? 0
        guard try elementType() != nil else { throw HDF5Error(file: fileName, message: "'\(path)' is not a float dataset") }
        var values = [T](repeating: 0, count: max(count, 1))
        let status = values.withUnsafeMutableBytes { H5Dread(handle.id, memoryType, h5All, h5All, h5Default, $0.baseAddress) }
        try check(status, file: fileName, "cannot read '\(path)'")
        return count == 0 ? [] : values
    }

    /// Creates dataset `name` in `group` with this dataset's element type and creation
    /// properties (chunking, compression) but shape `shape`, holding `values`.
    public func createSibling(in target: HDF5Group, name: String, shape: [Int], values: [Float]) throws(HDF5Error) {
        try createSibling(in: target, name: name, shape: shape, values: values, memoryType: doconv_h5t_native_float())
    }

    /// As above, from float64 values (libhdf5 rounds them to the dataset's type once).
    public func createSibling(in target: HDF5Group, name: String, shape: [Int], values: [Double]) throws(HDF5Error) {
        try createSibling(in: target, name: name, shape: shape, values: values, memoryType: doconv_h5t_native_double())
    }

    private func createSibling<T: BinaryFloatingPoint>(in target: HDF5Group, name: String, shape: [Int], values: [T], memoryType: hid_t) throws(HDF5Error) {
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
        let status = values.withUnsafeBytes { H5Dwrite(dataset.id, memoryType, h5All, h5All, h5Default, $0.baseAddress) }
        try check(status, file: target.fileName, "cannot write \(what)")
    }
}

extension HDF5Group {
    /// Creates dataset `name` (contiguous, native float32 or float64, as h5py writes numpy
    /// arrays) of shape `shape` holding `values`.
    public func createDataset(_ name: String, shape: [Int], values: [Float]) throws(HDF5Error) {
        try createDataset(name, shape: shape, values: values, type: doconv_h5t_native_float())
    }

    public func createDataset(_ name: String, shape: [Int], values: [Double]) throws(HDF5Error) {
        try createDataset(name, shape: shape, values: values, type: doconv_h5t_native_double())
    }

    private func createDataset<T: BinaryFloatingPoint>(_ name: String, shape: [Int], values: [T], type: hid_t) throws(HDF5Error) {
        let what = "'\(childPath(name))'"
        var dims = shape.map { hsize_t($0) }
        let space = try HDF5Handle(dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), &dims, nil), file: fileName, "cannot shape \(what)")
        let dataset = try HDF5Handle(H5Dcreate2(handle.id, name, type, space.id, h5Default, h5Default, h5Default), file: fileName, "cannot create \(what)")
        let status = values.withUnsafeBytes { H5Dwrite(dataset.id, type, h5All, h5All, h5Default, $0.baseAddress) }
        try check(status, file: fileName, "cannot write \(what)")
    }
}

