import FedCodec
import Foundation

/// Reads and writes the server's checkpoint (Protocol/SPEC.md, section 8).
public enum CheckpointFile {
    /// Writes `snapshot` atomically and durably (temporary file, fsync, rename, fsync of the folder).
    public static func save(_ snapshot: ModelSnapshot, to path: String) throws {
        let ck = Checkpoint(version: snapshot.version, datasets: snapshot.datasets, tensors: snapshot.tensors)
        try AtomicFile.write(ck.encode(), to: path)
    }

    /// The snapshot stored at `path`, nil if no file exists there. A file that
    /// exists but is not a valid checkpoint is an error that names the file
    /// and the reason: the server must stop rather than silently start fresh.
    public static func load(from path: String) throws -> ModelSnapshot? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw FileError("cannot read checkpoint \(path): \(error.localizedDescription)")
        }
        do throws(CodecError) {
            let ck = try Checkpoint.decode(bytes)
            return ModelSnapshot(version: ck.version, datasets: ck.datasets, tensors: ck.tensors)
        } catch {
            throw FileError("\(path) is not a usable checkpoint (\(error)); move it away or fix it to continue")
        }
    }
}
