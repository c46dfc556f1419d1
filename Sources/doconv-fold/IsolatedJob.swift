import Foundation

/// Runs a job in a child process of this executable. libhdf5 is not hardened against corrupt
/// or hostile files: a crash or an endless loop inside it must end as a clean error naming
/// the file, with nothing written and no temporary file left, not take the whole run down.
enum IsolatedJob {
    static let childMarker = "DOCONV_FOLD_CHILD"

    /// True in the child, which then does the work itself.
    static var isChild: Bool { ProcessInfo.processInfo.environment[childMarker] == "1" }

    /// How long a child may take: far beyond any real Keras file (they fold in milliseconds
    /// to seconds), growing with the file's size. DOCONV_HDF5_TIME_LIMIT overrides it.
    static func timeLimit(forInput input: String) -> Double {
        if let text = ProcessInfo.processInfo.environment["DOCONV_HDF5_TIME_LIMIT"], let seconds = Double(text), seconds > 0 {
            return seconds
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? 0
        return 120 + Double(size) / 1e6
    }

    /// Runs `doconv-fold arguments...` as a child; returns its exit status, or 2 when it died
    /// or ran past its time limit.
    static func run(arguments: [String], input: String, output: String) -> Int32 {
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
            FileHandle.standardError.write(Data("doconv-fold: error: \(input): cannot start a worker process: \(error)\n".utf8))
            return 2
        }
        let limit = timeLimit(forInput: input)
        if finished.wait(timeout: .now() + limit) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            finished.wait()
            removeLeftovers(of: process.processIdentifier, output: output)
            FileHandle.standardError.write(Data(("doconv-fold: error: \(input): reading the file did not finish in \(Int(limit)) s "
                + "(the HDF5 library loops on it): it is corrupt; nothing written\n").utf8))
            return 2
        }
        guard process.terminationReason == .uncaughtSignal else { return process.terminationStatus }
        removeLeftovers(of: process.processIdentifier, output: output)
        FileHandle.standardError.write(Data(("doconv-fold: error: \(input): the HDF5 library crashed reading the file (signal "
            + "\(process.terminationStatus)): it is corrupt; nothing written\n").utf8))
        return 2
    }

    /// The child's temporary files: `.OUTPUT.tmp-PID-*` beside the output and `doconv-PID-*`
    /// in the temporary folder.
    private static func removeLeftovers(of pid: Int32, output: String) {
        let manager = FileManager.default
        let destination = URL(fileURLWithPath: output)
        let folder = destination.deletingLastPathComponent()
        let prefix = ".\(destination.lastPathComponent).tmp-\(pid)-"
        for name in (try? manager.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix(prefix) {
            try? manager.removeItem(at: folder.appendingPathComponent(name))
        }
        let scratch = manager.temporaryDirectory
        for name in (try? manager.contentsOfDirectory(atPath: scratch.path)) ?? [] where name.hasPrefix("doconv-\(pid)-") {
            try? manager.removeItem(at: scratch.appendingPathComponent(name))
        }
    }
}
