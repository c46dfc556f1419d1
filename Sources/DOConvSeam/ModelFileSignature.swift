import DOConvFileIO
import DOConvZip

/// What the formats look at to recognize a file: its first bytes, its size and, for a zip
/// file, the names of its entries (a PyTorch archive and a `.keras` archive are both zips,
/// told apart by what they hold).
public struct ModelFileSignature: Sendable {
    public let path: String
    /// Up to the first 64 bytes.
    public let head: [UInt8]
    public let size: Int
    /// The entry names of a zip file, nil for other files.
    public let zipEntries: [String]?
    /// A folder (a sharded checkpoint's), which has no head.
    public let isFolder: Bool

    public static let zipMagic: [UInt8] = [0x50, 0x4B, 0x03, 0x04]
    static let emptyZipMagic: [UInt8] = [0x50, 0x4B, 0x05, 0x06]

    /// Reads the signature of the file at `path`.
    public init(path: String) throws(FormatError) {
        self.path = path
        guard FilePath.exists(path) else {
            throw FormatError("\(path): cannot open: no such file")
        }
        guard !FilePath.isFolder(path) else {
            (head, size, zipEntries, isFolder) = ([], 0, nil, true)
            return
        }
        isFolder = false
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw FormatError("\(error)") }
        head = Array(file.bytes.prefix(64))
        size = file.bytes.count
        guard head.starts(with: Self.zipMagic) || head.starts(with: Self.emptyZipMagic) else {
            zipEntries = nil
            return
        }
        do {
            zipEntries = try ZipArchive(bytes: file.bytes).entries.map(\.name)
        } catch {
            throw FormatError("\(path): corrupt zip archive: its central directory cannot be read (\(error))")
        }
    }

    public init(path: String, head: [UInt8], size: Int, zipEntries: [String]?, isFolder: Bool = false) {
        self.path = path
        self.head = head
        self.size = size
        self.zipEntries = zipEntries
        self.isFolder = isFolder
    }
}
