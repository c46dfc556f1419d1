extension DOConvGeometry {
    /// An OIHW kernel (Cout, Cin/g, M, N) in the layout Keras and TensorFlow store,
    /// HWIO (M, N, Cin/g, Cout). Sixteen output channels at a time, so that each write fills
    /// whole cache lines (one value at a time, Cout apart, a 512-channel 3x3 kernel took most
    /// of the Keras fold's time). Inlinable, so that each caller gets it for its element type.
    @inlinable
    public func hwio<T: Numeric>(oihw: [T]) -> [T] {
        let (mn, perGroup, cout) = (kernelArea, inChannelsPerGroup, outChannels)
        precondition(oihw.count == cout * perGroup * mn, "hwio(oihw:): \(oihw.count) values for a \(cout)x\(perGroup)x\(mn) kernel")
        return [T](unsafeUninitializedCapacity: oihw.count) { hwio, initialized in
            oihw.withUnsafeBufferPointer { oihw in
                var o0 = 0
                while o0 < cout {
                    let o1 = min(cout, o0 + 16)
                    for c in 0..<perGroup {
                        for q in 0..<mn {
                            let row = (q * perGroup + c) * cout
                            for o in o0..<o1 { hwio[row + o] = oihw[(o * perGroup + c) * mn + q] }
                        }
                    }
                    o0 = o1
                }
            }
            initialized = oihw.count
        }
    }

    /// The inverse of `hwio(oihw:)`: a Keras (M, N, Cin/g, Cout) kernel as OIHW.
    @inlinable
    public func oihw<T: Numeric>(hwio: [T]) -> [T] {
        let (mn, perGroup, cout) = (kernelArea, inChannelsPerGroup, outChannels)
        precondition(hwio.count == cout * perGroup * mn, "oihw(hwio:): \(hwio.count) values for a \(cout)x\(perGroup)x\(mn) kernel")
        return [T](unsafeUninitializedCapacity: hwio.count) { oihw, initialized in
            hwio.withUnsafeBufferPointer { hwio in
                for o in 0..<cout {
                    for c in 0..<perGroup {
                        for q in 0..<mn { oihw[(o * perGroup + c) * mn + q] = hwio[(q * perGroup + c) * cout + o] }
                    }
                }
            }
            initialized = hwio.count
        }
    }
}
