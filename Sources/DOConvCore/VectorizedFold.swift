import DOConvFoldKernels

extension DOConvLayer {
    /// The layer's composite kernel in OIHW order (Cout, Cin/g, M, N), computed with SIMD
    /// over contiguous memory and spread over the cores for large layers.
    ///
    /// Same arithmetic as `ScalarFold.kernel(of:)` up to the order of float additions.
    public func foldedKernel(maxThreads: Int = ParallelWork.defaultThreads, kernels: FoldKernelSet = .fastest) -> Tensor {
        let g = geometry
        let shape = [g.outChannels, g.inChannelsPerGroup, g.kernelHeight, g.kernelWidth]
        let values = [Float](unsafeUninitializedCapacity: g.kernelCount) { buffer, initialized in
            fold(into: buffer, maxThreads: maxThreads, kernels: kernels)
            initialized = g.kernelCount
        }
        return try! Tensor(shape: shape, values: values) // counts equal by construction
    }

    /// Writes the composite kernel, OIHW, into `out`, which must hold exactly
    /// `geometry.kernelCount` elements; every element is written.
    ///
    /// This is the fold without an intermediate array: callers pass the memory the kernel
    /// is stored in (a new tensor's raw bytes). The result does not depend on `maxThreads`.
    ///
    /// `kernels` picks the instruction set: by default the fastest this CPU runs. Sets differ
    /// in the last bits (fused multiply-add rounds once), never by more than float rounding.
    public func fold(into out: UnsafeMutableBufferPointer<Float>, maxThreads: Int = ParallelWork.defaultThreads,
                     kernels: FoldKernelSet = .fastest) {
        let g = geometry
        precondition(out.count == g.kernelCount, "output does not match the layer geometry")
        guard let op = out.baseAddress else { return }
        let threads = ParallelWork.threads(forMultiplyAdds: g.kernelCount * g.depthMultiplier, max: maxThreads)
        let dims = FoldDimensions(inChannels: g.inChannels, outChannels: g.outChannels, groups: g.groups,
                                  kernelArea: g.kernelArea, depthMultiplier: g.depthMultiplier)
        w.withUnsafeBytes { wBytes in
            guard let wp = wBytes.baseAddress else { return }
            switch (layout, d) {
            case (.pytorch, nil):
                UnsafeMutableRawPointer(op).copyMemory(from: wp, byteCount: g.kernelCount * 4) // a reshape of W
            case let (.pytorch, d?):
                d.withUnsafeBytes { dBytes in
                    guard let dp = dBytes.baseAddress else { return }
                    Self.foldPyTorch(kernels, d: dp, w: wp, out: op, dims: dims, threads: threads)
                }
            case (.keras, nil):
                ParallelWork.forEachSlice(of: g.inChannels, count: threads) { kernels.keras(nil, wp, op, $0, dims) }
            case let (.keras, d?):
                d.withUnsafeBytes { dBytes in
                    ParallelWork.forEachSlice(of: g.inChannels, count: threads) { kernels.keras(dBytes.baseAddress, wp, op, $0, dims) }
                }
            }
        }
    }

    /// PyTorch's layout: D repacked once (when the kernel works in channel blocks), then the
    /// output channels of a group split over the threads.
    private static func foldPyTorch(_ kernels: FoldKernelSet, d: UnsafeRawPointer, w: UnsafeRawPointer, out: UnsafeMutablePointer<Float>,
                                    dims: FoldDimensions, threads: Int) {
        let tableCount = PyTorchLayoutFold.usesBlocks(dims) ? PyTorchLayoutFold.tableCount(dims) : 0
        let table = UnsafeMutablePointer<SIMD8<Float>>.allocate(capacity: max(1, tableCount))
        defer { table.deallocate() }
        if tableCount > 0 { PyTorchLayoutFold.interleave(d: d, into: table, dims) }
        ParallelWork.forEachSlice(of: dims.outChannelsPerGroup, count: threads) { kernels.pytorch(d, table, w, out, $0, dims) }
    }
}
