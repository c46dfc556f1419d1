/// The options of `doconv-expand`.
public struct ExpandOptions: Sendable {
    /// The depth multiplier of every expanded layer with M*N > 1 (default M*N; 1x1 layers
    /// have Dmul 1, as the reference layers give them).
    public var depthMultiplier: Int?
    /// Groups by layer, from `--groups LAYER=G` (LAYER a glob, as for `--exclude`).
    public var groups: [(pattern: String, groups: Int)] = []
    /// A freshly initialized DO-Conv model's weights (`--like`), which settle each layer's
    /// groups, Dmul and whether it is a DO-Conv layer at all.
    public var template: String?
    /// The model's config (`--config`) where the format needs one.
    public var configJSON: String?
    public var configSource = "--config"
    public var selection = LayerSelection()
    /// Compose each layer back and compare (on by default).
    public var verify = true
    public var tolerance: Double?
    /// Seeds the random columns of a layer whose Dmul exceeds M*N.
    public var seed: UInt64 = 0

    public init() {}

    /// The groups `--groups` gives the layer `name`: a glob matched as `--exclude` matches,
    /// or against the name without a container prefix (`module.`, `model.`), as
    /// `--kernel-size` names layers; the last pattern given wins.
    public func givenGroups(of name: String) -> Int? {
        let local = name.split(separator: "/").last.map(String.init) ?? name
        var names = [name]
        var rest = Substring(local)
        while let dot = rest.firstIndex(of: ".") {
            rest = rest[rest.index(after: dot)...]
            names.append(String(rest))
        }
        return groups.last { given in names.contains { LayerSelection.matches(given.pattern, layer: $0) } }?.groups
    }

    /// The error for layers whose groups nothing settles: (32, 1, 3, 3) may be a depthwise
    /// conv of 32 channels or a conv of one.
    public static func unsettledGroups(_ names: [String]) -> String {
        let flags = names.prefix(3).map { "--groups \($0)=G" }.joined(separator: " ")
        return "the groups of \(names.count) layer\(names.count == 1 ? "" : "s") cannot be told from the weights (Cin/g = 1: a depthwise conv, or a conv of one input channel): "
            + "\(names.joined(separator: ", ")); pass \(flags)\(names.count > 3 ? " ..." : "") (globs work) or --like TEMPLATE"
    }

    /// The note for layers taken as groups 1 because nothing said otherwise; nil for none.
    public static func assumedGroupsNote(_ count: Int) -> String? {
        guard count > 0 else { return nil }
        return "groups taken as 1 for \(count) layer\(count == 1 ? "" : "s") that no --groups names (a kernel does not tell its groups): a grouped conv (ResNeXt) needs --groups LAYER=G or --like TEMPLATE"
    }
}
