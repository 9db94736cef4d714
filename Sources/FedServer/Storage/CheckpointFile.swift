import FedCodec
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads and writes the server's checkpoint (Protocol/SPEC.md, section 8).
public enum CheckpointFile {
    /// Writes `snapshot` atomically and durably (temporary file, fsync, rename, fsync of the folder).
    public static func save(_ snapshot: ModelSnapshot, to path: String) throws {
        let ck = Checkpoint(
            version: snapshot.version, datasets: snapshot.datasets, tensors: snapshot.tensors,
            recentPushes: snapshot.recentPushes)
        try AtomicFile.write(ck.encode(), to: path)
    }

    /// The snapshot stored at `path`, nil if no file exists there. A file that
    /// exists but is not a valid checkpoint is an error that names the file
    /// and the reason: the server must stop rather than silently start fresh.
    public static func load(from path: String) throws -> ModelSnapshot? {
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
            let ck = try Checkpoint.decode(bytes)
            return ModelSnapshot(
                version: ck.version, datasets: ck.datasets, tensors: ck.tensors, recentPushes: ck.recentPushes)
        } catch {
            throw FileError("\(path) is not a usable checkpoint (\(error)); move it away or fix it to continue")
        }
    }
}
