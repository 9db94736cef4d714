import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A new empty folder under the system's temporary folder; the caller removes it.
public func temporaryDirectory(_ prefix: String = "fedtest") throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// A port on 127.0.0.1 that was free a moment ago.
public func reservePort() -> Int {
    #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A free port on 127.0.0.1 below the kernel's ephemeral range (20000-32767
/// here), for a server that must come back on the same port after a kill:
/// a port from `reservePort` is ephemeral, and once freed the kernel may hand
/// it to any outgoing connection of a parallel test before the restart.
public func reserveStablePort() -> Int {
    for _ in 0..<200 {
        let port = Int.random(in: 20_000..<32_000)
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        close(fd)
        if bound == 0 { return port }
    }
    return reservePort()
}

/// Resident memory of process `pid` in MiB (Linux: /proc/PID/status), 0 if unknown.
public func residentMegabytes(_ pid: Int32) -> Double {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? "VmRSS: 0 kB"
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}

extension TestClient {
    /// Everything the server sends until it closes (or the receive timeout), as text.
    public func receiveAll() -> String {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Runs a program to its end with `input` on its standard input; returns its
/// exit status and its standard output (and error, when `mergeErrors`).
public func runProgram(_ path: String, _ arguments: [String], input: [UInt8] = [], mergeErrors: Bool = true) throws
    -> (status: Int32, output: [UInt8])
{
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let stdin = Pipe(), stdout = Pipe()
    p.standardInput = stdin
    p.standardOutput = stdout
    p.standardError = mergeErrors ? stdout : FileHandle(forWritingAtPath: "/dev/null")
    try p.run()
    stdin.fileHandleForWriting.write(Data(input))
    try stdin.fileHandleForWriting.close()
    let data = stdout.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, [UInt8](data))
}

/// Runs `body` on a thread of its own and returns what it returns or throws.
///
/// Swift's cooperative pool has as many threads as cores (two on CI), and a
/// test that blocks, waiting for a process, a socket or a sleep, holds one of
/// them for as long as it waits: with two such tests nothing else runs. An
/// async test that waits through `offPool` is suspended meanwhile and leaves
/// the pool to other tests. `body` must not record issues (`#expect`): it runs
/// outside the test's task.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
