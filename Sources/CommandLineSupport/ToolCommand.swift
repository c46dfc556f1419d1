import ArgumentParser
import Foundation

/// A doconv command line: usage errors exit with 2, like bad input, rather than with
/// ArgumentParser's 64, and every error is one line on standard error.
public protocol ToolCommand: ParsableCommand {}

extension ToolCommand {
    public static func main() {
        // A test hook: a child that dies as a failed runtime check of ours would (SIGILL).
        // A worker joins its parent's process group (Foundation's Process starts it in one of
        // its own), so that whatever ends the tool's group (a Python timeout, Ctrl-C) ends it too.
        if IsolatedRun.isChild { _ = setpgid(0, getpgid(getppid())) }
        if IsolatedRun.isChild, ProcessInfo.processInfo.environment["DOCONV_TEST_CHILD_TRAP"] == "1" {
            kill(getpid(), SIGILL)
        }
        // A test hook: a child that never finishes (a library looping on a hostile file).
        if IsolatedRun.isChild, ProcessInfo.processInfo.environment["DOCONV_TEST_CHILD_HANG"] == "1" {
            while true { sleep(60) }
        }
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { exit(withError: error) }
            let name = configuration.commandName ?? "tool"
            printError("\(name): error: \(message(for: error).split(separator: "\n").first ?? "")")
            printError("Usage: see '\(name) --help'")
            Foundation.exit(2)
        }
    }

    /// Writes one line to standard error.
    public static func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// `--kernel-size LAYER=MxN` values (repeatable), as a layer -> [M, N] map.
public enum KernelSizeOption {
    /// The largest kernel side accepted.
    public static let largestSide = 1 << 16

    public static func parse(_ items: [String]) throws -> [String: [Int]] {
        var sizes: [String: [Int]] = [:]
        for item in items {
            guard let equals = item.lastIndex(of: "="), equals != item.startIndex else {
                throw ValidationError("--kernel-size expects LAYER=MxN, got '\(item)'")
            }
            let dims = item[item.index(after: equals)...].lowercased().split(separator: "x").compactMap { Int($0) }
            guard dims.count == 2, dims.allSatisfy({ $0 > 0 }) else { throw ValidationError("--kernel-size expects LAYER=MxN, got '\(item)'") }
            // No kernel is that large; the bound keeps M*N and everything sized by it in range.
            guard dims.allSatisfy({ $0 <= Self.largestSide }) else {
                throw ValidationError("--kernel-size \(item): a side over \(Self.largestSide) is not a kernel size")
            }
            sizes[String(item[..<equals])] = dims
        }
        return sizes
    }
}
