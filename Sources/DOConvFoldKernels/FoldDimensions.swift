/// The sizes a fold kernel needs, without the layer description of the core.
public struct FoldDimensions: Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var groups: Int
    /// M * N.
    public var kernelArea: Int
    public var depthMultiplier: Int

    @inlinable
    public init(inChannels: Int, outChannels: Int, groups: Int, kernelArea: Int, depthMultiplier: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.kernelArea = kernelArea
        self.depthMultiplier = depthMultiplier
    }

    @inlinable public var inChannelsPerGroup: Int { inChannels / groups }
    @inlinable public var outChannelsPerGroup: Int { outChannels / groups }
}
