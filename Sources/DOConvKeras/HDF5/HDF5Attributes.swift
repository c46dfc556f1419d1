#if canImport(Glibc)
import Glibc
#endif
import CHDF5
import CHDF5Shim

/// How a string attribute is stored, so a rewritten one keeps its style.
public struct HDF5StringStyle: Equatable, Sendable {
    /// Variable-length (h5py's `str`) or fixed-length (numpy `S<n>` arrays).
    public var variableLength: Bool
    /// A scalar attribute rather than a one-dimensional array.
    public var scalar: Bool
    var characterSet: H5T_cset_t
    var padding: H5T_str_t

    /// A variable-length UTF-8 scalar, the style of h5py's `str` attributes.
    public static let utf8Scalar = HDF5StringStyle(variableLength: true, scalar: true, characterSet: H5T_CSET_UTF8, padding: H5T_STR_NULLTERM)
    /// A fixed-length byte-string array, the style of numpy `S<n>` arrays (Keras's
    /// `layer_names` and `weight_names`).
    public static let bytesArray = HDF5StringStyle(variableLength: false, scalar: false, characterSet: H5T_CSET_ASCII, padding: H5T_STR_NULLPAD)
}

extension HDF5Group {
    /// Names of the group's attributes.
    public func attributeNames() -> [String] {
        var names: [String] = []
        var k: hsize_t = 0
        while let name = try? indexedName(k, { buffer, size in
            H5Aget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, k, buffer, size, h5Default)
        }) {
            names.append(name)
            k += 1
            if k > 1 << 16 { break }
        }
        return names
    }

    public func hasAttribute(_ name: String) -> Bool { H5Aexists(handle.id, name) > 0 }

    /// A string attribute (scalar or array) as a list of strings, and how it is stored.
    public func strings(_ name: String) throws(HDF5Error) -> (values: [String], style: HDF5StringStyle) {
        let what = "attribute '\(name)' of '\(path)'"
        let attribute = try HDF5Handle(H5Aopen(handle.id, name, h5Default), file: fileName, "no \(what)")
        let type = try HDF5Handle(H5Aget_type(attribute.id), file: fileName, "cannot read \(what)")
        let space = try HDF5Handle(H5Aget_space(attribute.id), file: fileName, "cannot read \(what)")
        let count = Int(H5Sget_simple_extent_npoints(space.id))
        guard count >= 0, count < 1 << 20 else { throw HDF5Error(file: fileName, message: "\(what) has an invalid size") }
        // h5py stores an empty list (an input layer's weight_names) as an empty float array.
        if count == 0 { return ([], HDF5StringStyle(variableLength: false, scalar: false, characterSet: H5T_CSET_ASCII, padding: H5T_STR_NULLPAD)) }
        guard H5Tget_class(type.id) == H5T_STRING else { throw HDF5Error(file: fileName, message: "\(what) is not a string") }
        var style = HDF5StringStyle(variableLength: H5Tis_variable_str(type.id) > 0, scalar: H5Sget_simple_extent_ndims(space.id) == 0,
                                    characterSet: H5Tget_cset(type.id), padding: H5Tget_strpad(type.id))
        if style.variableLength {
            let memory = try HDF5Handle(H5Tcopy(doconv_h5t_c_s1()), file: fileName, "cannot read \(what)")
            try check(H5Tset_size(memory.id, h5Variable), file: fileName, "cannot read \(what)")
            try check(H5Tset_cset(memory.id, style.characterSet), file: fileName, "cannot read \(what)")
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: max(count, 1))
            try check(H5Aread(attribute.id, memory.id, &pointers), file: fileName, "cannot read \(what)")
            defer { H5Dvlen_reclaim(memory.id, space.id, h5Default, &pointers) }
            return (pointers.prefix(count).map { $0.map { String(cString: $0) } ?? "" }, style)
        }
        let width = H5Tget_size(type.id)
        guard width > 0, width < 1 << 28, count * width < 1 << 30 else { throw HDF5Error(file: fileName, message: "\(what) is too large") }
        var bytes = [UInt8](repeating: 0, count: max(count * width, 1))
        try check(H5Aread(attribute.id, type.id, &bytes), file: fileName, "cannot read \(what)")
        style.variableLength = false
        let values = (0..<count).map { k -> String in
            var item = bytes[(k * width)..<((k + 1) * width)]
            if let end = item.firstIndex(of: 0) { item = item[item.startIndex..<end] }
            while style.padding == H5T_STR_SPACEPAD, item.last == 0x20 { item = item.dropLast() }
            return String(decoding: item, as: UTF8.self)
        }
        return (values, style)
    }

    /// A scalar string attribute.
    public func string(_ name: String) throws(HDF5Error) -> String {
        let (values, _) = try strings(name)
        guard values.count == 1 else { throw HDF5Error(file: fileName, message: "attribute '\(name)' of '\(path)' is not a single string") }
        return values[0]
    }

    /// Writes (or replaces) a string attribute in the given style.
    public func setStrings(_ name: String, _ values: [String], style: HDF5StringStyle) throws(HDF5Error) {
        let what = "attribute '\(name)' of '\(path)'"
        if hasAttribute(name) { try check(H5Adelete(handle.id, name), file: fileName, "cannot replace \(what)") }
        let type = try HDF5Handle(H5Tcopy(doconv_h5t_c_s1()), file: fileName, "cannot write \(what)")
        let width = max(1, values.map(\.utf8.count).max() ?? 1)
        try check(H5Tset_size(type.id, style.variableLength ? h5Variable : width), file: fileName, "cannot write \(what)")
        try check(H5Tset_cset(type.id, style.characterSet), file: fileName, "cannot write \(what)")
        if !style.variableLength { try check(H5Tset_strpad(type.id, style.padding), file: fileName, "cannot write \(what)") }
        let spaceID: hid_t
        if style.scalar && values.count == 1 {
            spaceID = H5Screate(H5S_SCALAR)
        } else {
            var dims = [hsize_t(values.count)]
            spaceID = H5Screate_simple(1, &dims, nil)
        }
        let space = try HDF5Handle(spaceID, file: fileName, "cannot write \(what)")
        let attribute = try HDF5Handle(H5Acreate2(handle.id, name, type.id, space.id, h5Default, h5Default), file: fileName, "cannot create \(what)")
        if style.variableLength {
            let copies = values.map { strdup($0) }
            defer { copies.forEach { free($0) } }
            var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
            try check(H5Awrite(attribute.id, type.id, &pointers), file: fileName, "cannot write \(what)")
        } else {
            var bytes = [UInt8](repeating: 0, count: values.count * width)
            for (k, value) in values.enumerated() {
                for (j, byte) in value.utf8.enumerated() { bytes[k * width + j] = byte }
            }
            try check(H5Awrite(attribute.id, type.id, &bytes), file: fileName, "cannot write \(what)")
        }
    }

    /// Copies every attribute of `source` except `excluded` onto this group, with its own
    /// type and shape (strings, string arrays, numbers).
    public func copyAttributes(from source: HDF5Group, except excluded: Set<String> = []) throws(HDF5Error) {
        for name in source.attributeNames() where !excluded.contains(name) {
            try copyAttribute(name, from: source)
        }
    }

    private func copyAttribute(_ name: String, from source: HDF5Group) throws(HDF5Error) {
        let what = "attribute '\(name)' of '\(source.path)'"
        let attribute = try HDF5Handle(H5Aopen(source.handle.id, name, h5Default), file: source.fileName, "cannot open \(what)")
        let type = try HDF5Handle(H5Aget_type(attribute.id), file: source.fileName, "cannot read \(what)")
        let space = try HDF5Handle(H5Aget_space(attribute.id), file: source.fileName, "cannot read \(what)")
        let count = Int(H5Sget_simple_extent_npoints(space.id))
        let width = H5Tget_size(type.id)
        guard count >= 0, width > 0, count < 1 << 24, width < 1 << 28, count * width < 1 << 30 else {
            throw HDF5Error(file: source.fileName, message: "\(what) is too large")
        }
        // Reading with the attribute's own type copies it bit for bit; variable-length data
        // (strings) comes back as pointers that libhdf5 allocated and must reclaim.
        var buffer = [UInt8](repeating: 0, count: max(count * width, 1))
        try check(H5Aread(attribute.id, type.id, &buffer), file: source.fileName, "cannot read \(what)")
        let variable = H5Tdetect_class(type.id, H5T_VLEN) > 0 || H5Tis_variable_str(type.id) > 0
        defer { if variable { H5Dvlen_reclaim(type.id, space.id, h5Default, &buffer) } }
        let copy = try HDF5Handle(H5Acreate2(handle.id, name, type.id, space.id, h5Default, h5Default), file: fileName, "cannot create \(what)")
        try check(H5Awrite(copy.id, type.id, &buffer), file: fileName, "cannot write \(what)")
    }
}
