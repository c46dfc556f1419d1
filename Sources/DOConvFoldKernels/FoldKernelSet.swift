/// The fold kernels compiled for one instruction set, as plain function values so the core
/// can pick a set at run time without knowing how it was built.
public struct FoldKernelSet: Sendable {
    public typealias PyTorchFold = @Sendable (_ d: UnsafeRawPointer, _ table: UnsafePointer<SIMD8<Float>>, _ w: UnsafeRawPointer,
                                              _ out: UnsafeMutablePointer<Float>, _ channels: Range<Int>, _ dims: FoldDimensions) -> Void
    public typealias KerasFold = @Sendable (_ d: UnsafeRawPointer?, _ w: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>,
                                            _ channels: Range<Int>, _ dims: FoldDimensions) -> Void

    /// A short name for reports ("portable", "avx2-fma").
    public var name: String
    /// `PyTorchLayoutFold.fold` over output channels (of one group).
    public var pytorch: PyTorchFold
    /// `KerasLayoutFold.fold` over D's channels.
    public var keras: KerasFold

    public init(name: String, pytorch: @escaping PyTorchFold, keras: @escaping KerasFold) {
        self.name = name
        self.pytorch = pytorch
        self.keras = keras
    }

    /// Separate multiply and add on 128-bit vectors: runs on every CPU.
    public static let portable = FoldKernelSet(
        name: "portable",
        pytorch: { PyTorchLayoutFold.fold(PortableTarget.self, d: $0, table: $1, w: $2, out: $3, channels: $4, $5) },
        keras: { KerasLayoutFold.fold(PortableTarget.self, d: $0, w: $1, out: $2, channels: $3, $4) })
}
