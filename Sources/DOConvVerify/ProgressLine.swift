#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A progress line on standard error, for runs longer than a second, and only when standard
/// error is a terminal: redrawn in place at most ten times a second, erased when done. Runs
/// on several threads may share one.
package final class ProgressLine: @unchecked Sendable {
    // @unchecked: the mutable fields are read and written under `lock` only.
    private let lock = NSLock()
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false

    package init() { enabled = isatty(STDERR_FILENO) != 0 }

    /// Shows `text` if the run has lasted a second and the last draw is 0.1 s old.
    package func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(start) >= 1, now.timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = now
        drawn = true
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text())".utf8))
    }

    /// Erases the line, if one was drawn.
    package func finish() {
        lock.lock()
        defer { lock.unlock() }
        guard drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        drawn = false
    }
}
