import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn, in this process's group (so whatever ends the
/// tool's group, a Python timeout or Ctrl-C, ends it too), its standard output optionally
/// captured through a pipe that is read while it runs.
final class ChildProcess: @unchecked Sendable {
    /// How a child ended.
    enum Termination: Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    let pid: pid_t
    // Written by the waiting thread before `ended` is signalled, read only after.
    private var termination: Termination?
    private let ended = DispatchSemaphore(value: 0)
    // Written by the reading thread before `drained` is left, read only after.
    private var output: [UInt8] = []
    private let drained = DispatchGroup()

    /// Starts `executable` with `arguments` (argv[0] included) and `environment`.
    init(executable: String, arguments: [String], environment: [String: String], captureOutput: Bool) throws(SpawnError) {
        var pipeEnds: [Int32] = [-1, -1]
        if captureOutput {
            guard pipe(&pipeEnds) == 0 else { throw SpawnError(description: String(cString: strerror(errno))) }
            // Neither end may leak into the child beyond its dup2'd standard output.
            for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if captureOutput { posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], STDOUT_FILENO) }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &actions, nil, argv, envp)
        if captureOutput { close(pipeEnds[1]) } // the child's copy is its own; EOF comes when it ends
        guard status == 0 else {
            if captureOutput { close(pipeEnds[0]) }
            throw SpawnError(description: String(cString: strerror(status)))
        }
        pid = child
        if captureOutput { startReading(pipeEnds[0]) }
        DispatchQueue.global().async { [self] in
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            // The wait status: low 7 bits the signal that ended it (0 for an exit), then the code.
            termination = raw & 0x7F == 0 ? .exited((raw >> 8) & 0xFF) : .signaled(raw & 0x7F)
            ended.signal()
        }
    }

    /// Reads the child's standard output to its end on another thread: a result larger
    /// than the pipe's buffer would otherwise block the child forever.
    private func startReading(_ descriptor: Int32) {
        drained.enter()
        DispatchQueue.global().async { [self] in
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { break }
                output += chunk[..<n]
            }
            close(descriptor)
            drained.leave()
        }
    }

    /// How the child ended, or nil when it ran past `seconds`.
    func wait(seconds: Double) -> Termination? {
        guard ended.wait(timeout: .now() + seconds) == .success else { return nil }
        ended.signal() // a later wait sees the same end
        return termination
    }

    /// Kills the child and waits for its end.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        ended.wait()
        ended.signal()
    }

    /// Everything the child wrote on its standard output (empty unless captured), once it
    /// closed it.
    func capturedOutput() -> [UInt8] {
        drained.wait()
        return output
    }
}
