import ArgumentParser
import FedClient
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A `fed server` child process for benchmarks: this same executable, on a
/// free port, with a given checkpoint.
enum ChildServer {
    /// Starts this executable's `server` subcommand (with `arguments` after the
    /// checkpoint's, run through `prefix`, e.g. `ip netns exec NS`) and waits
    /// for its `listening on` line.
    static func start(checkpoint: String, arguments: [String] = [], prefix: [String] = []) throws -> (Process, Int) {
        let p = Process()
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let args = ["server", "--port", "0", "--checkpoint", checkpoint, "--log-level", "warning"] + arguments
        if prefix.isEmpty {
            (p.executableURL, p.arguments) = (exe, args)
        } else {
            (p.executableURL, p.arguments) = (URL(fileURLWithPath: "/usr/bin/env"), prefix + [exe.path] + args)
        }
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        guard let line = text.split(separator: "\n").first, let port = Int(line.split(separator: ":").last ?? "")
        else { throw ValidationError("server did not start: \(text)") }
        return (p, port)
    }

    static func residentMegabytes(pid: Int32) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return kb / 1024
    }

    /// User + system CPU seconds the process has used so far.
    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Parses `HOST:PORT`.
func parseHostPort(_ text: String) throws -> (host: String, port: Int) {
    guard let address = HostPort(text) else { throw ValidationError("\(text) is not HOST:PORT") }
    return (address.host, address.port)
}

/// The server a benchmark measures: `--server HOST:PORT` if given, else a
/// `fed server` child with a temporary checkpoint, stopped (SIGTERM) and
/// cleaned up when this goes away.
final class BenchTarget {
    let host: String
    let port: Int
    let child: Process?
    private let dir: URL?

    /// `arguments`: more `fed server` options for the child.
    init(server: String?, arguments: [String] = []) throws {
        if let server {
            (host, port) = try parseHostPort(server)
            (child, dir) = (nil, nil)
        } else {
            let d = FileManager.default.temporaryDirectory.appendingPathComponent(
                "fed-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            let (process, p) = try ChildServer.start(
                checkpoint: d.appendingPathComponent("model.fedk").path, arguments: arguments)
            (host, port, child, dir) = ("127.0.0.1", p, process, d)
        }
    }

    deinit {
        if let child {
            kill(child.processIdentifier, SIGTERM)
            child.waitUntilExit()
        }
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }
}
