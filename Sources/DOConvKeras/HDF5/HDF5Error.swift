/// A failed libhdf5 call, as one line naming the file, the object and the operation.
public struct HDF5Error: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var message: String

    public var description: String { "\(file): \(message)" }
}
