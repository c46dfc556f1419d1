#if canImport(Glibc)
import Glibc
#endif

/// Where doconv's temporary files live and how they are named, in one place: every writer
/// creates its temporary output here, and the child-process runner finds a crashed child's
/// leftovers by the same names.
public enum TemporaryFiles {
    /// `.NAME.tmp-PID-` for a destination named NAME: the prefix of every temporary file a
    /// process `pid` makes beside it (hidden, and tied to the process that made it).
    public static func prefix(besideDestinationNamed name: String, pid: Int32) -> String {
        ".\(name).tmp-\(pid)-"
    }

    /// `doconv-PID-`: the prefix of the scratch folders a process makes in the system's
    /// temporary folder (an unpacked `.keras` archive).
    public static func scratchPrefix(pid: Int32) -> String { "doconv-\(pid)-" }

    /// A fresh path beside `destination`: its folder, `prefix(...)`, 16 random hex digits.
    public static func path(beside destination: String) -> String {
        let folder = FilePath.directory(of: destination), name = FilePath.baseName(of: destination)
        let random = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return folder + "/" + prefix(besideDestinationNamed: name, pid: getpid()) + random
    }

    /// Creates a fresh temporary file beside `destination` for writing, exclusively. Its
    /// mode is the destination's when that exists (an overwritten output keeps it), else
    /// 0644 less the umask, which the kernel applies at creation (reading the umask would
    /// mean changing it, for every thread of the process).
    public static func create(beside destination: String) throws(FileIOError) -> (descriptor: Int32, path: String) {
        var existing = stat()
        let keeps = stat(destination, &existing) == 0
        for _ in 0..<100 {
            let path = path(beside: destination)
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if descriptor < 0 {
                if errno == EEXIST { continue }
                throw .cannotWrite(path: destination, reason: FileIOError.systemReason)
            }
            if keeps { fchmod(descriptor, existing.st_mode & 0o7777) }
            return (descriptor, path)
        }
        throw .cannotWrite(path: destination, reason: "no free temporary name beside it")
    }
}
