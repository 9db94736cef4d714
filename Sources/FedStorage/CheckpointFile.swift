import FedCodec
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads and writes checkpoint files (Protocol/SPEC.md, section 8): the
/// model at rest, used by the server and by tools that only read a model
/// (`fed evaluate`), without any networking.
public enum CheckpointFile {
    /// Writes `checkpoint` atomically and durably (temporary file, fsync,
    /// rename, fsync of the folder); throws `FileError` and leaves the old
    /// file in place on any failure.
    public static func write(_ checkpoint: Checkpoint, to path: String) throws {
        try AtomicFile.write(checkpoint.encode(), to: path)
    }

    /// The checkpoint stored at `path`, nil if no file exists there. A file that
    /// exists but is not a valid checkpoint is an error that names the file
    /// and the reason: the server must stop rather than silently start fresh.
    public static func read(from path: String) throws -> Checkpoint? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue {
            throw FileError("checkpoint \(path) is a directory; give the path of a file (it is created if missing)")
        }
        guard access(path, R_OK) == 0, let data = FileManager.default.contents(atPath: path) else {
            throw FileError("cannot read checkpoint \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = [UInt8](data)
        do throws(CodecError) {
            return try Checkpoint.decode(bytes)
        } catch {
            throw FileError("\(path) is not a usable checkpoint (\(error)); move it away or fix it to continue")
        }
    }
}
