import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A `fed server` child process for benchmarks: this same executable, on a
/// free port, with a given checkpoint.
enum ChildServer {
    /// Starts this executable's `server` subcommand and waits for its `listening on` line.
    static func start(checkpoint: String) throws -> (Process, Int) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["server", "--port", "0", "--checkpoint", checkpoint, "--log-level", "warning"]
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
