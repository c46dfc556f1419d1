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
    /// The summary. For a model whose verification ends while it is written (see
    /// `init(summary:writeVerifying:)`), some layers' probe errors are not in it yet: the
    /// complete one is `write(to:accepting:)`'s.
    public let summary: FoldSummary
    private let writer: (String, (FoldSummary) -> Bool) throws -> Written

    /// What `write(to:accepting:)` did.
    public struct Written {
        /// The complete summary, as `accept` saw it.
        public var summary: FoldSummary
        /// Notes on what was written, for the summary (the files a sharded checkpoint became).
        public var notes: [String]
        /// False when `accept` refused the summary: then nothing was written.
        public var committed: Bool

        public init(summary: FoldSummary, notes: [String], committed: Bool) {
            self.summary = summary
            self.notes = notes
            self.committed = committed
        }
    }

    public init(summary: FoldSummary, write: @escaping (String) throws -> Void) {
        self.init(summary: summary, writeWithNotes: { path in
            try write(path)
            return []
        })
    }

    /// A model whose writing has more to say (the files a sharded checkpoint became).
    public init(summary: FoldSummary, writeWithNotes: @escaping (String) throws -> [String]) {
        self.summary = summary
        self.writer = { path, accept in
            guard accept(summary) else { return Written(summary: summary, notes: [], committed: false) }
            return Written(summary: summary, notes: try writeWithNotes(path), committed: true)
        }
    }

    /// A model whose verification finishes while it is written (its kernels are computed
    /// as the unchanged tensors are copied): `write` must call `accept` with the complete
    /// summary once everything is written and before it commits anything, and commit nothing
    /// when it returns false.
    public init(summary: FoldSummary, writeVerifying: @escaping (String, (FoldSummary) -> Bool) throws -> Written) {
        self.summary = summary
        self.writer = writeVerifying
    }

    /// Writes the folded model to `path` atomically (`path` may be the input), unless
    /// `accept` refuses the complete summary: a model that fails verification is never
    /// written.
    @discardableResult
    public func write(to path: String, accepting accept: (FoldSummary) -> Bool = { _ in true }) throws -> Written {
        try withoutActuallyEscaping(accept) { try writer(path, $0) }
    }
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
