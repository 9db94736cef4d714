import ArgumentParser
import Crypto
import FedModel
import FedStorage
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

extension Fed {
    struct DataCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "data", abstract: "Get data sets.", subcommands: [Fetch.self])
    }
}

extension Fed.DataCommand {
    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download MNIST from its public mirrors and verify every file's SHA-256.",
            discussion: """
                Downloads the four MNIST files (train/t10k images and labels, gzip) into --dir, trying \
                each --mirror in turn, and keeps a file only if its decompressed content has the \
                published SHA-256. Files already in --dir that verify are not downloaded again. \
                Without network access: copy the files into --dir by hand, or use Debian's \
                Fashion-MNIST (apt-get install dataset-fashion-mnist), which every command finds \
                on its own.
                """
        )

        static let files: [(name: String, sha256: String)] = [
            ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ]

        @Option(help: "Folder to download into.") var dir = "data"
        @Option(help: "Mirror base URL (repeatable); tried in order.")
        var mirror: [String] = [
            "https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ]
        @Option(help: "Only the files whose name starts with this (e.g. t10k).") var only: String?
        @Option(help: "Seconds before a download is abandoned.") var timeout = 120.0

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var failures: [String] = []
            for (name, sha) in Self.files where only.map({ name.hasPrefix($0) }) ?? true {
                let target = (dir as NSString).appendingPathComponent(name + ".gz")
                if let existing = FileManager.default.contents(atPath: target), verify([UInt8](existing), sha) == nil {
                    print("\(name): already present and verified")
                    continue
                }
                var attempts: [String] = []
                var done = false
                for base in mirror {
                    let url = base.hasSuffix("/") ? base + name + ".gz" : base + "/" + name + ".gz"
                    do {
                        let bytes = try download(url)
                        if let problem = verify(bytes, sha) {
                            attempts.append("\(url): \(problem)")
                            continue
                        }
                        try AtomicFile.write(bytes, to: target)
                        print("\(name): downloaded from \(url), SHA-256 verified (\(bytes.count) bytes)")
                        done = true
                        break
                    } catch {
                        attempts.append("\(url): \(error)")
                    }
                }
                if !done { failures.append("\(name):\n    " + attempts.joined(separator: "\n    ")) }
            }
            if !failures.isEmpty {
                throw DataError(
                    "could not get every file:\n  " + failures.joined(separator: "\n  ")
                        + "\nWithout network access, copy the files into \(dir) or use Fashion-MNIST: sudo apt-get install dataset-fashion-mnist"
                )
            }
        }

        /// nil if `gz` decompresses to content with the SHA-256 `sha`, else why not.
        func verify(_ gz: [UInt8], _ sha: String) -> String? {
            let content: [UInt8]
            do {
                content = gz.starts(with: [0x1F, 0x8B]) ? try IDX.gunzip(gz, path: "download") : gz
            } catch {
                return "not a valid gzip file (\(error.reason))"
            }
            let got = SHA256.hash(data: content).map { String(format: "%02x", $0) }.joined()
            return got == sha ? nil : "SHA-256 \(got) does not match the published \(sha)"
        }

        func download(_ url: String) throws -> [UInt8] {
            guard let u = URL(string: url) else { throw ValidationError("bad URL \(url)") }
            let box = DownloadBox()
            var request = URLRequest(url: u)
            request.timeoutInterval = timeout
            let task = URLSession.shared.dataTask(with: request) { data, response, error in
                box.finish(data: data, status: (response as? HTTPURLResponse)?.statusCode, error: error)
            }
            task.resume()
            return try box.wait()
        }
    }
}

/// Hands a URLSession completion back to the waiting thread.
/// Sendable by argument: `result` is written once, before `done` is
/// signalled, and read only after `wait` has seen that signal.
final class DownloadBox: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<[UInt8], any Error> = .failure(ValidationError("no answer"))

    func finish(data: Data?, status: Int?, error: (any Error)?) {
        if let error {
            result = .failure(ValidationError(error.localizedDescription))
        } else if let status, status != 200 {
            result = .failure(ValidationError("HTTP \(status)"))
        } else {
            result = .success([UInt8](data ?? Data()))
        }
        done.signal()
    }

    func wait() throws -> [UInt8] {
        done.wait()
        return try result.get()
    }
}
