import CHDF5
import CHDF5Shim

/// Owns one libhdf5 identifier (file, group, dataset, attribute, type, space or property
/// list) and releases it when the last reference goes.
final class HDF5Handle {
    let id: hid_t

    /// Wraps `id`, or throws when libhdf5 returned a failure (a negative id).
    init(_ id: hid_t, file: String, _ operation: @autoclosure () -> String) throws(HDF5Error) {
        guard id >= 0 else { throw HDF5Error(file: file, message: operation()) }
        self.id = id
    }

    deinit { H5Idec_ref(id) }

    /// libhdf5 prints its error stack by default; errors reach us as return codes instead.
    static let silenced: Void = { doconv_h5_silence_errors() }()
}

/// `H5P_DEFAULT` and `H5S_ALL` (both 0) import as Int32; libhdf5's calls take `hid_t`.
let h5Default: hid_t = 0
let h5All: hid_t = 0
/// `H5T_VARIABLE`, the size of a variable-length string type: (size_t)-1.
let h5Variable = Int(bitPattern: UInt.max)

/// Throws unless a libhdf5 status call succeeded.
@inline(__always)
func check(_ status: herr_t, file: String, _ operation: @autoclosure () -> String) throws(HDF5Error) {
    guard status >= 0 else { throw HDF5Error(file: file, message: operation()) }
}
