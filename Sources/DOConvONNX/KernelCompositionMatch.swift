import DOConvCore

/// One DO-Conv layer found in kernel-composition form: the Conv(s) whose weight the graph
/// computes from D and W, everything needed to fold it, and what may be removed afterwards.
struct KernelCompositionMatch {
    /// A readable layer name (the parameter prefix, or the Conv's name).
    var name: String
    /// Indices of the Conv nodes that read the composed kernel as their weight.
    var convNodes: [Int]
    /// The value the Convs read as their weight.
    var kernelValue: String
    var layer: DOConvLayer
    /// The same layer read exactly when it is float64 (see `ConstantValue.exact`).
    var float64: Float64Layer?
    var elementType: ElementType
    /// Nodes of the composition (they are removed once nothing reads them).
    var nodes: Set<Int>
    /// Initializers the composition read (removed once nothing reads them).
    var initializers: Set<String>
    /// True when W (or D) lived in external data: the folded kernel goes there too.
    var external: Bool
    /// Name for the folded kernel's initializer.
    var kernelName: String
    var stride: [Int]
    var dilation: [Int]

    /// The layer as the format-independent report sees it.
    /// Where the layer sits when not in the main graph (see `DetectedLayer.location`).
    var location: String?

    var detected: DetectedLayer {
        var detected = DetectedLayer(name: name, form: .kernelComposition, layer: layer, elementType: elementType, stride: stride, dilation: dilation)
        detected.location = location
        detected.float64 = float64
        return detected
    }
}
