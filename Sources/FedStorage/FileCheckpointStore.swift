import FedCodec
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A checkpoint kept in one file (`Protocol/SPEC.md`, section 8), the
/// server's default store.
///
/// `save` writes the file's bytes to a temporary file in the same folder,
/// `fsync`s it, renames it over `path` and `fsync`s the folder
/// (`AtomicFile`): durable once it returns, atomic across a crash of the
/// process or the machine. It blocks the calling thread for as long as the
/// disk takes.
public struct FileCheckpointStore: CheckpointStore {
    /// The checkpoint file (created by the first save).
    public let path: String

    public init(path: String) {
        self.path = path
    }

    public var description: String { path }

    /// The contents of the file at `path`, nil if no file exists there.
    /// Throws `FileError` naming the file and the reason for a folder, an
    /// unreadable file, or one that is not a valid checkpoint.
    public func load() throws -> CheckpointContents? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue {
            throw FileError("checkpoint \(path) is a directory; give the path of a file (it is created if missing)")
        }
        guard access(path, R_OK) == 0, let data = FileManager.default.contents(atPath: path) else {
            throw FileError("cannot read checkpoint \(path): \(String(cString: strerror(errno)))")
        }
        do throws(CodecError) {
            return try CheckpointContents.decode([UInt8](data))
        } catch {
            throw FileError("\(path) is not a usable checkpoint (\(error)); move it away or fix it to continue")
        }
    }

    /// Writes `contents` atomically and durably; throws `FileError` and
    /// leaves the old file in place on any failure.
    public func save(_ contents: CheckpointContents) throws {
        try AtomicFile.write(contents.encode(), to: path)
    }
}
