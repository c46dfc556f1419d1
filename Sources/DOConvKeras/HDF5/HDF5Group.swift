import CHDF5
import CHDF5Shim

/// What a group member is.
public enum HDF5ObjectKind: Sendable {
    case group
    case dataset
    case other
}

/// An HDF5 group: its members, its attributes, and (in a writable file) new members.
public struct HDF5Group {
    let file: HDF5File
    /// The group's absolute path in its file.
    public let path: String
    let handle: HDF5Handle

    var fileName: String { file.path }

    /// The path of member `name`.
    public func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Member names, in name order. Only hard links count: soft and external links (which
    /// could lead anywhere, even to another file) are refused.
    public func childNames() throws(HDF5Error) -> [String] {
        var info = H5G_info_t()
        try check(H5Gget_info(handle.id, &info), file: fileName, "cannot list group '\(path)'")
        var names: [String] = []
        for k in 0..<info.nlinks {
            let name = try indexedName(k) { buffer, size in
                H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, k, buffer, size, h5Default)
            }
            guard doconv_h5_is_hard_link(handle.id, name) == 1 else {
                throw HDF5Error(file: fileName, message: "'\(childPath(name))' is a soft or external link, which is not followed")
            }
            names.append(name)
        }
        return names
    }

    /// Whether member `name` is a group, a dataset or something else.
    public func kind(of name: String) throws(HDF5Error) -> HDF5ObjectKind {
        let object = try HDF5Handle(H5Oopen(handle.id, name, h5Default), file: fileName, "cannot open '\(childPath(name))'")
        switch H5Iget_type(object.id) {
        case H5I_GROUP: return .group
        case H5I_DATASET: return .dataset
        default: return .other
        }
    }

    public func hasChild(_ name: String) -> Bool {
        H5Lexists(handle.id, name, h5Default) > 0 && doconv_h5_is_hard_link(handle.id, name) == 1
    }

    public func group(_ name: String) throws(HDF5Error) -> HDF5Group {
        let id = H5Gopen2(handle.id, name, h5Default)
        return HDF5Group(file: file, path: childPath(name), handle: try HDF5Handle(id, file: fileName, "no group '\(childPath(name))'"))
    }

    public func dataset(_ name: String) throws(HDF5Error) -> HDF5Dataset {
        let id = H5Dopen2(handle.id, name, h5Default)
        return HDF5Dataset(file: file, path: childPath(name), handle: try HDF5Handle(id, file: fileName, "no dataset '\(childPath(name))'"))
    }

    public func createGroup(_ name: String) throws(HDF5Error) -> HDF5Group {
        let id = H5Gcreate2(handle.id, name, h5Default, h5Default, h5Default)
        return HDF5Group(file: file, path: childPath(name), handle: try HDF5Handle(id, file: fileName, "cannot create group '\(childPath(name))'"))
    }

    /// Copies member `name` of `source` (with everything under it, its attributes, types,
    /// chunking and filters) into this group as `newName`.
    public func copy(_ name: String, from source: HDF5Group, as newName: String) throws(HDF5Error) {
        try check(H5Ocopy(source.handle.id, name, handle.id, newName, h5Default, h5Default),
                  file: fileName, "cannot copy '\(source.childPath(name))'")
    }

    /// Reads a name through one of libhdf5's "ask for the size, then fill a buffer" calls.
    func indexedName(_ k: hsize_t, _ call: (UnsafeMutablePointer<CChar>?, Int) -> Int) throws(HDF5Error) -> String {
        let size = call(nil, 0)
        guard size >= 0, size < 1 << 16 else { throw HDF5Error(file: fileName, message: "cannot read member \(k) of '\(path)'") }
        var buffer = [CChar](repeating: 0, count: size + 1)
        guard call(&buffer, size + 1) >= 0 else { throw HDF5Error(file: fileName, message: "cannot read member \(k) of '\(path)'") }
        return String(cString: buffer)
    }
}
