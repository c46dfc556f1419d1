/// The doconv release, printed by `--version` on every tool.
public enum DOConvVersion {
    /// The version, "X.Y.Z". scripts/wheel reads this line too, so keep its form:
    /// `public static let string = "X.Y.Z"`.
    public static let string = "0.5.0"
}
