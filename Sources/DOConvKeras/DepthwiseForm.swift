import DOConvCore

/// A folded DO-DConv (groups = Cin) written as Keras's DepthwiseConv2D rather than
/// Conv2D(groups=Cin): tf_keras and Keras 3 run grouped Conv2D through an XLA-compiled
/// function that tf2onnx leaves as a PartitionedCall onnxruntime refuses, and a
/// DepthwiseConv2D exports as a plain Conv.
///
/// The kernel is the same memory: Conv2D(groups=Cin) holds (M, N, 1, Cout) with output
/// channel o = c * (Cout/Cin) + k of input channel c, and DepthwiseConv2D (M, N, Cin,
/// Cout/Cin) holds [m, n, c, k] at that same flat position. Only the shape and, in legacy
/// files, the dataset's name (`depthwise_kernel`) change.
public enum DepthwiseForm {
    /// Whether a folded layer is a DO-DConv that DepthwiseConv2D can hold.
    public static func applies(to geometry: DOConvGeometry) -> Bool {
        geometry.inChannels > 1 && geometry.groups == geometry.inChannels && geometry.outChannels % geometry.inChannels == 0
    }

    /// What DepthwiseConv2D calls its kernel.
    public static let kernelName = "depthwise_kernel"

    /// The summary's note naming the layers written as DepthwiseConv2D, which a plain model
    /// must build so to load the weights; nil when there are none.
    public static func note(_ layers: [(name: String, multiplier: Int)]) -> String? {
        guard !layers.isEmpty else { return nil }
        let listed = layers.map { "'\($0.name)' (depth_multiplier \($0.multiplier))" }.joined(separator: ", ")
        return "written as DepthwiseConv2D (depthwise_kernel (M, N, Cin, Cout/Cin)), which tf2onnx exports: \(listed); --keep-grouped keeps Conv2D(groups=Cin)"
    }

    /// The kernel's DepthwiseConv2D shape, (M, N, Cin, Cout/Cin).
    public static func shape(of geometry: DOConvGeometry) -> [Int] {
        [geometry.kernelHeight, geometry.kernelWidth, geometry.inChannels, geometry.outChannels / geometry.inChannels]
    }

    /// A weight's name as DepthwiseConv2D calls its kernel: "do_dw/kernel:0" ->
    /// "do_dw/depthwise_kernel:0" (the last component's "kernel" prefix).
    public static func renamed(_ name: String) -> String {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard let last = parts.last, last.hasPrefix("kernel") else { return name }
        return (parts.dropLast() + ["depthwise_" + last]).joined(separator: "/")
    }

    /// Rewrites the plan's folded kernel of one layer as a DepthwiseConv2D's; returns its
    /// depth multiplier.
    static func write(_ kernel: KerasWeight, groupPath: String, geometry: DOConvGeometry, format: KerasFileFormat, plan: inout KerasRewritePlan) -> Int {
        if var replaced = plan.replacedDatasets[kernel.path] {
            replaced.shape = shape(of: geometry)
            plan.replacedDatasets[kernel.path] = replaced
        }
        if format != .weightsH5 {
            // Legacy files find datasets by the names weight_names lists: both change.
            plan.renamedGroups[kernel.path] = renamed(String(kernel.path.split(separator: "/").last ?? ""))
            if var names = plan.stringAttributes[groupPath]?["weight_names"] {
                names.values = names.values.map { $0 == kernel.name ? renamed($0) : $0 }
                plan.stringAttributes[groupPath, default: [:]]["weight_names"] = names
            }
        }
        return geometry.outChannels / geometry.inChannels
    }
}
