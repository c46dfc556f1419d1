import DOConvFileIO
import FoundationEssentials
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A progress line on standard error, for runs longer than a second, and only when standard
/// error is a terminal: redrawn in place at most ten times a second, erased when done. Runs
/// on several threads may share one.
package final class ProgressLine: Sendable {
    private struct State {
        var lastDraw = ContinuousClock.Instant.now - .seconds(3600)
        var drawn = false
    }

    private let state = Mutex(State())
    private let enabled: Bool
    private let start = ContinuousClock.now

    package init() { enabled = isatty(STDERR_FILENO) != 0 }

    /// Shows `text` if the run has lasted a second and the last draw is 0.1 s old.
    package func update(_ text: @autoclosure () -> String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let line: String? = state.withLock { state in
            guard now - start >= .seconds(1), now - state.lastDraw >= .milliseconds(100) else { return nil }
            state.lastDraw = now
            state.drawn = true
            return text()
        }
        if let line { StandardStreams.error("\r\u{1B}[K\(line)") }
    }

    /// Erases the line, if one was drawn.
    package func finish() {
        let drawn = state.withLock { state in
            defer { state.drawn = false }
            return state.drawn
        }
        if drawn { StandardStreams.error("\r\u{1B}[K") }
    }
}
