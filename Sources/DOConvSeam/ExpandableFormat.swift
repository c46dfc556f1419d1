import DOConvCore

/// What `doconv-expand` asks of a format: its plain conv weights rewritten as the trained
/// tensors of DO-Conv layers that compute exactly those convs at initialization.
public protocol ExpandableFormat: ModelFormat {
    /// Expands every selected conv and checks each (composed back in float64, it must give
    /// the plain kernel); nothing is written until the result's `write(to:)`. The summary's
    /// `layers` are the expanded layers, its `rejected` the convs left as they were.
    func expand(path: String, options: ExpandOptions) throws -> FoldedModel
}
