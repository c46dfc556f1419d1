#if canImport(Glibc)
import Glibc
#endif
import DOConvCore

/// Folded kernels in their stored form: little-endian elements of the layer's type.
enum KernelStorage {
    /// Folds `layer` into `raw` (kernelCount elements of `type`). float32 is written in place
    /// by the fold itself; the other types go through one float32 buffer and are rounded.
    static func fold(_ layer: DOConvLayer, as type: ElementType, into raw: UnsafeMutableRawBufferPointer) {
        #if _endian(little)
        if type == .float32 {
            KernelMemory.populate(raw)
            layer.fold(into: raw.bindMemory(to: Float.self))
            return
        }
        #endif
        let values = layer.foldedKernel().values
        values.withUnsafeBufferPointer { ElementCodec.encode($0, as: type, into: raw) }
    }

    /// Calls `body` with the stored kernel as floats: the bytes themselves for float32, else
    /// a decoded copy.
    static func withStoredValues<R>(_ raw: UnsafeRawBufferPointer, as type: ElementType, _ body: (UnsafeBufferPointer<Float>) -> R) -> R {
        let count = raw.count / type.byteWidth
        #if _endian(little)
        if type == .float32, raw.baseAddress.map({ Int(bitPattern: $0) % MemoryLayout<Float>.alignment == 0 }) ?? true {
            return body(raw.bindMemory(to: Float.self))
        }
        #endif
        // The byte count is the tensor's own, made for `type`: decoding cannot fail.
        let values = (try? ElementCodec.decode(raw, as: type, count: count)) ?? []
        return values.withUnsafeBufferPointer(body)
    }
}
