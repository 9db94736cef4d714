import ArgumentParser
import FedCodec
import FedModel
import FedServer
import FedSimulation
import Foundation

/// `fed simulate`: the flags of a `SimulationConfiguration`, the run's
/// progress and report printed, its files written with `--out`.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract:
            "Run N clients against the real server in virtual time and compare federation strategies.",
        discussion: """
            Every client trains for real on its share of the training images and talks to an in-process \
            fed server over 127.0.0.1 with the binary protocol; only time is virtual: a client of speed v \
            takes --seconds-per-sample / v per sample, plus --message-seconds per fetch and per push. Pushes \
            reach the server one at a time in virtual-time order, so a run is the same for the same seed. \
            Asynchronous by default (each client fetches, trains --local-epochs over its share with its own \
            Adam, kept from round to round unless --optimizer-state fresh, pushes, repeats); --sync F runs synchronous rounds of a fraction F of the clients instead. \
            Runs stop after --budget client samples. Speeds are lognormal (--speed-sigma); --stragglers F \
            makes a fraction 10x slower; --attackers F with --attack: signflip pushes W_base - 10 delta, noise \
            pushes N(0,1) weights, scale pushes honest weights x 1e6, claim pushes honest weights claiming \
            60,000 samples. Clients claim a running total of samples, as the original's did. A model trained \
            centrally with the same budget is the reference. Data: --data, else Debian's Fashion-MNIST, else \
            the built-in MNIST digits (5,000 to train, 5,000 to test).

            Rounds through check-in: --check-in (implied by --over-selection, --dropouts, --round-deadline or \
            --min-reports) runs the --sync F rounds through the server's own rounds (version 4) on a virtual \
            clock instead of pushes: every idle client checks in, the server selects round(F x clients) x \
            --over-selection of them, each selected client fetches, trains and reports at its virtual finish \
            time unless it drops out (--dropouts: it never reports), and a round closes with its cohort, or at \
            --round-deadline with --min-reports, or is abandoned and selected again; reports after it are late. \
            The budget counts the samples of applied reports; --strategy does not apply (rounds are FedAvg). A \
            table gives rounds completed and abandoned, virtual seconds per round, reports applied, late and \
            dropped. Example: fed simulate --sync 0.1 --budget 300000 --dropouts 0.2 --over-selection 1.3.

            Examples: the peer's setting (Flower, 100 clients, 10 a round, 1 epoch, 300,000 samples): \
            fed simulate --sync 0.1 --budget 300000 --optimizer-state fresh --strategy fedavg/k=10 \
            --partition dirichlet:0.3. IID with the default budget, within a point of the centralized model: \
            fed simulate --sync 0.1 --strategy fedavg/k=10/opt=momentum:1:0.5. \
            Stragglers: fed simulate --partition dirichlet:0.3 --stragglers 0.2. Attackers: fed simulate \
            --attackers 0.2 --attack noise --strategy fedbuff/clip=adaptive/combine=trimmed:0.2.

            Client drift and personalization: --strategy fedprox/mu=0.01 adds mu/2 ||w - w_base||^2 to each \
            client's loss; --strategy scaffold corrects each local step with control variates (the server's c \
            and each client's c_i, option II; needs --sync without --check-in); both take fedavg's keys \
            (k, opt=adam:0.003, ...) and local=sgd:LR, the clients' local optimizer: plain SGD of learning rate \
            LR instead of the --learning-rate Adam (the paper's SCAFFOLD). With several strategies, each is compared with the first, paired by seed on \
            the mean of the last three evaluation points (95% interval), beside the spread between consecutive \
            points. --client-holdout F holds a fraction of each client's share out and measures the final model \
            on it (mean, 10th percentile and worst over clients); --personalize STEPS fine-tunes the final model \
            on each client's training share first; --private-tensors W3,b3 keeps the head on the clients (FedPer). \
            Example: fed simulate --sync 0.1 --partition dirichlet:0.1 --seeds 10 --strategy \
            fedavg/k=10/opt=adam:0.003 --strategy fedprox/k=10/mu=0.01/opt=adam:0.003 --personalize 50.
            """
    )

    @Option(
        help: ArgumentHelp(
            "A strategy as fed server --strategy takes it (repeatable; default: running-average, fedasync, fedbuff).",
            valueName: "NAME[/KEY=VALUE]..."))
    var strategy: [String] = []
    @Option(
        help:
            "Folder of MNIST-format IDX files with train-* and t10k-* (default: Fashion-MNIST, else built-in MNIST)."
    )
    var data: String?
    @Option(help: "Clients.") var clients = 100
    @Option(
        help:
            "How images are split: iid, dirichlet:ALPHA, shards:K, or file:PATH (JSON lists of indices).")
    var partition = "iid"
    @Option(help: "Local epochs per round of a client.") var localEpochs = 1
    @Option(help: "Local batch size.") var batchSize = 32
    @Option(help: "Local Adam learning rate.") var learningRate: Float = 0.001
    @Option(
        help: ArgumentHelp(
            "kept: each client keeps its Adam state from round to round, as fed client and the original's Keras clients do (8 bytes per weight per client: 1.7 MB for the MLP); fresh: a new Adam every round, as in Flower's setting.",
            valueName: "kept|fresh"))
    var optimizerState = "kept"
    @Option(help: "Client samples to train in all, every strategy alike.") var budget = 1_200_000
    @Option(help: "Virtual seconds per sample for a client of speed 1.") var secondsPerSample = 0.01
    @Option(help: "Virtual seconds per message (fetch or push).") var messageSeconds = 0.5
    @Option(help: "Sigma of the lognormal client speeds.") var speedSigma = 0.5
    @Option(help: "Fraction of clients 10x slower.") var stragglers = 0.0
    @Option(help: "Fraction of clients that attack.") var attackers = 0.0
    @Option(help: "signflip, noise, scale or claim.") var attack = "signflip"
    @Option(help: "Synchronous rounds with this fraction of the clients (default: asynchronous).")
    var sync: Double?
    @Flag(
        help:
            "Run the --sync rounds through the server's check-in (version-4 rounds, virtual clock) instead of pushes."
    )
    var checkIn = false
    @Option(
        help: "Check-in: clients selected per round as a multiple of the cohort, 1 to 10 (default: 1.0).")
    var overSelection: Double?
    @Option(
        help:
            "Check-in: chance that a selected client never reports its task, drawn per task from the seed (default: 0)."
    )
    var dropouts: Double?
    @Option(
        help:
            "Check-in: virtual seconds from selection to a round's deadline (default: twice the task time of the 90th-percentile client, rounded up)."
    )
    var roundDeadline: Double?
    @Option(help: "Check-in: reports a round needs at its deadline (default: 80% of the cohort, rounded up).")
    var minReports: Int?
    @Option(
        help: ArgumentHelp(
            "Check-in with client-level differential privacy in the server's rounds, as fed server --dp takes it.",
            discussion:
                "population defaults to --clients. Without noise=Z, the noise is calibrated so that the rounds the --budget makes (budget / (cohort x samples per client x epochs)) reach target-epsilon; the run then ends when the server's privacy budget is spent, so its epsilon is the target's. A table gives each run's epsilon beside its accuracy. Example (issue 26's setting): fed simulate --clients 1000 --sync 0.1 --budget 600000 --dp target-epsilon=2 --seeds 3.",
            valueName: "KEY=VALUE,...")) var dp: String?
    @Option(
        help: ArgumentHelp(
            "With --dp: run once per target epsilon (its noise calibrated) and once without privacy, on the same seeds, and print accuracy against epsilon.",
            valueName: "E1,E2,...")) var dpSweep: String?
    @Option(
        help: ArgumentHelp(
            "Check-in with secure aggregation (SecAgg+) in the server's rounds, as fed server --secagg takes it.",
            discussion:
                "Every selected client runs the real protocol (X25519 keys, Shamir shares sealed with ChaCha20-Poly1305, ChaCha20 masks, fixed-point encoding) against the server's rounds, in virtual time. The same runs are then made without secure aggregation on the same seeds, and the paired difference of final accuracy is printed with its 95% interval. Example: fed simulate --sync 0.1 --budget 300000 --secagg on --seeds 10.",
            valueName: "KEY=VALUE,...|on")) var secagg: String?
    @Option(
        help: ArgumentHelp(
            "With --secagg: the share of a secure round's clients gone after a stage: keys (advertised keys, shared nothing), shares (shared keys, sent no input), input (sent its input, revealed nothing).",
            valueName: "STAGE:F,...")) var dropoutAfter: String?
    @Option(
        help: ArgumentHelp(
            "With --secagg and --strategy fedbuff/...: cohorts (each a buffer) open at once, as fed server --cohorts-in-flight.",
            valueName: "C")) var cohortsInFlight: Int?
    @Option(
        help: ArgumentHelp(
            "Fine-tune the final model for STEPS local steps on each client's training share, then measure it on the client's held-out share (implies --client-holdout 0.2).",
            valueName: "STEPS")) var personalize: Int?
    @Option(
        help: ArgumentHelp(
            "FedPer: tensors that stay on each client, by index or name in the MLP's order W1,b1,W2,b2,W3,b3 (W3,b3: the head); the server aggregates only the others (implies --client-holdout 0.2).",
            valueName: "LIST")) var privateTensors: String?
    @Option(
        help:
            "Fraction of each client's share held out (never trained on) to measure the final and personalized models on each client (default: 0, or 0.2 with --personalize or --private-tensors)."
    ) var clientHoldout: Double?
    @Option(help: "Points of the learning curve.") var evalPoints = 10
    @Option(help: "Blob compression of the clients: none, zlib or shuffle-zlib.") var compression =
        "none"
    @Option(
        help: ArgumentHelp(
            "How clients push, and the server's fetch deltas: PUSH[,fetch=ENC] (repeatable; default fp32).",
            discussion:
                "PUSH: fp32, fp16, int8, int4 or int2, with -delta to push Wc - W_base (int4-delta; 'delta' is lossless deltas); lossy deltas carry their rounding error into the next push. fetch=ENC: the server publishes each version as a step quantized in ENC and clients fetch those steps. With several, every one runs on the same seeds and the table adds each one's paired difference to the first.",
            valueName: "PUSH[,fetch=ENC]")) var encoding: [String] = []
    @Option(
        help:
            "Versions the server keeps as bases (default: 2 x clients, at least 16, at most what the server's memory budget holds)."
    ) var maxStaleness: Int?
    @Option(help: "Most samples one update counts for.") var maxUpdateSamples: UInt64 = 10_000
    @Option(help: "First seed (weights, partition, speeds, shuffles).") var seed: UInt64 = 1
    @Option(help: "Seeds per strategy (seed, seed+1, ...): the table gives their mean and range.")
    var seeds = 1
    @Flag(
        help: "A small run: 20 clients sharing 10,000 training images, 100,000 samples, 5 curve points."
    )
    var quick = false
    @Flag(help: "Skip the centralized reference.") var noCentralized = false
    @Option(help: "Folder for summary.json, curve.csv and curves.svg.") var out: String?

    /// Whether the rounds run through check-in (asked, or implied by a check-in option).
    var throughCheckIn: Bool {
        checkIn || overSelection != nil || dropouts != nil || roundDeadline != nil || minReports != nil || dp != nil
            || secagg != nil
    }

    /// The target epsilons of --dp-sweep.
    var sweep: [Double]? {
        dpSweep.map { $0.split(separator: ",").compactMap { Double($0) } }
    }

    /// The MLP's tensors, as `--private-tensors` names them.
    static let tensorNames = ["W1", "b1", "W2", "b2", "W3", "b3"]

    /// The indices `--private-tensors` names, or nil for a name or index out of range.
    var privateIndices: [Int]? {
        guard let privateTensors else { return [] }
        var out: [Int] = []
        for item in privateTensors.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if let i = Int(item), Self.tensorNames.indices.contains(i) {
                out.append(i)
            } else if let i = Self.tensorNames.firstIndex(of: item) {
                out.append(i)
            } else {
                return nil
            }
        }
        return Array(Set(out)).sorted()
    }

    func validate() throws {
        guard (personalize ?? 0) >= 0 else { throw ValidationError("--personalize STEPS: at least 0") }
        guard let privateIndices, privateTensors == nil || !privateIndices.isEmpty else {
            throw ValidationError(
                "--private-tensors \(privateTensors ?? ""): indices 0 to 5 or names \(Self.tensorNames.joined(separator: ","))"
            )
        }
        guard (0..<1).contains(clientHoldout ?? 0.2),
            clientHoldout != 0 || (personalize == nil && privateTensors == nil)
        else {
            throw ValidationError(
                "--client-holdout: at least 0 and less than 1; above 0 with --personalize or --private-tensors")
        }
        if throughCheckIn {
            guard sync != nil else {
                throw ValidationError(
                    "--check-in, --over-selection, --dropouts, --round-deadline, --min-reports and --dp need --sync F")
            }
            // Under secure aggregation fedbuff runs in cohorts, each a buffer; other rounds are FedAvg.
            guard strategy.isEmpty || (secagg != nil && strategy.allSatisfy { $0.hasPrefix("fedbuff") }) else {
                throw ValidationError(
                    "--strategy does not apply through check-in: the server's rounds are FedAvg (with --secagg, fedbuff/... runs in cohorts)"
                )
            }
            guard encoding.isEmpty || encoding == ["fp32"] else {
                throw ValidationError("--encoding does not apply through check-in: reports are lossless")
            }
            guard (1...10).contains(overSelection ?? 1), (0..<1).contains(dropouts ?? 0),
                (roundDeadline ?? 1) > 0 && (roundDeadline ?? 1) <= 86_400, (minReports ?? 1) >= 1
            else {
                throw ValidationError(
                    "--over-selection is 1 to 10, --dropouts at least 0 and less than 1, --round-deadline more than 0 and at most 86400, --min-reports at least 1"
                )
            }
        }
        if dropoutAfter != nil {
            guard secagg != nil else { throw ValidationError("--dropout-after needs --secagg") }
            _ = try secureDropouts()
        }
        if let dpSweep {
            guard dp != nil else { throw ValidationError("--dp-sweep needs --dp (the other keys of the runs)") }
            guard let targets = sweep, targets.count == dpSweep.split(separator: ",").count, !targets.isEmpty,
                targets.allSatisfy({ $0 > 0 && $0.isFinite })
            else { throw ValidationError("--dp-sweep \(dpSweep): give positive epsilons, such as 1,2,4,8") }
        }
        if let conflict = distributedNoiseConflict(dp: dp, secagg: secagg) { throw ValidationError(conflict) }
        if cohortsInFlight != nil && (secagg == nil || !strategy.contains { $0.hasPrefix("fedbuff") }) {
            throw ValidationError(
                "--cohorts-in-flight applies to --secagg with --strategy fedbuff/... (each buffer a cohort)")
        }
        for s in strategy {
            let spec: StrategySpec
            do throws(StrategySpecError) { spec = try StrategySpec(s) } catch {
                throw ValidationError("--strategy \(s): \(error)")
            }
            guard !spec.controlVariates || (sync != nil && !throughCheckIn) else {
                throw ValidationError(
                    "--strategy \(s) needs --sync F without check-in: control variates travel in process, with synchronous pushes"
                )
            }
            if secagg != nil, s.split(separator: "/").first == "fedbuff" {
                if let problem = (spec.strategy as? FedBuff)?.cohortProblem {
                    throw ValidationError("--strategy \(s) with --secagg: \(problem)")
                }
                if s.split(separator: "/").contains(where: { $0.hasPrefix("k=") }) {
                    throw ValidationError(
                        "--strategy \(s) with --secagg: each buffer is a cohort of the --sync F clients a round; drop k="
                    )
                }
                if dp != nil {
                    throw ValidationError(
                        "--strategy \(s) with --secagg and --dp: differential privacy needs synchronous rounds (overlapping cohorts are not accounted for)"
                    )
                }
            }
            if secagg != nil, s.split(separator: "/").first == "fedasync" {
                throw ValidationError(
                    "--strategy \(s) with --secagg: fedasync weighs each update on its own, which secure aggregation hides"
                )
            }
        }
        guard Partition(partition) != nil else {
            throw ValidationError(
                "--partition \(partition): use iid, dirichlet:ALPHA, shards:K or file:PATH")
        }
        guard ["kept", "fresh"].contains(optimizerState) else {
            throw ValidationError("--optimizer-state \(optimizerState): use kept or fresh")
        }
        guard Attack(rawValue: attack) != nil else {
            throw ValidationError(
                "--attack \(attack): use \(Attack.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        for e in encoding where EncodingSetting(e) == nil {
            throw ValidationError(
                "--encoding \(e): use fp32, fp16, int8, int4 or int2, optionally -delta, optionally ,fetch=ENC"
            )
        }
        guard Compression(name: compression) != nil else {
            throw ValidationError("unknown --compression \(compression)")
        }
        guard clients >= 1, clients <= 1000, localEpochs >= 1, batchSize >= 1, batchSize <= 256,
            budget >= 1,
            seeds >= 1, seeds <= 20, evalPoints >= 1, (0...1).contains(stragglers),
            (0...1).contains(attackers),
            (sync ?? 0.5) > 0 && (sync ?? 0.5) <= 1
        else { throw ValidationError("a count or fraction is out of range (see --help)") }
    }

    func run() throws {
        var c = SimulationConfiguration()
        c.strategies = try (strategy.isEmpty ? ["running-average", "fedasync", "fedbuff"] : strategy)
            .map {
                try StrategySpec($0)
            }
        c.encodings = encoding.isEmpty ? [EncodingSetting()] : encoding.map { EncodingSetting($0)! }
        c.seed = seed
        c.seeds = seeds
        c.centralized = !noCentralized
        c.clients = quick ? min(clients, 20) : clients
        c.partition = Partition(partition)!
        c.localEpochs = localEpochs
        c.batchSize = batchSize
        c.learningRate = learningRate
        c.keepOptimizerState = optimizerState == "kept"
        c.budget = quick ? min(budget, 100_000) : budget
        c.secondsPerSample = secondsPerSample
        c.messageSeconds = messageSeconds
        c.speedSigma = speedSigma
        c.stragglers = stragglers
        c.attackers = attackers
        c.attack = Attack(rawValue: attack)!
        c.syncFraction = sync
        c.checkIn = throughCheckIn
        c.overSelection = overSelection ?? 1
        c.dropouts = dropouts ?? 0
        c.roundDeadline = roundDeadline
        c.minimumReports = minReports
        c.evalPoints = quick ? min(evalPoints, 5) : evalPoints
        c.compression = Compression(name: compression)!
        c.maxStaleness = maxStaleness
        c.maxUpdateSamples = maxUpdateSamples
        c.personalizeSteps = personalize ?? 0
        c.privateTensors = privateIndices ?? []
        c.clientHoldout = clientHoldout ?? (personalize != nil || privateTensors != nil ? 0.2 : 0)

        var data = try SimulationData.load(folder: data)
        if quick && data.train.count > 10_000 {
            data.train = data.train.slice(0..<10_000)
            data.description += "; --quick: the first 10,000 training images"
        }
        print("data: \(data.description)")
        print(
            "\(c.clients) clients, \(c.scenario), \(c.localEpochs) local epoch(s), budget \(c.budget) samples, \(seeds) seed(s)"
        )
        var report: SimulationReport
        if let dp {
            report = try runPrivate(c, data: data, spec: dp)
        } else if let secagg {
            report = try runSecure(c, data: data, spec: secagg)
        } else {
            report = try Simulation(c, data: data).runBlocking { print($0) }
        }
        print("")
        print(report.summary)
        if let out {
            try report.write(to: out)
            print(
                "wrote \(out)/summary.json, curve.csv\(c.checkIn ? ", rounds.csv" : "") and curves.svg")
        }
    }
}
