#if canImport(Glibc)
import Glibc
#endif

/// Writes to standard output and standard error with write(2), whole, retrying short
/// writes and interruptions (a tool's error line must not be lost halfway).
public enum StandardStreams {
    /// Writes `text` to standard error (unbuffered, as `print` never writes there).
    public static func error(_ text: String) {
        write(Array(text.utf8), to: STDERR_FILENO)
    }

    /// Writes `bytes` to standard output, after what `print` has buffered there.
    public static func output(_ bytes: [UInt8]) {
        fflush(nil) // every C stream: what `print` buffered on standard output
        write(bytes, to: STDOUT_FILENO)
    }

    private static func write(_ bytes: [UInt8], to descriptor: Int32) {
        bytes.withUnsafeBytes { buffer in
            var done = 0
            while done < buffer.count, let base = buffer.baseAddress {
                let n = Glibc.write(descriptor, base + done, buffer.count - done)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return } // a closed stream: nothing more can be said there
                done += n
            }
        }
    }
}
