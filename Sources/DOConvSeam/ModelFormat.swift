import DOConvCore

/// One model file format, behind the one seam all three tools use: how to recognize a
/// file by its content, find its DO-Conv layers, fold and write it, which command-line
/// options it reads, and whether its reader must run in a child process.
///
/// A new format is one type conforming to this, one line in `FormatRegistry.formats`, and
/// its conformance to `VerifiableFormat` on the verification side (DOConvVerify), which
/// keeps the reference executor out of doconv-fold and doconv-inspect.
public protocol ModelFormat: Sendable {
    /// The machine name, as in the inspect report's `format` field ("onnx", "keras-h5", ...).
    var name: String { get }
    /// How reports name the format ("ONNX", "Keras HDF5", ...).
    var displayName: String { get }
    /// The framework family the format belongs to, for help that names formats ("Keras",
    /// "PyTorch"); the display name unless several formats share a family.
    var family: String { get }
    /// The format in a list of what the tools read ("Keras HDF5 (.h5: full models and weights)").
    var summary: String { get }
    /// The format-specific options it reads; the tools refuse the others for its files.
    var options: Set<FormatOption> { get }
    /// Whether its reader runs in a child process: a library that is not hardened against
    /// hostile files (libhdf5) may crash or loop, and that must end as one error line.
    var runsInChildProcess: Bool { get }

    /// Whether the file is in this format, judged by its content only: a signature, a magic
    /// number, the entries of a zip, the shape of its first bytes.
    func recognizes(_ file: ModelFileSignature) -> Bool
    /// Whether a file no format recognizes by content carries this format's suffix (a
    /// damaged `.h5`): its reader then says what is wrong with it. A suffix never outranks
    /// content (see `FormatRegistry.format(of:)`).
    func claimsBySuffix(_ file: ModelFileSignature) -> Bool
    /// Whether `path`, which is no file, names a model of this format by the prefix its
    /// files share (a TensorFlow checkpoint's `ckpt` for `ckpt.index` and `ckpt.data-*`),
    /// judged by the content of those files.
    func recognizesPrefix(_ path: String) -> Bool
    /// Finds the DO-Conv layers and the look-alikes, writing nothing.
    func detect(path: String, options: FormatOptions) throws -> Detection
    /// Folds and verifies every layer; nothing is written until the result's `write(to:)`.
    func fold(path: String, options: FormatOptions) throws -> FoldedModel
}

/// A folded model held in memory: its summary, and how to write it.
public struct FoldedModel {
    public let summary: FoldSummary
    private let writer: (String) throws -> [String]

    public init(summary: FoldSummary, write: @escaping (String) throws -> Void) {
        self.summary = summary
        self.writer = { path in
            try write(path)
            return []
        }
    }

    /// A model whose writing has more to say (the files a sharded checkpoint became).
    public init(summary: FoldSummary, writeWithNotes: @escaping (String) throws -> [String]) {
        self.summary = summary
        self.writer = writeWithNotes
    }

    /// Writes the folded model to `path` atomically; `path` may be the input. Returns notes
    /// on what was written, for the summary.
    @discardableResult
    public func write(to path: String) throws -> [String] { try writer(path) }
}

extension ModelFormat {
    public func claimsBySuffix(_ file: ModelFileSignature) -> Bool { false }
    public func recognizesPrefix(_ path: String) -> Bool { false }
    public var family: String { displayName }
    public var summary: String { displayName }
}

extension ModelFileSignature {
    /// True for a plain file (not a folder, not a zip) whose name ends with one of `suffixes`.
    public func isPlainFile(endingWith suffixes: [String]) -> Bool {
        let lowered = path.lowercased()
        return zipEntries == nil && !isFolder && suffixes.contains { lowered.hasSuffix($0) }
    }
}

/// A format whose files are zip archives, recognized by the entries they hold.
public protocol ZipModelFormat: ModelFormat {
    /// What the archive holds, for messages ("config.json and model.weights.h5").
    var zipContents: String { get }
}
