#if canImport(Glibc)
import Glibc
#endif
import CHDF5
import CHDF5Shim

/// An open HDF5 file.
public final class HDF5File {
    /// The file's path, for messages.
    public let path: String
    /// Size of the file in bytes: no dataset of it can hold more data than this (times the
    /// best compression ratio we accept), so it bounds what reading may allocate.
    public let size: Int
    let handle: HDF5Handle

    private init(path: String, size: Int, handle: HDF5Handle) {
        self.path = path
        self.size = size
        self.handle = handle
    }

    /// Opens an existing file read-only, after checking its signature (libhdf5 itself is not
    /// hardened against arbitrary bytes, so obvious non-HDF5 files never reach it).
    public static func openReadOnly(path: String) throws(HDF5Error) -> HDF5File {
        _ = HDF5Handle.silenced
        let size = try HDF5Signature.check(path: path)
        let id = H5Fopen(path, doconv_h5f_acc_rdonly(), h5Default)
        return HDF5File(path: path, size: size, handle: try HDF5Handle(id, file: path, "not a readable HDF5 file: it is truncated or corrupt"))
    }

    /// Creates a new file; fails if `path` exists.
    public static func create(path: String) throws(HDF5Error) -> HDF5File {
        _ = HDF5Handle.silenced
        let id = H5Fcreate(path, doconv_h5f_acc_excl(), h5Default, h5Default)
        return HDF5File(path: path, size: 0, handle: try HDF5Handle(id, file: path, "cannot create the file"))
    }

    /// The root group "/".
    public func root() throws(HDF5Error) -> HDF5Group {
        let id = H5Gopen2(handle.id, "/", h5Default)
        return HDF5Group(file: self, path: "/", handle: try HDF5Handle(id, file: path, "cannot open the root group"))
    }

    /// The group at absolute path `path`.
    public func group(at path: String) throws(HDF5Error) -> HDF5Group {
        let id = H5Gopen2(handle.id, path, h5Default)
        return HDF5Group(file: self, path: path, handle: try HDF5Handle(id, file: self.path, "no group '\(path)'"))
    }

    /// The dataset at absolute path `path`.
    public func dataset(at path: String) throws(HDF5Error) -> HDF5Dataset {
        let id = H5Dopen2(handle.id, path, h5Default)
        return HDF5Dataset(file: self, path: path, handle: try HDF5Handle(id, file: self.path, "no dataset '\(path)'"))
    }

    /// Flushes and closes the file now (the handle is otherwise closed when released).
    public func flush() throws(HDF5Error) {
        try check(H5Fflush(handle.id, H5F_SCOPE_GLOBAL), file: path, "cannot flush the file")
    }
}

/// The HDF5 format signature, which sits at offset 0, 512, 1024, 2048, ... of a file.
enum HDF5Signature {
    static let bytes: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Checks the signature and returns the file's size.
    static func check(path: String) throws(HDF5Error) -> Int {
        guard let file = fopen(path, "rb") else {
            throw HDF5Error(file: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        guard fseek(file, 0, SEEK_END) == 0 else { throw HDF5Error(file: path, message: "cannot read the file") }
        let size = ftell(file)
        var offset = 0
        var buffer = [UInt8](repeating: 0, count: 8)
        while offset <= 1 << 20 {
            guard fseek(file, offset, SEEK_SET) == 0, fread(&buffer, 1, 8, file) == 8 else { break }
            if buffer == bytes { return size }
            offset = offset == 0 ? 512 : offset * 2
        }
        throw HDF5Error(file: path, message: offset == 0 ? "the file is empty or too short" : "not an HDF5 file (no HDF5 signature)")
    }
}
