extension DOConvGeometry {
    /// An OIHW kernel (Cout, Cin/g, M, N) in the layout Keras and TensorFlow store,
    /// HWIO (M, N, Cin/g, Cout).
    public func hwio<T: Numeric>(oihw: [T]) -> [T] {
        let (mn, perGroup, cout) = (kernelArea, inChannelsPerGroup, outChannels)
        var hwio = [T](repeating: 0, count: oihw.count)
        for o in 0..<cout {
            for c in 0..<perGroup {
                for q in 0..<mn { hwio[(q * perGroup + c) * cout + o] = oihw[(o * perGroup + c) * mn + q] }
            }
        }
        return hwio
    }

    /// The inverse of `hwio(oihw:)`: a Keras (M, N, Cin/g, Cout) kernel as OIHW.
    public func oihw<T: Numeric>(hwio: [T]) -> [T] {
        let (mn, perGroup, cout) = (kernelArea, inChannelsPerGroup, outChannels)
        var oihw = [T](repeating: 0, count: hwio.count)
        for o in 0..<cout {
            for c in 0..<perGroup {
                for q in 0..<mn { oihw[(o * perGroup + c) * mn + q] = hwio[(q * perGroup + c) * cout + o] }
            }
        }
        return oihw
    }
}
