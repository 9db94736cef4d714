import ArgumentParser
import FedClient
import FedCodec
import FedModel
import FedPrivacy
import Foundation

extension Fed {
    struct Client: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train on local data slices and exchange weights with a server, as the original client did.",
            discussion: """
                For each slice of --range L R (the 12 slices of 5,000 training images; with only \
                test images at hand, 12 slices of their first half): fetch the server's model if the \
                last push went through, train --epochs epochs, push the weights. When the server is \
                unreachable it keeps training on its own weights and catches up when it returns; \
                retryable failures are retried with exponential backoff and full jitter up to \
                --deadline seconds. Without --id or --range on a terminal it asks for them.
                """
        )

        @Option(help: "Server as HOST:PORT.") var server = "127.0.0.1:5000"
        @Option(help: "Client id (any string).") var id: String?
        @Option(parsing: .upToNextOption, help: "Slices to train on: L R, 1 <= L <= R <= 12.") var range: [Int] = []
        @Option(help: "Folder of MNIST-format IDX files.") var data: String?
        @Option(help: "Epochs per slice.") var epochs = 20
        @Option(help: "Batch size.") var batchSize = 32
        @Option(help: "Transport: binary or http (the original's form protocol).") var transport = "binary"
        @Option(help: "Compression for the binary transport: none, zlib, shuffle-zlib.") var compression =
            "shuffle-zlib"
        @Option(
            help: ArgumentHelp(
                "How pushes travel (binary transport): fp32 (default, lossless), fp16, int8, int4 or int2, with -delta to push Wc - W_base (for example int2-delta; 'delta' alone is lossless).",
                discussion:
                    "Lossy encodings are opt-in and need a version-3 server; lossy deltas carry their rounding error into the next push (error feedback). A delta the server cannot place (unknown_base) is resent as full weights. The client always accepts fetch deltas from a server started with --fetch-deltas.",
                valueName: "ENC")) var encoding = "fp32"
        @Option(help: "Attempts per request.") var attempts = 6
        @Option(help: "First backoff in seconds (doubles up to --max-backoff).") var backoff = 0.25
        @Option(help: "Largest backoff in seconds.") var maxBackoff = 8.0
        @Option(help: "Give up a request after this many seconds of retrying.") var deadline = 60.0
        @Option(help: "Seed of the initial weights and shuffles.") var seed: UInt64 = 1
        @Flag(
            help: ArgumentHelp(
                "Feed raw 0...255 pixels, as the original's Keras clients did.",
                discussion:
                    "Every client of one federation must feed pixels the same way: with the original's clients in the session, give this to every fed client (and to fed evaluate)."
            ))
        var rawPixels = false
        @Option(help: "Threads for training (the same weights for any number).") var threads = min(
            2, ProcessInfo.processInfo.activeProcessorCount)
        @Option(help: "Auth token for a server that requires one (binary transport); see also --auth-token-file.")
        var authToken = ""
        @Option(help: "A file whose first token line is the auth token; also read: FED_AUTH_TOKEN. Not visible in ps.")
        var authTokenFile: String?
        @Flag(help: "Speak TLS to the server, trusting the system's CAs (binary transport).") var tls = false
        @Option(
            help: ArgumentHelp(
                "Speak TLS, trusting the CA certificate(s) in this PEM file instead of the system's.", valueName: "PEM")
        )
        var tlsCa: String?
        @Option(help: "The name the server's certificate must carry (default: the host of --server).")
        var tlsServerName: String?
        @Option(help: ArgumentHelp("PEM client certificate, for servers that ask for one.", valueName: "PEM"))
        var tlsCert: String?
        @Option(help: ArgumentHelp("PEM key of --tls-cert.", valueName: "PEM")) var tlsKey: String?
        @Flag(
            help: ArgumentHelp(
                "Take part in the server's rounds (fed server --rounds; protocol version 4).",
                discussion:
                    "The client checks in and waits for a task; for each, it fetches the task's model version, trains --epochs epochs (or the round's epochs parameter) on all its data, and reports; then checks in again, until the server says the federation finished or --max-tasks tasks are done."
            ))
        var rounds = false
        @Option(help: "With --rounds: stop after this many tasks (default: when the server finishes).")
        var maxTasks: Int?
        @Option(help: "Train on at most this many samples of --range (default: all).") var maxSamples: Int?
        @Option(
            help: ArgumentHelp("With --rounds: a property stated at check-in (repeatable).", valueName: "KEY=VALUE"))
        var property: [String] = []
        @Option(
            help: ArgumentHelp(
                "With --rounds: keep each report as a checkpoint file DIR/round-R-ID.fedk (version R, the samples as datasets), for audit.",
                valueName: "DIR"))
        var keepReports: String?
        @Option(
            help: ArgumentHelp(
                "With --rounds: hold out this share (0 to 1) of the client's samples, never trained on, and evaluate served models on it when the server asks (fed server --evaluate-fraction).",
                valueName: "F"))
        var heldOut = 0.0
        @Option(
            help: ArgumentHelp(
                "With --rounds: local differential privacy, each report's update clipped to C and noised on this client.",
                discussion:
                    "epsilon=E,delta=D,clip=C (delta default 1e-5, clip default 1): each report is (E, D)-differentially private on its own, trusting no server (the analytic Gaussian mechanism, sensitivity 2C). The guarantee is per report; k reports compose (fed privacy epsilon --sampling none). The noise is large: only many clients' averaging absorbs it.",
                valueName: "epsilon=E,..."))
        var localDp: String?
        @Flag(
            help: ArgumentHelp(
                "With --rounds: offer secure aggregation (fed server --secagg): this client's updates reach the server only masked, in a sum.",
                discussion:
                    "The client advertises fresh X25519 keys for each secure-train task, shares its secrets with its neighbours in the cohort, clips and encodes its update in fixed point as the task states (secagg.clip, secagg.bits), masks it, and reveals only the shares the server may use. Without it the client is never selected for a secure round."
            ))
        var secagg = false
        @Option(
            help: ArgumentHelp(
                "With --secagg: this client's signing identity (fed secagg-identities); it then takes part only in secure rounds with the consistency check.",
                discussion:
                    "Bonawitz et al.'s active-security version: the client signs its keys and the survivor set, verifies its neighbours' and the other survivors' signatures against --secagg-trusted, and reveals shares only after at least t signatures of the same survivor set verify. Needs --secagg-trusted.",
                valueName: "FILE"))
        var secaggIdentity: String?
        @Option(
            help: ArgumentHelp(
                "With --secagg-identity: the public keys of the clients this client trusts (NAME HEX lines, fed secagg-identities).",
                valueName: "FILE"))
        var secaggTrusted: String?

        /// The local privacy of --local-dp, when given.
        func localPrivacy() throws -> LocalPrivacy? {
            guard let localDp else { return nil }
            var values: [String: Double] = [:]
            for item in localDp.split(separator: ",") {
                let parts = item.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, ["epsilon", "delta", "clip"].contains(String(parts[0])),
                    let v = Double(parts[1])
                else { throw ValidationError("--local-dp \(item): give epsilon=E, delta=D or clip=C") }
                values[String(parts[0])] = v
            }
            guard let epsilon = values["epsilon"] else { throw ValidationError("--local-dp needs epsilon=E") }
            do throws(PrivacyError) {
                return try LocalPrivacy(epsilon: epsilon, delta: values["delta"] ?? 1e-5, clip: values["clip"] ?? 1)
            } catch {
                throw ValidationError("--local-dp \(localDp): \(error)")
            }
        }

        /// TLS settings when any TLS option is given.
        var tlsSettings: FederationClient.TLS? {
            guard tls || tlsCa != nil || tlsCert != nil || tlsServerName != nil else { return nil }
            return FederationClient.TLS(
                trustRoots: tlsCa.map { .pemFile($0) } ?? .system, serverName: tlsServerName,
                certificateChainPath: tlsCert, privateKeyPath: tlsKey)
        }

        func validate() throws {
            if (secaggIdentity == nil) != (secaggTrusted == nil) {
                throw ValidationError("--secagg-identity and --secagg-trusted go together")
            }
            if secaggIdentity != nil && !secagg { throw ValidationError("--secagg-identity needs --secagg") }
            if secagg {
                guard rounds else { throw ValidationError("--secagg needs --rounds") }
                guard localDp == nil else {
                    throw ValidationError(
                        "--secagg with --local-dp: not combined (a secure round clips on the client; its noise would need distributed calibration)"
                    )
                }
            }
            if localDp != nil {
                guard rounds else { throw ValidationError("--local-dp needs --rounds") }
                _ = try localPrivacy()
            }
            guard (tlsCert == nil) == (tlsKey == nil) else {
                throw ValidationError("--tls-cert and --tls-key go together")
            }
            guard tlsSettings == nil || transport == "binary" else {
                throw ValidationError("TLS options are for the binary transport")
            }
            guard transport == "binary" || transport == "http" else {
                throw ValidationError("--transport is binary or http")
            }
            guard Compression(name: compression) != nil else {
                throw ValidationError("unknown --compression \(compression)")
            }
            guard range.isEmpty || range.count == 2 else { throw ValidationError("--range takes two numbers: L R") }
            if range.count == 2 { try Self.checkRange(range[0], range[1]) }
            guard epochs >= 1, batchSize >= 1, batchSize <= 1024, attempts >= 1, backoff >= 0, maxBackoff >= backoff,
                deadline > 0, threads >= 1
            else { throw ValidationError("epochs, batch size, attempts, threads and times must be positive") }
            guard HostPort(server) != nil else { throw ValidationError("\(server) is not HOST:PORT") }
            guard !rounds || transport == "binary" else { throw ValidationError("--rounds needs the binary transport") }
            guard heldOut >= 0 && heldOut < 1 else {
                throw ValidationError("--held-out must be at least 0 and below 1")
            }
            guard heldOut == 0 || rounds else { throw ValidationError("--held-out is for --rounds") }
            guard (maxTasks ?? 1) >= 1, (maxSamples ?? 1) >= 1 else {
                throw ValidationError("--max-tasks and --max-samples must be positive")
            }
            var properties: [String: String] = [:]
            for p in property {
                guard let eq = p.firstIndex(of: "="), eq != p.startIndex else {
                    throw ValidationError("--property \(p): give KEY=VALUE")
                }
                properties[String(p[..<eq])] = String(p[p.index(after: eq)...])
            }
            if let bad = KeyValues.check(properties) { throw ValidationError("--property: \(bad)") }
        }

        static func checkRange(_ l: Int, _ r: Int) throws {
            guard 1 <= l, l <= r, r <= 12 else {
                throw ValidationError(
                    "range \(l) \(r) is invalid: need 1 <= L <= R <= 12 (12 slices of the training data)")
            }
        }

        /// --auth-token, else the first token of --auth-token-file, else FED_AUTH_TOKEN.
        func resolvedToken() throws -> String {
            if !authToken.isEmpty { return authToken }
            if let authTokenFile { return try Tokens.file(authTokenFile)[0] }
            return Tokens.environment("FED_AUTH_TOKEN").first ?? ""
        }

        func run() throws {
            MallocTuning.enable()
            let interactive = isatty(STDIN_FILENO) != 0 && isatty(STDOUT_FILENO) != 0
            var clientID = id
            var bounds = range
            if clientID == nil || bounds.isEmpty {
                guard interactive else {
                    throw ValidationError("--id and --range L R are required when not on a terminal")
                }
                if clientID == nil {
                    print("client id: ", terminator: "")
                    clientID = readLine()?.trimmingCharacters(in: .whitespaces)
                }
                while bounds.isEmpty {
                    print("dataset range L R (1 <= L <= R <= 12): ", terminator: "")
                    let nums = (readLine() ?? "").split(separator: " ").compactMap { Int($0) }
                    if nums.count == 2, (try? Self.checkRange(nums[0], nums[1])) != nil {
                        bounds = nums
                    } else {
                        print("invalid range: give two numbers L R with 1 <= L <= R <= 12")
                    }
                }
            }
            guard let clientID, !clientID.isEmpty else { throw ValidationError("a client id is required") }
            let (dir, note) = try DataFolder.resolve(data)
            let (slices, _, split) = try DataFolder.federatedSplit(in: dir, scale: !rawPixels)
            guard bounds[1] <= slices.count else {
                throw ValidationError("range \(bounds[0]) \(bounds[1]): only \(slices.count) slices in \(dir)")
            }
            print("\(note); \(split)")
            var mine = Array(slices[(bounds[0] - 1)..<bounds[1]])
            if let most = maxSamples {
                var left = most
                mine = mine.compactMap { slice in
                    defer { left -= min(left, slice.count) }
                    return left == 0 ? nil : slice.slice(0..<min(left, slice.count))
                }
            }
            guard let (host, port) = HostPort(server).map({ ($0.host, $0.port) }) else {
                throw ValidationError("\(server) is not HOST:PORT")
            }
            guard let wire = WireEncoding(name: encoding) else {
                throw ValidationError(
                    "--encoding \(encoding): use fp32, fp16, int8, int4 or int2, optionally with -delta")
            }
            let t: any ModelTransport =
                transport == "http"
                ? HTTPTransport(host: host, port: port, clientID: clientID)
                : try tlsSettings.map { settings in
                    // TLS is the async client's (the loop retries, so the client itself tries once).
                    FederationClientTransport(
                        client: FederationClient(
                            host: host, port: port,
                            configuration: .init(
                                clientID: clientID, authToken: try resolvedToken(),
                                retryPolicy: RetryPolicy(maxAttempts: 1),
                                compression: Compression(name: compression)!, encoding: wire, acceptDeltas: true,
                                tls: settings)))
                }
                    ?? BinaryTransport(
                        host: host, port: port, clientID: clientID, compression: Compression(name: compression)!,
                        authToken: try resolvedToken(), encoding: wire, acceptDeltas: true)
            let policy = RetryPolicy(
                maxAttempts: attempts, initialBackoff: .milliseconds(Int64(backoff * 1000)), multiplier: 2,
                maxBackoff: .milliseconds(Int64(maxBackoff * 1000)), deadline: .milliseconds(Int64(deadline * 1000)))
            if rounds {
                return try runRounds(
                    host: host, port: port, clientID: clientID, data: mine, wire: wire, policy: policy)
            }
            let started = Date()
            var epochStart = Date()
            let model = MLPSlices(
                slices: mine, epochs: epochs, batchSize: batchSize, seed: seed, threads: threads
            ) { slice, epoch, loss, accuracy in
                let rate = Double(mine[slice].count) / max(Date().timeIntervalSince(epochStart), 1e-9)
                epochStart = Date()
                let text = String(
                    format: "slice %d/%d epoch %2d/%d  loss %.4f  accuracy %.4f  %.0f samples/s", slice + 1, mine.count,
                    epoch, epochs, loss, accuracy, rate)
                if interactive {
                    let filled = epoch * 20 / epochs
                    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 20 - filled)
                    FileHandle.standardOutput.write(Data("\r\u{1B}[K[\(bar)] \(text)".utf8))
                } else if epoch == epochs {
                    print("[\(clientID)] \(text)")
                }
            }
            let loop = FederatedLoop(
                model: model, transport: t, options: .init(retry: policy),
                log: { line in
                    if interactive { print("") }
                    print("[\(clientID)] \(line)")
                })
            let summary = loop.run(rounds: mine.count)
            if interactive { print("") }
            print("[\(clientID)] done in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(summary)")
            if summary.pushesAccepted == 0 { throw ExitCode(2) }
        }
    }
}
