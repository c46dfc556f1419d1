/// Which layers a fold takes (`--only GLOB`, `--exclude GLOB`, both repeatable): a layer is
/// taken when some `only` pattern matches it (or none is given) and no `exclude` pattern
/// does. Patterns are shell globs (`*`, `?`, `[abc]`, `[!abc]`) in which `*` also crosses
/// dots and slashes, matched against the layer's name as the summary prints it and against
/// that name without the path of the state dict it sits in ("state_dict/layer1.0.conv1"
/// is matched as it is and as "layer1.0.conv1").
public struct LayerSelection: Sendable, Equatable {
    public var only: [String]
    public var exclude: [String]

    public init(only: [String] = [], exclude: [String] = []) {
        self.only = only
        self.exclude = exclude
    }

    /// True when no pattern is given: every layer is taken.
    public var takesEverything: Bool { only.isEmpty && exclude.isEmpty }

    /// Why the layer `name` is left unfolded, or nil when it is taken.
    public func refusal(of name: String) -> String? {
        if let pattern = exclude.first(where: { Self.matches($0, layer: name) }) { return "left as it is: --exclude \(pattern)" }
        if !only.isEmpty, !only.contains(where: { Self.matches($0, layer: name) }) { return "left as it is: no --only pattern matches it" }
        return nil
    }

    /// The patterns that match no layer among `names` (most likely typing mistakes).
    public func unmatchedPatterns(among names: [String]) -> [String] {
        (only + exclude).filter { pattern in !names.contains { Self.matches(pattern, layer: $0) } }
    }

    static func matches(_ pattern: String, layer name: String) -> Bool {
        if Glob(pattern).matches(name) { return true }
        guard let slash = name.lastIndex(of: "/") else { return false }
        return Glob(pattern).matches(String(name[name.index(after: slash)...]))
    }
}

/// A shell glob over characters, with no special meaning for '/' or '.'.
struct Glob {
    private let pattern: [Character]

    init(_ pattern: String) { self.pattern = Array(pattern) }

    func matches(_ text: String) -> Bool {
        let text = Array(text)
        // Iterative matching with one backtrack point for the last '*': linear in practice,
        // never exponential.
        var p = 0, t = 0
        var star: Int?, starText = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "*" {
                star = p
                starText = t
                p += 1
            } else if p < pattern.count, let next = step(at: p, matching: text[t]) {
                p = next
                t += 1
            } else if let star {
                p = star + 1
                starText += 1
                t = starText
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }

    /// The pattern index after the element at `p` when it matches `c`, else nil.
    private func step(at p: Int, matching c: Character) -> Int? {
        switch pattern[p] {
        case "?": return p + 1
        case "[":
            guard let (members, negated, end) = bracket(at: p) else { return pattern[p] == c ? p + 1 : nil }
            return members(c) != negated ? end : nil
        default: return pattern[p] == c ? p + 1 : nil
        }
    }

    /// A `[...]` set starting at `p`: membership, negation and the index after `]`; nil when
    /// the bracket is not closed (then '[' is literal).
    private func bracket(at p: Int) -> ((Character) -> Bool, Bool, Int)? {
        var k = p + 1
        let negated = k < pattern.count && (pattern[k] == "!" || pattern[k] == "^")
        if negated { k += 1 }
        var ranges: [(Character, Character)] = []
        var first = true
        while k < pattern.count, pattern[k] != "]" || first {
            first = false
            if k + 2 < pattern.count, pattern[k + 1] == "-", pattern[k + 2] != "]" {
                ranges.append((pattern[k], pattern[k + 2]))
                k += 3
            } else {
                ranges.append((pattern[k], pattern[k]))
                k += 1
            }
        }
        guard k < pattern.count else { return nil }
        return ({ c in ranges.contains { $0.0 <= c && c <= $0.1 } }, negated, k + 1)
    }
}

extension LayerSelection {
    /// The items this selection takes, and a left-alone candidate (with the reason) for
    /// each of the others.
    public func partition<Item>(_ items: [Item], name: (Item) -> String) -> (taken: [Item], left: [RejectedCandidate]) {
        guard !takesEverything else { return (items, []) }
        var taken: [Item] = []
        var left: [RejectedCandidate] = []
        for item in items {
            if let reason = refusal(of: name(item)) {
                left.append(RejectedCandidate(name: name(item), reason: reason, isDOConvLayer: true))
            } else {
                taken.append(item)
            }
        }
        return (taken, left)
    }
}
