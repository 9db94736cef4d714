import ArgumentParser
import Dispatch
import FedClient
import FedCodec
import FedModel
import FedPrivacy
import FedSecureAggregation
import FedServer
import FedStorage
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

extension Fed {
    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the model to binary and HTTP clients on one port.",
            discussion: """
                Binary clients (Protocol/SPEC.md) and the original demo's HTTP clients (form POST \
                or GET on /, fields id, send, datasets, weights) share --port. Every accepted update \
                is written to --checkpoint (atomically, fsync'd) before it is acknowledged; updates \
                arriving together share one write. On start the server resumes from --checkpoint; a \
                corrupt or foreign file stops it with a message rather than starting over. When ready \
                it prints `listening on HOST:PORT`. SIGINT or SIGTERM: stop accepting connections and \
                pushes (binary clients get shutting_down, HTTP 503, both retryable), let pushes in \
                flight finish (at most --shutdown-grace), write the checkpoint, exit 0.

                Limits: frame, decompressed and HTTP body sizes default to what the served model \
                needs (printed at start); bytes held for requests still arriving, pushes waiting for \
                the checkpoint write and answers not yet sent stay within --memory-budget, past which clients are told `overloaded` \
                (HTTP 503) and may retry. With --auth-token, binary clients present the token in \
                HELLO and HTTP clients send `Authorization: Bearer TOKEN`.
                """
        )

        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port (0 picks a free one; 5000 is the original's).") var port = 5000
        @Option(help: "Checkpoint file: resumed from on start, written on every update.") var checkpoint = "model.fedk"
        @Option(
            help:
                "Write the checkpoint every N versions instead of before every acknowledgement (a crash loses up to N-1 acknowledged updates)."
        )
        var saveEvery = 1
        @Option(help: "Seed of the initial weights when there is no checkpoint.") var seed: UInt64 = 1
        @Option(
            name: .customLong("init"),
            help: ArgumentHelp(
                "A checkpoint whose weights (any number and shapes of tensors) start the model when --checkpoint does not exist yet.",
                discussion:
                    "The served model's shapes come from here (default: the built-in 784-200-200-10 MLP, from --seed); a --checkpoint to resume must have the same shapes. Only the weights are taken: the model starts at version 0 with 0 samples.",
                valueName: "CHECKPOINT")) var initial: String?
        @Option(help: "Largest datasets count one update may claim.") var maxDatasets: UInt64 = 60_000
        @Option(
            help: ArgumentHelp(
                "What the server computes with updates: NAME[/KEY=VALUE]...",
                discussion: """
                    running-average: the original's Ws <- (a Ws + b Wc)/(a+b), every update a version.
                    fedasync: W <- (1-a) W + a Wc, a = alpha s(staleness); keys alpha=0.6, s=poly:0.5.
                    fedbuff: buffer k deltas Wc - W_base, combine them (scaled by s(staleness), weighed by samples), then a server optimizer step;
                    keys k=10, s=poly:1, combine=mean|median|trimmed:0.2|krum:F[:KEEP], clip=none|C|adaptive, noise=Z, opt=sgd:1|momentum|adam|yogi|adagrad.
                    fedavg: fedbuff with s=constant and sgd:1 (synchronous FedAvg when k = clients per round).
                    fedprox: fedavg whose round tasks announce mu (key mu=0.01, round parameter prox.mu): clients add mu/2 ||w - w_base||^2 to their loss; needs --rounds.
                    scaffold: not served (control variates travel in fed simulate only, in no message).
                    s(tau): constant, poly:A = (1+tau)^-A, hinge:A:B.
                    """))
        var strategy = "running-average"
        @Option(
            help: ArgumentHelp(
                "Older versions kept as bases of deltas; a push from an older base is too stale (default: 16, or fewer if the model is large).",
                discussion:
                    "Each version kept holds the model (4 bytes a weight, plus its step with --fetch-deltas) inside --memory-budget: the versions may take at most half of it, and the server refuses to start above that, naming the limit (168 for the MNIST MLP and 256 MiB). The start-up log prints what they take."
            ))
        var maxStaleness: Int?
        @Option(help: "Most samples one update counts for in a strategy's weights.") var maxUpdateSamples: UInt64 =
            10_000
        @Option(help: "Largest frame payload in bytes (default: the model's raw size + 1/64 + 64 KiB).")
        var maxPayload: Int?
        @Option(help: "Largest decompressed tensor data in bytes (default: the model's raw size).")
        var maxDecompressed: Int?
        @Option(help: "Largest HTTP request body in bytes (default: 40 bytes per weight + 64 KiB).") var maxBody: Int?
        @Option(help: "Most connections served at once; more are told `overloaded` (HTTP 503) and closed.")
        var maxConnections = 1024
        @Option(help: "Most connections from one IP address (default: no such limit).")
        var maxConnectionsPerAddress: Int?
        @Option(help: "MiB the server may hold for requests arriving and answers being sent (at most 512).")
        var memoryBudget = 256
        @Option(help: "Seconds a connection may stay silent.") var idleTimeout = 300
        @Option(help: "Seconds a new connection has to send its first bytes.") var firstBytesTimeout = 5
        @Option(help: "Seconds to receive one request (headers included) once it has started.") var requestTimeout = 30
        @Option(
            help:
                "Seconds a shutdown waits for pushes in flight (and an edge for its upstream) before it writes the checkpoint and exits."
        )
        var shutdownGrace = 10
        @Option(
            help:
                "A browser origin (scheme://host[:port]) allowed to send HTTP requests (repeatable; default: none, requests with an Origin header get 403)."
        )
        var allowOrigin: [String] = []
        @Flag(
            help:
                "With --auth-token, still let shared HTTP caches keep /v1/model (Cache-Control: public); without it, private."
        )
        var publicModel = false
        @Option(
            help: ArgumentHelp(
                "Publish each version as a step quantized in fp16, int8, int4 or int2 and send version-3 clients those steps instead of full models (default: off, full models).",
                discussion:
                    "The model then moves by exactly the steps clients add to their copy, so their copy stays the server's bit for bit; the rounding error of each step is carried into the next one (and checkpointed). A client that missed more versions than the steps are worth gets the full model.",
                valueName: "ENC")) var fetchDeltas: String?
        @Option(
            help:
                "Value encodings accepted in version-3 pushes, comma-separated (default: fp32,fp16,int8,int4,int2; every push is checked after decoding)."
        ) var encodings = "fp32,fp16,int8,int4,int2"
        @Option(help: "Server id sent to clients.") var serverId = "fed-server"
        @Option(help: "A token binary clients must present (repeatable; none: no authentication).")
        var authToken: [String] = []
        @Option(
            help:
                "A file of tokens, one a line (# comments allowed); also read: FED_AUTH_TOKENS (comma-separated). Unlike --auth-token, not visible in ps."
        )
        var authTokenFile: String?
        @Option(
            help: ArgumentHelp(
                "Run as an edge server of the server at HOST:PORT.",
                discussion: """
                    Clients push to this server as usual; each acknowledged update is gathered durably. Every \
                    --upstream-interval the edge pushes what it gathered upstream as one update (the \
                    sample-weighted mean of the weights, the summed sample count, a push id kept until the \
                    upstream acknowledges it, so a restart never applies a batch twice), then serves the \
                    upstream's model as its next version. --strategy is the upstream's business; give the \
                    upstream a --max-datasets that admits one interval's samples.
                    """, valueName: "HOST:PORT"))
        var upstream: String?
        @Option(help: "Seconds between pushes to the upstream and fetches of its model.") var upstreamInterval = 2.0
        @Option(help: "Client id of this edge at the upstream (keep it across restarts; default edge-HOST-PORT).")
        var upstreamId: String?
        @Option(
            help:
                "A file holding the token this edge presents upstream (first line); also read: FED_UPSTREAM_TOKEN.")
        var upstreamTokenFile: String?
        @Option(
            help: ArgumentHelp(
                "How the edge pushes upstream: fp32 (lossless, the default), or fp16, int8, int4, int2, each optionally with -delta.",
                discussion:
                    "As fed client --encoding: int8-delta pushes the batch's difference from the upstream model it was gathered on, in 8-bit blocks (about a quarter of the bytes), and carries the rounding error into the next push. The upstream then gets the batch to within that rounding, no longer bit for bit; a batch gathered on upstream version 0 (or before the edge holds a model) goes lossless. Needs an upstream that speaks protocol version 3.",
                valueName: "ENC")) var upstreamEncoding = "fp32"
        @Option(
            help: ArgumentHelp(
                "PEM file of the server's TLS certificate (then intermediates); with --tls-key, serve TLS.",
                discussion:
                    "A connection whose first byte is a TLS record (0x16) is taken through TLS, then served as binary or HTTP inside it (HTTPS for the original's clients). Clear text on the port is then refused unless --allow-plaintext.",
                valueName: "PEM")) var tlsCert: String?
        @Option(help: ArgumentHelp("PEM file of the TLS certificate's private key.", valueName: "PEM")) var tlsKey:
            String?
        @Option(
            help: ArgumentHelp(
                "PEM file of the CA that clients' certificates must chain to (mutual TLS: clients without one are refused).",
                valueName: "PEM")) var tlsClientCa: String?
        @Flag(help: "With TLS, also serve clear text on the same port (logged at start).") var allowPlaintext = false
        @Option(
            help:
                "With TLS, most handshakes in progress at once; a connection past it is closed before its ClientHello is processed (0: no cap)."
        ) var maxTlsHandshakes = 256
        @Option(
            help:
                "With TLS, handshakes a second one client address (IPv4, or IPv6 /64) may start on average; past it, closed before the ClientHello is processed (0: no limit)."
        ) var tlsHandshakeRate = 20.0
        @Option(help: "With TLS, handshakes one client address may start in a burst after a quiet spell.")
        var tlsHandshakeBurst = 40
        /// The TLS handshake bounds the three options above give.
        var tlsHandshakeLimits: TLSHandshakeLimits {
            TLSHandshakeLimits(
                maxConcurrent: maxTlsHandshakes > 0 ? maxTlsHandshakes : nil,
                perAddressRate: tlsHandshakeRate > 0 ? tlsHandshakeRate : nil, perAddressBurst: tlsHandshakeBurst)
        }
        @Flag(help: "Do not serve the original demo's HTTP interface (it cannot authenticate).") var noHttp = false
        @Option(
            help: ArgumentHelp(
                "Run rounds for version-4 clients (fed client --rounds): N reports close a round.",
                discussion:
                    "Clients check in and wait; the server selects N x --over-selection of them, hands each a train task from the current version, and closes the round when N reports arrived, or at --round-deadline with at least --min-reports (else the round is abandoned and selected again). A closed round applies the sample-weighted mean of its reports (FedAvg) in one checkpoint write. With an asynchronous --strategy (fedbuff, fedasync), tasks are handed out continuously instead: at most N at once, each report one update for the strategy, --round-deadline each task's (a later report counts as stale). With --strategy fedbuff and --secagg, each buffer is a cohort of N formed at check-in: up to --cohorts-in-flight cohorts run at once, each from the version current when it formed, and a cohort's securely summed mean is one buffer for fedbuff (scaled by s(staleness), then its server optimizer). Pushes of versions 1-3 and HTTP clients are served beside rounds, by --strategy.",
                valueName: "N")) var rounds: Int?
        @Option(help: "Clients selected per round, as a multiple of --rounds, to absorb drop-outs.")
        var overSelection = 1.3
        @Option(help: "Reports a round needs at its deadline (default: 80% of --rounds, rounded up).")
        var minReports: Int?
        @Option(help: "Seconds from a round's selection to its deadline.") var roundDeadline = 60.0
        @Option(help: "Seconds the first checked-in client waits for more before a smaller round opens.")
        var selectionWindow = 5.0
        @Option(
            help: "Seconds a check-in is held at most while no task is ready (a client's own wait is capped by it).")
        var checkInWait = 30.0
        @Option(help: "Rounds to run, then check-ins are told the federation finished (0: no end).")
        var totalRounds: UInt64 = 0
        @Option(
            help: ArgumentHelp(
                "With --strategy fedbuff and --secagg: cohorts (buffers) running at once, 1 to 64.",
                discussion:
                    "Each cohort is selected as a round is and trains from the version current when it formed; a cohort that closes after others published is stale by that many versions, and its step is scaled by the strategy's s(staleness). 1 runs one cohort at a time.",
                valueName: "C"))
        var cohortsInFlight: Int?
        @Option(
            help: ArgumentHelp(
                "A parameter sent with every task (repeatable), such as epochs=1.", valueName: "KEY=VALUE"))
        var roundParam: [String] = []
        @Option(
            help: ArgumentHelp("Select only clients whose check-in states this (repeatable).", valueName: "KEY=VALUE"))
        var requireProperty: [String] = []
        @Option(
            help: ArgumentHelp(
                "Train with client-level differential privacy (DP-FedAvg) in the rounds of --rounds.",
                discussion: DifferentialPrivacy.specHelp
                    + " The server samples each round's cohort (--rounds is the expected cohort; --over-selection does not apply), clips each report's update, adds Gaussian noise to their sum, and accounts for every published version (RDP accountant, as `fed privacy epsilon`): epsilon is logged after each round, served in /metrics (fed_privacy_epsilon) and kept in the checkpoint, so a restart continues the budget. Once the next version would exceed target-epsilon, no round runs again: check-ins are told the budget is spent. Pushes (versions 1-3, HTTP) are refused: they would publish updates without noise. Needs synchronous rounds: not with --strategy fedbuff or fedasync. With --secagg (and sampling=fixed) the clients add the noise (distributed noise: each enough that any survivors=F of the cohort carry all of it) and the server never sees an update in clear. Example: --rounds 100 --total-rounds 100 --dp population=1000,target-epsilon=2 calibrates the noise so that 100 rounds reach epsilon 2 at delta 1e-5.",
                valueName: "KEY=VALUE,..."))
        var dp: String?
        @Option(
            help: ArgumentHelp(
                "Secure aggregation (SecAgg+) in the rounds of --rounds: the server learns only the sum of each cohort's updates.",
                discussion: SecureAggregation.specHelp
                    + " Only clients that speak it (fed client --rounds --secagg) are selected. Each client clips its update, encodes it with its sample count in fixed point, and masks it; the server unmasks only the sum of the inputs that arrived, from shares the surviving clients reveal, and applies its mean (FedAvg) in one checkpoint write, or nothing. The threat model (an honest-but-curious server; with consistency=on and --secagg-identities, Bonawitz et al.'s consistency check against an active one) is in Documentation/SecureAggregation.md. Runs in synchronous rounds, or with --strategy fedbuff in cohorts (each buffer a cohort, --cohorts-in-flight at once; its mean combine only: robust rules and server-side clipping need single updates and are refused); fedasync is refused. With --dp (sampling=fixed) the clients add the noise, so the server only ever sees a noised sum (Protocol/SPEC.md 12.13). Example: --rounds 10 --over-selection 1.3 --secagg t=7,k=12.",
                valueName: "KEY=VALUE,...|on"))
        var secagg: String?
        @Option(
            help: ArgumentHelp(
                "With --secagg consistency=on: the clients' trusted Ed25519 public keys, NAME HEX lines (fed secagg-identities).",
                discussion:
                    "Only clients whose id is listed are selected for a secure round; their signatures are verified. Give every client the same file (fed client --secagg-trusted): the clients verify each other's signatures themselves.",
                valueName: "FILE"))
        var secaggIdentities: String?
        @Option(
            help: ArgumentHelp(
                "With --rounds: the share of check-ins (0 to 1) given an evaluate task instead of waiting for a train task.",
                discussion:
                    "Federated evaluation: a client that can evaluate (fed client --rounds --held-out F) gets, with this probability, a task to evaluate the current model version on its held-out data, at most once per version, and reports its example count, loss and accuracy. The server keeps, per version, the mean weighted by examples, the 10th and 90th percentiles, min and max of each metric: GET /v1/evaluation (JSON) and the fed_evaluation_* series of /metrics.",
                valueName: "F"))
        var evaluateFraction = 0.0

        /// The rounds' configuration, when --rounds is given.
        func roundConfiguration() throws -> RoundConfiguration? {
            guard let rounds else {
                if dp != nil { throw ValidationError("--dp needs --rounds: differential privacy runs in rounds") }
                if secagg != nil { throw ValidationError("--secagg needs --rounds: secure aggregation runs in rounds") }
                return nil
            }
            guard (1...1_000_000).contains(rounds) else { throw ValidationError("--rounds must be in 1...1000000") }
            for (flag, value) in [
                ("--round-deadline", roundDeadline), ("--selection-window", selectionWindow),
                ("--check-in-wait", checkInWait), ("--over-selection", overSelection),
            ] where !(value.isFinite && value >= 0 && value <= 86_400) {
                throw ValidationError("\(flag) \(value): give a number of seconds in 0...86400")
            }
            func pairs(_ list: [String], _ flag: String) throws -> [String: String] {
                var out: [String: String] = [:]
                for item in list {
                    guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                        throw ValidationError("\(flag) \(item): give KEY=VALUE")
                    }
                    out[String(item[..<eq])] = String(item[item.index(after: eq)...])
                }
                return out
            }
            var parameters = try pairs(roundParam, "--round-param")
            let spec: StrategySpec
            do throws(StrategySpecError) {
                spec = try StrategySpec(strategy)
            } catch {
                throw ValidationError("--strategy \(strategy): \(error)")
            }
            if let mu = spec.proximalMu {
                parameters[TrainingTask.proximalMuKey] = String(mu)
            }
            var privacy: DifferentialPrivacy?
            if let dp {
                do throws(PrivacyError) {
                    privacy = try DifferentialPrivacy(spec: dp, cohort: rounds, rounds: totalRounds)
                } catch {
                    throw ValidationError("--dp \(dp): \(error)")
                }
            }
            var secure: SecureAggregation?
            if secaggIdentities != nil && secagg == nil {
                throw ValidationError("--secagg-identities needs --secagg consistency=on")
            }
            if let secagg {
                do throws(SecureAggregationSpecError) {
                    secure = try SecureAggregation(spec: secagg)
                } catch {
                    throw ValidationError("--secagg \(secagg): \(error)")
                }
                if let secaggIdentities {
                    do {
                        secure?.identities = try TrustedIdentities(
                            file: String(contentsOfFile: secaggIdentities, encoding: .utf8))
                    } catch {
                        throw ValidationError("--secagg-identities \(secaggIdentities): \(error)")
                    }
                }
            }
            let configuration = RoundConfiguration(
                cohortSize: rounds, overSelection: overSelection, minimumReports: minReports,
                deadline: .milliseconds(Int64(roundDeadline * 1000)),
                selectionWindow: .milliseconds(Int64(selectionWindow * 1000)),
                maxWait: .milliseconds(Int64(checkInWait * 1000)), totalRounds: totalRounds,
                parameters: parameters,
                selector: UniformSelector(required: try pairs(requireProperty, "--require-property")),
                admission: try admission(spec, secure: secure != nil, cohort: rounds), privacy: privacy,
                secureAggregation: secure)
            if let problem = configuration.problem() { throw ValidationError("--rounds: \(problem)") }
            if let conflict = distributedNoiseConflict(dp: dp, secagg: secagg) { throw ValidationError(conflict) }
            if cohortsInFlight != nil, case .rounds = configuration.admission {
                throw ValidationError(
                    "--cohorts-in-flight applies to --strategy fedbuff with --secagg (each buffer a cohort)")
            }
            return configuration
        }

        /// How the rounds hand out tasks for `spec`: FedBuff under secure aggregation in cohorts,
        /// other asynchronous strategies continuously, the rest in synchronous rounds.
        func admission(_ spec: StrategySpec, secure: Bool, cohort: Int) throws -> RoundConfiguration.Admission {
            let name = strategy.split(separator: "/").first.map(String.init) ?? ""
            guard ["fedbuff", "fedasync"].contains(name) else { return .rounds }
            guard secure else { return .continuous }
            guard let fedbuff = spec.strategy as? FedBuff, name == "fedbuff" else {
                throw ValidationError(
                    "--secagg with --strategy \(name): it weighs each update on its own, which secure aggregation hides; use fedbuff (each buffer a cohort) or synchronous rounds"
                )
            }
            if let problem = fedbuff.cohortProblem {
                throw ValidationError("--strategy \(strategy) with --secagg: \(problem)")
            }
            if strategy.split(separator: "/").contains(where: { $0.hasPrefix("k=") }), fedbuff.bufferSize != cohort {
                throw ValidationError(
                    "--strategy \(strategy) with --secagg: each buffer is a cohort of --rounds \(cohort) clients; drop k= or give --rounds \(fedbuff.bufferSize)"
                )
            }
            return .cohorts(inFlight: cohortsInFlight ?? 2)
        }

        @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel = "info"

        func validate() throws {
            guard rounds == nil || upstream == nil else {
                throw ValidationError("--rounds with --upstream: an edge runs no rounds; give --rounds to the root")
            }
            _ = try roundConfiguration()
            guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
            guard saveEvery >= 1 else { throw ValidationError("--save-every must be at least 1") }
            guard maxDatasets >= 1, (maxPayload ?? 1024) >= 1024, (maxDecompressed ?? 1024) >= 1024,
                (maxBody ?? 1024) >= 1024, maxConnections >= 1, (maxConnectionsPerAddress ?? 1) >= 1, idleTimeout >= 1,
                requestTimeout >= 1, firstBytesTimeout >= 1, shutdownGrace >= 0
            else { throw ValidationError("limits must be positive (sizes at least 1024 bytes)") }
            guard (16...512).contains(memoryBudget) else {
                throw ValidationError("--memory-budget must be in 16...512 (MiB)")
            }
            let spec: StrategySpec
            do throws(StrategySpecError) {
                spec = try StrategySpec(strategy)
            } catch {
                throw ValidationError("--strategy \(strategy): \(error)")
            }
            guard !spec.controlVariates else {
                throw ValidationError(
                    "--strategy scaffold: control variates travel in no message yet; use it with fed simulate")
            }
            guard spec.localSGD == nil else {
                throw ValidationError("--strategy \(strategy): local=sgd:LR is honoured by fed simulate only")
            }
            guard spec.proximalMu == nil || rounds != nil else {
                throw ValidationError("--strategy fedprox needs --rounds: mu travels with round tasks (prox.mu)")
            }
            guard (maxStaleness ?? 0) >= 0, maxUpdateSamples >= 1 else {
                throw ValidationError("--max-staleness must be >= 0 and --max-update-samples >= 1")
            }
            if let f = fetchDeltas, ValueEncoding(name: f) == nil || f == "fp32" {
                throw ValidationError("--fetch-deltas \(f): use fp16, int8, int4 or int2")
            }
            for e in encodings.split(separator: ",") where ValueEncoding(name: String(e)) == nil {
                throw ValidationError("--encodings: \(e) is not one of fp32, fp16, int8, int4, int2")
            }
            if let upstream {
                guard HostPort(upstream) != nil else {
                    throw ValidationError("--upstream \(upstream): give HOST:PORT, such as 10.0.0.1:5000")
                }
                guard strategy == "running-average" else {
                    throw ValidationError(
                        "--strategy with --upstream: an edge forwards updates; give the strategy to the upstream server"
                    )
                }
                guard upstreamInterval > 0 else { throw ValidationError("--upstream-interval must be positive") }
            }
            guard WireEncoding(name: upstreamEncoding) != nil else {
                throw ValidationError(
                    "--upstream-encoding \(upstreamEncoding): use fp32, fp16, int8, int4 or int2, optionally with -delta"
                )
            }
            guard upstream != nil || upstreamEncoding == "fp32" else {
                throw ValidationError("--upstream-encoding needs --upstream")
            }
            guard (tlsCert == nil) == (tlsKey == nil) else {
                throw ValidationError("--tls-cert and --tls-key go together")
            }
            guard tlsCert != nil || (tlsClientCa == nil && !allowPlaintext) else {
                throw ValidationError("--tls-client-ca and --allow-plaintext need --tls-cert and --tls-key")
            }
            guard maxTlsHandshakes >= 0, tlsHandshakeRate >= 0, tlsHandshakeRate.isFinite, tlsHandshakeBurst >= 1 else {
                throw ValidationError(
                    "--max-tls-handshakes and --tls-handshake-rate must be >= 0 (0: off), --tls-handshake-burst >= 1")
            }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("unknown --log-level \(logLevel)")
            }
        }

        /// SIGINT and SIGTERM.
        static var stopSignals: sigset_t {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGINT)
            sigaddset(&set, SIGTERM)
            return set
        }

        /// Blocks SIGINT and SIGTERM in the calling thread and every thread it
        /// starts later; `Fed.main` calls it first thing for `fed server`, before
        /// any other thread exists, so no thread takes them by their default action
        /// and the service group reads them from its signalfd.
        static func blockStopSignals() {
            var set = stopSignals
            pthread_sigmask(SIG_BLOCK, &set, nil)
        }

        /// Every token from --auth-token, --auth-token-file and FED_AUTH_TOKENS.
        func tokens() throws -> Set<String> {
            Set(authToken + (try authTokenFile.map(Tokens.file) ?? []) + Tokens.environment("FED_AUTH_TOKENS"))
        }

        /// The edge's link to `--upstream`, if given.
        func edge() throws -> EdgeConfiguration? {
            guard let upstream, let address = HostPort(upstream) else { return nil }
            let token = try upstreamTokenFile.map(Tokens.file)?.first ?? Tokens.environment("FED_UPSTREAM_TOKEN").first
            let id = upstreamId ?? "edge-\(ProcessInfo.processInfo.hostName)-\(self.port)"
            return EdgeConfiguration(
                link: BinaryUpstream(
                    host: address.host, port: address.port, clientID: id, token: token ?? "", timeout: 30,
                    encoding: WireEncoding(name: upstreamEncoding) ?? .lossless),
                interval: .milliseconds(Int64(upstreamInterval * 1000)))
        }

        func run() throws {
            let level = Logger.Level(rawValue: logLevel)!
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            var config = ServerConfiguration()
            config.network = NetworkConfiguration(
                host: host, port: port, serverID: serverId, encodings: ValueEncodingSet(names: encodings)!,
                idleTimeout: .seconds(Int64(idleTimeout)), firstBytesTimeout: .seconds(Int64(firstBytesTimeout)),
                requestTimeout: .seconds(Int64(requestTimeout)), shutdownGrace: .seconds(Int64(shutdownGrace)))
            config.limits = LimitsConfiguration(
                frame: maxPayload == nil && maxDecompressed == nil
                    ? nil
                    : Limits(
                        maxPayloadBytes: maxPayload ?? Limits.default.maxPayloadBytes,
                        maxDecompressedBytes: maxDecompressed ?? Limits.default.maxDecompressedBytes),
                maxDatasets: maxDatasets, maxConnections: maxConnections,
                maxConnectionsPerAddress: maxConnectionsPerAddress, memoryBudget: memoryBudget << 20)
            config.aggregation = AggregationConfiguration(
                strategy: try! StrategySpec(strategy).strategy, maxStaleness: maxStaleness ?? 16,
                maxUpdateSamples: maxUpdateSamples, deltaEncoding: fetchDeltas.flatMap { ValueEncoding(name: $0) })
            config.storage = StorageConfiguration(checkpointPath: checkpoint, saveEvery: saveEvery)
            config.security = SecurityConfiguration(
                authTokens: try tokens(),
                tls: tlsCert.map {
                    ServerTLS(
                        certificateChainPath: $0, privateKeyPath: tlsKey!, clientCAPath: tlsClientCa,
                        allowPlaintext: allowPlaintext, handshakeLimits: tlsHandshakeLimits)
                })
            config.http = HTTPConfiguration(
                enabled: !noHttp, maxBodyBytes: maxBody, allowedOrigins: Set(allowOrigin), publicModel: publicModel)
            config.edge = try edge()
            config.rounds = try roundConfiguration()
            config.evaluation = EvaluationConfiguration(fraction: evaluateFraction)
            if let problem = config.evaluation.problem() { throw ValidationError("--evaluate-fraction: \(problem)") }
            if evaluateFraction > 0 && config.rounds == nil {
                throw ValidationError("--evaluate-fraction hands out tasks at check-in: it needs --rounds")
            }
            let server: FederatedServer
            do {
                let weights: [Tensor]
                if let initial {
                    guard let c = try CheckpointFile.read(from: initial) else {
                        throw FileError("no checkpoint at \(initial) (--init)")
                    }
                    weights = c.tensors
                } else {
                    weights = MLP(seed: seed).tensors()
                }
                if maxStaleness == nil {
                    let fit = RetainedVersions(
                        shapes: weights.map(\.shape), deltaEncoding: config.aggregation.deltaEncoding,
                        memoryBudget: config.limits.memoryBudget
                    ).maxStaleness
                    config.aggregation.maxStaleness = min(16, fit)
                }
                server = try FederatedServer(configuration: config, initial: weights)
            } catch {
                throw ValidationError("cannot start: \(error)")
            }
            // The committer, an edge's uplink and the server are swift-service-lifecycle
            // Services; the server binds when the group runs it. SIGINT and SIGTERM, blocked in
            // every thread since `Fed.main` (`blockStopSignals`), reach the group through a
            // signalfd (which also takes one sent before it was made) and start its graceful
            // shutdown, in reverse order: the server drains, lets the uplink push what it
            // gathered and writes the checkpoint; then the uplink and the committer end.
            let services: [any Service] = [server.committer] + (server.uplink.map { [$0] } ?? []) + [server]
            let group = ServiceGroup(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: server.logger)
            let listening = Mutex(false)
            let (host, tls, rounds) = (self.host, tlsDescription(), config.rounds)
            let announce = Task {
                guard let port = try? await server.boundAddress.port else { return }
                listening.withLock { $0 = true }
                if let tls {
                    server.logger.info("TLS on port \(port)\(tls.port)")
                    server.logger.info("\(tls.handshakes)")
                }
                if let r = rounds, r.admission == .continuous {
                    server.logger.info(
                        "tasks handed out continuously (asynchronous strategy): at most \(r.cohortSize) at once, each due within \(r.deadline)"
                    )
                } else if let r = rounds, case .cohorts(let inFlight) = r.admission {
                    server.logger.info(
                        "secure cohorts of \(r.cohortSize) (each a buffer of the strategy), up to \(inFlight) at once, each due within \(r.deadline)"
                    )
                } else if let r = rounds, let p = r.privacy {
                    server.logger.info(
                        "rounds with differential privacy: \(p.summary); an expected \(r.cohortSize) clients a round, at least \(r.requiredReports) by the deadline of \(r.deadline)\(r.totalRounds > 0 ? ", \(r.totalRounds) rounds" : "")"
                    )
                    if let secure = r.secureAggregation {
                        let m = p.minimumInputs(drawn: r.cohortSize)
                        server.logger.info(
                            "distributed noise under secure aggregation (\(secure.bits)-bit ring): each client adds its share of the noise; a round of \(r.cohortSize) needs \(m) inputs (survivors \(p.survivors)), all \(r.cohortSize) carry \((Double(r.cohortSize) / Double(m)).squareRoot())x the noise the accounting needs"
                        )
                    }
                } else if let r = rounds, let secure = r.secureAggregation {
                    let n = r.selectionSize
                    server.logger.info(
                        "rounds with secure aggregation: \(n) clients selected, k \(secure.neighbours(cohort: n)), t \(secure.threshold(cohort: n)), a \(secure.bits)-bit ring, updates clipped to L2 norm \(secure.clip), stages of \(secure.stageTimeout); at least \(r.requiredReports) inputs by the deadline of \(r.deadline)\(r.totalRounds > 0 ? ", \(r.totalRounds) rounds" : "")\(secure.consistency ? "; the consistency check with signatures, \(secure.identities?.keys.count ?? 0) trusted clients" : "")"
                    )
                } else if let r = rounds {
                    server.logger.info(
                        "rounds: \(r.cohortSize) reports close a round, \(r.selectionSize) clients selected, at least \(r.requiredReports) by the deadline of \(r.deadline)\(r.totalRounds > 0 ? ", \(r.totalRounds) rounds" : "")"
                    )
                }
                if evaluateFraction > 0 {
                    server.logger.info(
                        "federated evaluation: \(evaluateFraction) of check-ins get an evaluate task; history at GET /v1/evaluation"
                    )
                }
                print("listening on \(host):\(port)")
                fflush(nil)  // all streams: scripts wait for this line
            }
            // This thread (the main one) waits for the group; its tasks run on Swift's pool.
            let outcome = Mutex<Result<Void, any Error>?>(nil)
            let finished = DispatchSemaphore(value: 0)
            Task {
                do {
                    try await group.run()
                    outcome.withLock { $0 = .success(()) }
                } catch {
                    outcome.withLock { $0 = .failure(error) }
                }
                finished.signal()
            }
            finished.wait()
            announce.cancel()
            if case .failure(let error) = outcome.withLock({ $0! }), !listening.withLock({ $0 }) {
                throw ValidationError("cannot start: \(error)")
            }
            try outcome.withLock { $0! }.get()
        }

        /// With --tls-cert: what is said of the TLS port after its number, and of the handshake limits.
        private func tlsDescription() -> (port: String, handshakes: String)? {
            guard tlsCert != nil else { return nil }
            return (
                "\(tlsClientCa != nil ? ", client certificates required" : "")\(allowPlaintext ? "; clear text also served (--allow-plaintext)" : "; clear text refused")",
                "TLS handshakes: at most \(maxTlsHandshakes > 0 ? "\(maxTlsHandshakes)" : "unlimited") in progress, \(tlsHandshakeRate > 0 ? "\(tlsHandshakeRate) a second per address (bursts of \(tlsHandshakeBurst))" : "no per-address rate")"
            )
        }
    }
}
