import Foundation

/// Runs this executable again, as a child process, on the same work. libhdf5 is not
/// hardened against corrupt or hostile files: a crash or an endless loop inside it must end
/// as one clean error line naming the file, with nothing written and no temporary file
/// left, not take the whole run down. All three tools send their HDF5 work through here.
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
        let bytes = inputs.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
        return 120 + Double(bytes) / 1e6
    }

    /// Runs this executable with `arguments` as a child (its output goes straight to ours);
    /// returns its exit status, or 2 when it died or ran past its time limit. `tool` names
    /// the command in error lines; `output`, when the child writes one, is where its
    /// temporary files are looked for afterwards.
    public static func run(tool: String, arguments: [String], inputs: [String], output: String? = nil) -> Int32 {
        let subject = inputs.joined(separator: ", ")
        let (files, one) = inputs.count > 1 ? ("the files", "one of them is") : ("the file", "it is")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment[childMarker] = "1"
        environment["SWIFT_BACKTRACE"] = "enable=no" // the parent reports the crash in one line
        process.environment = environment
        // Installed before launch, so an early exit cannot go unseen.
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            try process.run()
        } catch {
            report("\(tool): error: \(subject): cannot start a worker process: \(error)")
            return 2
        }
        let limit = timeLimit(forInputs: inputs)
        if finished.wait(timeout: .now() + limit) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
            removeLeftovers(of: process.processIdentifier, output: output)
            report("\(tool): error: \(subject): reading \(files) did not finish in \(Int(limit)) s "
                   + "(the HDF5 library loops on it): \(one) corrupt; nothing written")
            return 2
        }
        guard process.terminationReason == .uncaughtSignal else { return process.terminationStatus }
        removeLeftovers(of: process.processIdentifier, output: output)
        report("\(tool): error: \(subject): the HDF5 library crashed reading \(files) (signal "
               + "\(process.terminationStatus)): \(one) corrupt; nothing written")
        return 2
    }

    private static func report(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// The child's temporary files: `.OUTPUT.tmp-PID-*` beside the output and `doconv-PID-*`
    /// in the temporary folder.
    private static func removeLeftovers(of pid: Int32, output: String?) {
        let manager = FileManager.default
        if let output {
            let destination = URL(fileURLWithPath: output)
            let folder = destination.deletingLastPathComponent()
            let prefix = ".\(destination.lastPathComponent).tmp-\(pid)-"
            for name in (try? manager.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix(prefix) {
                try? manager.removeItem(at: folder.appendingPathComponent(name))
            }
        }
        let scratch = manager.temporaryDirectory
        for name in (try? manager.contentsOfDirectory(atPath: scratch.path)) ?? [] where name.hasPrefix("doconv-\(pid)-") {
            try? manager.removeItem(at: scratch.appendingPathComponent(name))
        }
    }
}
