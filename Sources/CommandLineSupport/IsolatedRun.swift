import DOConvFileIO
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Runs this executable again, as a child process, on the same work. libhdf5 is not
/// hardened against corrupt or hostile files: a crash or an endless loop inside it must end
/// as one clean error line naming the file, with nothing written and no temporary file
/// left, not take the whole run down. Every tool sends its HDF5 work through here.
public enum IsolatedRun {
    static let childMarker = "DOCONV_ISOLATED_CHILD"

    /// True in the child, which then does the work itself.
    public static var isChild: Bool { ProcessInfo.processInfo.environment[childMarker] == "1" }

    /// How long a child may take: far beyond any real Keras file (they are read in
    /// milliseconds to seconds), growing with the inputs' size. DOCONV_HDF5_TIME_LIMIT
    /// overrides it.
    static func timeLimit(forInputs inputs: [String]) -> Double {
        if let text = ProcessInfo.processInfo.environment["DOCONV_HDF5_TIME_LIMIT"], let seconds = Double(text), seconds > 0 {
            return seconds
        }
        let bytes = inputs.reduce(0) { $0 + (FilePath.size(of: $1) ?? 0) }
        return 120 + Double(bytes) / 1e6
    }

    /// What a child run ended with.
    public struct Outcome: Sendable {
        /// The child's exit status, or 2 when it died or ran past its time limit.
        public var status: Int32
        /// What the child wrote on standard output (empty unless it was captured).
        public var standardOutput: Data
        /// When the child died or ran past its time limit: the error line's message (after
        /// "TOOL: error: "), already written to standard error.
        public var failure: String?
    }

    /// Runs this executable's `command` with `arguments` (the tool's own, without the
    /// subcommand) as a child (its output goes straight to ours); returns its exit status, or
    /// 2 when it died or ran past its time limit. `output`, when the child writes one, is
    /// where its temporary files are looked for afterwards.
    public static func run(_ command: any ToolCommand.Type, arguments: [String], inputs: [String], output: String? = nil) -> Int32 {
        launch(command, arguments: arguments, inputs: inputs, output: output, capture: false).status
    }

    /// Like `run`, but keeps the child's standard output (a JSON result, say) for the caller
    /// instead of passing it through; its standard error still goes straight to ours.
    public static func runCapturingOutput(_ command: any ToolCommand.Type, arguments: [String], inputs: [String], output: String? = nil) -> Outcome {
        launch(command, arguments: arguments, inputs: inputs, output: output, capture: true)
    }

    private static func launch(_ command: any ToolCommand.Type, arguments: [String], inputs: [String], output: String?, capture: Bool) -> Outcome {
        let tool = command.toolName
        let subject = inputs.joined(separator: ", ")
        let (files, one) = inputs.count > 1 ? ("the files", "one of them is") : ("the file", "it is")
        var environment = ProcessInfo.processInfo.environment
        environment[childMarker] = "1"
        environment["SWIFT_BACKTRACE"] = "enable=no" // the parent reports the crash in one line
        let child: ChildProcess
        do {
            // Run as /proc/self/exe, not under the tool's name: the subcommand says which tool.
            child = try ChildProcess(executable: "/proc/self/exe", arguments: ["/proc/self/exe", command.subcommandName] + arguments,
                                     environment: environment, captureOutput: capture)
        } catch {
            return failed("\(subject): cannot start a worker process: \(error)", tool: tool)
        }
        let limit = timeLimit(forInputs: inputs)
        guard let termination = child.wait(seconds: limit) else {
            child.kill()
            _ = child.capturedOutput()
            removeLeftovers(of: child.pid, output: output)
            return failed("\(subject): reading \(files) did not finish in \(Int(limit)) s "
                          + "(the HDF5 library loops on it): \(one) corrupt; nothing written", tool: tool)
        }
        let standardOutput = Data(child.capturedOutput())
        switch termination {
        case .exited(let status):
            return Outcome(status: status, standardOutput: standardOutput, failure: nil)
        case .signaled(let signal):
            removeLeftovers(of: child.pid, output: output)
            return failed(crashMessage(signal: signal, subject: subject, files: files, one: one), tool: tool)
        }
    }

    /// What a child's death by `signal` says. A Swift runtime check that fails (an
    /// overflow, a bad index, a precondition) stops with SIGILL, or SIGTRAP on some
    /// machines: that is doconv's own bug, not the file's, and the line says so. Any other
    /// signal comes from libhdf5 on a corrupt file.
    static func crashMessage(signal: Int32, subject: String, files: String, one: String) -> String {
        let name = signalName(signal)
        if signal == SIGILL || signal == SIGTRAP {
            return "\(subject): doconv itself stopped on a failed check reading \(files) (signal \(signal), \(name)): a bug in doconv, "
                + "not in the file; please report it with the file; nothing written"
        }
        return "\(subject): the HDF5 library crashed reading \(files) (signal \(signal), \(name)): \(one) corrupt; nothing written"
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE",
                                      SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGTERM: "SIGTERM"]
        return names[signal] ?? "signal \(signal)"
    }

    /// Reports `message` as the one error line and returns the outcome of a child that failed.
    private static func failed(_ message: String, tool: String) -> Outcome {
        report("\(tool): error: \(message)")
        return Outcome(status: 2, standardOutput: Data(), failure: message)
    }

    private static func report(_ line: String) {
        StandardStreams.error(line + "\n")
    }

    /// The child's temporary files: `.OUTPUT.tmp-PID-*` beside the output and `doconv-PID-*`
    /// in the temporary folder.
    private static func removeLeftovers(of pid: Int32, output: String?) {
        let manager = FileManager.default
        if let output {
            let destination = URL(fileURLWithPath: output)
            let folder = destination.deletingLastPathComponent()
            let prefix = TemporaryFiles.prefix(besideDestinationNamed: destination.lastPathComponent, pid: pid)
            for name in (try? manager.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix(prefix) {
                try? manager.removeItem(at: folder.appendingPathComponent(name))
            }
        }
        let scratch = manager.temporaryDirectory
        for name in (try? manager.contentsOfDirectory(atPath: scratch.path)) ?? [] where name.hasPrefix(TemporaryFiles.scratchPrefix(pid: pid)) {
            try? manager.removeItem(at: scratch.appendingPathComponent(name))
        }
    }
}
