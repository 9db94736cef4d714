import FedClient
import FedCodec
import FedModel
import FedServer
import Foundation
import Logging
import Synchronization

/// One run of a federation in virtual time against a real `FederatedServer`
/// on 127.0.0.1: every fetch and push is a real message of the binary
/// protocol, every client's training is real; a client's duration comes from
/// its speed. Events run one at a time in virtual-time order (ties by client
/// index), so a run is the same for the same seed.
final class FederationRun {
    let configuration: SimulationConfiguration
    let seed: UInt64
    let encoding: EncodingSetting
    let train: Dataset
    let test: Dataset
    let progress: (SimulationEvent) -> Void
    let isCancelled: () -> Bool

    init(
        configuration: SimulationConfiguration, seed: UInt64, encoding: EncodingSetting, train: Dataset,
        test: Dataset, progress: @escaping (SimulationEvent) -> Void, isCancelled: @escaping () -> Bool
    ) {
        self.configuration = configuration
        self.seed = seed
        self.encoding = encoding
        self.train = train
        self.test = test
        self.progress = progress
        self.isCancelled = isCancelled
    }

    private struct Client {
        /// The share it trains on.
        var data: Dataset
        /// The share it never trains on (``SimulationConfiguration/clientHoldout``).
        var heldOut: Dataset
        var speed: Double
        var attacker: Bool
        var transport: BinaryTransport
    }

    /// A push (or a report) waiting for its virtual time.
    struct Pending {
        var time: Double
        var client: Int
        var weights: [Tensor]
        var claim: UInt64
        var base: UInt64
        var samples: Int
        /// The weights fetched, trained from (secure aggregation sends the difference).
        var fetched: [Tensor] = []
    }

    func run(strategy spec: StrategySpec) throws -> SimulationResult {
        let wall = Date()
        let setupStarted = ContinuousClock.now
        let s = configuration
        var rng = SeededGenerator(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ 11)
        let parts = try s.partition.split(labels: train.labels, clients: s.clients, rng: &rng)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fedsim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var quiet = Logger(label: "fed.simulate")
        quiet.logLevel = .critical
        let initial = MLP(seed: seed).tensors()
        var serverConfiguration = ServerConfiguration(
            network: .init(port: 0), limits: .init(maxDatasets: .max, maxConnections: s.clients + 8),
            aggregation: .init(
                strategy: spec.strategy, maxUpdateSamples: s.maxUpdateSamples, deltaEncoding: encoding.fetch),
            storage: .init(checkpointPath: dir.appendingPathComponent("sim.fedk").path, saveEvery: 64))
        // Default: 2 x clients, at least 16, at most what the server's memory budget holds; 16 through
        // check-in, whose reports are never stale and whose cohort's reports need the budget.
        let retention = RetainedVersions(
            shapes: initial.map(\.shape), deltaEncoding: encoding.fetch,
            memoryBudget: serverConfiguration.limits.memoryBudget)
        serverConfiguration.aggregation.maxStaleness =
            s.maxStaleness ?? (s.checkIn ? 16 : min(max(16, 2 * s.clients), retention.maxStaleness))

        var order = Array(0..<s.clients)
        rng.shuffle(&order)
        let stragglers = Set(order.prefix(Int((s.stragglers * Double(s.clients)).rounded())))
        rng.shuffle(&order)
        let attackers = Set(order.prefix(Int((s.attackers * Double(s.clients)).rounded())))
        let speeds = (0..<s.clients).map { c in
            exp(s.speedSigma * Partition.normal(&rng)) / (stragglers.contains(c) ? 10 : 1)
        }

        // Check-in: the server runs rounds on a virtual clock.
        let clock = VirtualRoundClock()
        var deadline = 0.0
        if s.checkIn {
            deadline =
                s.roundDeadline
                ?? CheckInRounds.defaultDeadline(
                    taskSeconds: (0..<s.clients).map { c in
                        s.messageSeconds * 2 + Double(parts[c].count * s.localEpochs) * s.secondsPerSample / speeds[c]
                    })
            serverConfiguration.rounds = CheckInRounds.rounds(
                s, strategy: spec, deadline: deadline, clock: clock, seed: seed)
            // A held check-in or report is virtual: the real idle timeout only has to exceed the virtual waits.
            serverConfiguration.network.idleTimeout = max(.seconds(300), .seconds(deadline) + .seconds(60))
        }
        let server = try FederatedServer.start(
            configuration: serverConfiguration, initial: initial, logger: quiet, threads: 1)
        defer { try? server.shutdown(grace: .milliseconds(100)) }

        var clients: [Client] = []
        var holdOutRng = SeededGenerator(seed: seed &* 0xD134_2543_DE82_EF95 &+ 17)
        for c in 0..<s.clients {
            let (own, held) = Personalization.holdOut(parts[c], fraction: s.clientHoldout, rng: &holdOutRng)
            clients.append(
                Client(
                    data: train.subset(own), heldOut: train.subset(held), speed: speeds[c],
                    attacker: attackers.contains(c),
                    transport: BinaryTransport(
                        host: "127.0.0.1", port: server.localPort, clientID: "sim-\(c)", compression: s.compression,
                        encoding: encoding.push, acceptDeltas: encoding.fetch != nil)))
        }

        let trainer = Trainer(model: MLP(seed: seed), maxBatch: max(256, s.batchSize), threads: 2)
        trainer.optimizer.learningRate = s.learningRate
        let evaluator = Trainer(model: MLP(seed: seed), maxBatch: 1000, threads: 2)
        // A synchronous round's clients train side by side, one trainer a core, each on one thread.
        let parallelTrainers = (0..<ParallelTraining.workers).map { _ in
            Trainer(model: MLP(seed: seed), maxBatch: max(256, s.batchSize), threads: 1)
        }
        for t in parallelTrainers { t.optimizer.learningRate = s.learningRate }
        var wallTime = WallTime()
        wallTime.setup = seconds(since: setupStarted)
        var curve: [CurvePoint] = []
        var trained = 0
        var pushedSamples = 0
        var pushed = 0
        var rejected = 0
        var now = 0.0
        var nextEval = s.budget / max(1, s.evalPoints)
        var rounds: [Int: Int] = [:]
        var optimizerStates = [Adam?](repeating: nil, count: s.clients)
        // FedPer: each client's own values of the private tensors, once it trained them.
        var privateTensors = [[Int: Tensor]](repeating: [:], count: s.clients)
        // SCAFFOLD: the server's variate, each client's, and the changes of the round in progress.
        var control =
            spec.controlVariates
            ? ServerControlVariate(shapes: initial.map(\.shape), population: s.clients) : nil
        var clientVariates = [ClientControlVariate](repeating: ClientControlVariate(), count: s.clients)
        var variateChanges: [[Tensor]] = []
        // Check-ins and reports made in process (CheckInRounds), counted as their frames.
        var inProcessSent = 0
        var inProcessReceived = 0

        func bytesSent() -> Int { clients.reduce(inProcessSent) { $0 + $1.transport.bytesSent } }
        func bytesReceived() -> Int { clients.reduce(inProcessReceived) { $0 + $1.transport.bytesReceived } }
        func bytes() -> Int { bytesSent() + bytesReceived() }
        func evaluate(at time: Double) throws {
            let started = ContinuousClock.now
            defer { wallTime.evaluation += seconds(since: started) }
            let model = server.store.snapshot()
            try evaluator.adopt(model.tensors)
            let accuracy = Evaluation(predicted: evaluator.predict(test), actual: test.labels).accuracy
            curve.append(CurvePoint(virtualSeconds: time, bytes: bytes(), samples: pushedSamples, accuracy: accuracy))
            progress(.curvePoint(curve[curve.count - 1], version: model.version))
        }

        /// Fetches the model for client `c`'s task at `time` and prepares what it trains from.
        func prepare(_ c: Int, at time: Double) throws -> LocalTask {
            if isCancelled() { throw CancellationError() }
            let started = ContinuousClock.now
            defer { wallTime.fetch += seconds(since: started) }
            let client = clients[c]
            guard case .model(let version, let count, let weights) = try client.transport.fetch(heldVersion: 0) else {
                throw SimulationError("fetch of client \(c) answered unchanged")
            }
            var start = weights
            for (i, t) in privateTensors[c] { start[i] = t }
            var objective = LocalObjective()
            if let mu = spec.proximalMu, mu > 0 { objective = .proximal(mu: Float(mu), base: start) }
            if let control { objective.correction = clientVariates[c].correction(server: control.variate) }
            var kept: Adam?
            if s.keepOptimizerState, let state = optimizerStates[c] {
                kept = state
                optimizerStates[c] = nil  // the task's copy is the only one, so training writes in place
            }
            let round = rounds[c, default: 0]
            rounds[c] = round + 1
            return LocalTask(
                client: c, time: time, version: version, count: count, fetched: weights, start: start,
                objective: objective, optimizer: kept,
                rng: SeededGenerator(seed: seed &+ UInt64(c) &* 1_000_003 &+ UInt64(round) &* 7919))
        }

        /// Client `task.client`'s local training (real work) on `trainer`: touches nothing but the task and the trainer.
        func localTraining(_ task: inout LocalTask, on trainer: Trainer) throws -> LocalResult {
            try trainer.adopt(task.start)
            try trainer.setObjective(task.objective)
            if let kept = task.optimizer {
                task.optimizer = nil
                trainer.optimizer = kept
            } else {
                trainer.optimizer.reset()
            }
            // The strategy's local optimizer: plain SGD (`local=sgd:LR`) or the run's Adam.
            trainer.optimizer.plainSGD = spec.localSGD != nil
            trainer.optimizer.learningRate = spec.localSGD.map(Float.init) ?? s.learningRate
            let data = clients[task.client].data
            for _ in 0..<s.localEpochs { trainer.trainEpoch(data, batchSize: s.batchSize, rng: &task.rng) }
            return LocalResult(
                weights: trainer.model.tensors(), optimizer: s.keepOptimizerState ? trainer.optimizer : nil)
        }

        /// What client `task.client` pushes after training, and when.
        func finish(_ task: LocalTask, _ result: LocalResult, variateChange: (([Tensor]) -> Void)? = nil) -> Pending {
            let c = task.client
            let client = clients[c]
            let (version, count, weights, start) = (task.version, task.count, task.fetched, task.start)
            var local = task.rng
            let samples = client.data.count * s.localEpochs
            if s.keepOptimizerState { optimizerStates[c] = result.optimizer }
            var pushedWeights = result.weights
            if let control, client.data.count > 0 {
                let steps = (client.data.count + s.batchSize - 1) / s.batchSize * s.localEpochs
                (variateChange ?? { variateChanges.append($0) })(
                    clientVariates[c].update(
                        server: control.variate, start: start, end: pushedWeights, steps: steps,
                        learningRate: spec.localSGD ?? Double(s.learningRate)))
            }
            // FedPer: the private tensors stay here; the server gets its own values back, a change of zero.
            for i in s.privateTensors {
                privateTensors[c][i] = pushedWeights[i]
                pushedWeights[i] = weights[i]
            }
            // The original's clients claim a running total: the server's count plus their own.
            var claim = count.addingReportingOverflow(UInt64(samples)).overflow ? UInt64.max : count + UInt64(samples)
            if client.attacker {
                switch s.attack {
                case .signflip:
                    for t in pushedWeights.indices {
                        for i in pushedWeights[t].values.indices {
                            let b = weights[t].values[i]
                            pushedWeights[t].values[i] = b - 10 * (pushedWeights[t].values[i] - b)
                        }
                    }
                case .noise:
                    for t in pushedWeights.indices {
                        for i in pushedWeights[t].values.indices {
                            pushedWeights[t].values[i] = Float(Partition.normal(&local))
                        }
                    }
                case .scale:
                    for t in pushedWeights.indices {
                        for i in pushedWeights[t].values.indices { pushedWeights[t].values[i] *= 1e6 }
                    }
                case .claim:
                    claim = 60_000
                }
            }
            trained += samples
            return Pending(
                time: pushTime(task), client: c, weights: pushedWeights, claim: claim, base: version,
                samples: samples, fetched: s.secureAggregation != nil ? weights : [])
        }

        /// The virtual time at which `task`'s push reaches the server.
        func pushTime(_ task: LocalTask) -> Double {
            let client = clients[task.client]
            let samples = client.data.count * s.localEpochs
            return task.time + s.messageSeconds * 2 + Double(samples) * s.secondsPerSample / client.speed
        }

        /// Fetches, trains (real work, done now) and returns the push to send at its virtual time.
        func fetchAndTrain(_ c: Int, at time: Double) throws -> Pending {
            var task = try prepare(c, at: time)
            let started = ContinuousClock.now
            let result = try localTraining(&task, on: trainer)
            wallTime.training += seconds(since: started)
            return finish(task, result)
        }

        /// A synchronous round: `chosen` fetch, train and push. Every client fetches before any
        /// pushes; their training runs on `parallelTrainers` side by side (one task a trainer at a
        /// time, each on one thread), and each push is sent as soon as it and every push due before
        /// it in virtual time (ties by client) are trained, while the rest train. Which trainer
        /// trains a task does not change its result, and the pushes reach the server in the same
        /// order, so a round gives the same figures as training one client after another.
        func syncRound(_ chosen: [Int], at time: Double) throws {
            var tasks = try chosen.map { try prepare($0, at: time) }
            let order = tasks.indices.sorted {
                (pushTime(tasks[$0]), tasks[$0].client) < (pushTime(tasks[$1]), tasks[$1].client)
            }
            var changes = [[Tensor]?](repeating: nil, count: tasks.count)
            let started = ContinuousClock.now
            let pushSecondsBefore = wallTime.push + wallTime.evaluation
            try ParallelTraining.run(
                &tasks, trainers: parallelTrainers, order: order, body: localTraining,
                consume: { i, task, result in
                    try send(finish(task, result, variateChange: { changes[i] = $0 }))
                })
            wallTime.training += seconds(since: started) - (wallTime.push + wallTime.evaluation - pushSecondsBefore)
            variateChanges += changes.compactMap { $0 }
        }

        /// Samples that reached the model at `time`: the curve is measured as they cross its points.
        func counted(_ samples: Int, at time: Double) throws {
            pushedSamples += samples
            now = max(now, time)
            while pushedSamples >= nextEval && curve.count < s.evalPoints - 1 {
                try evaluate(at: now)
                nextEval += s.budget / max(1, s.evalPoints)
            }
        }

        func send(_ p: Pending) throws {
            if isCancelled() { throw CancellationError() }
            let started = ContinuousClock.now
            do {
                _ = try clients[p.client].transport.push(
                    p.weights, datasets: p.claim, baseVersion: p.base, pushID: UInt64(pushed + 1))
            } catch let e as ClientError where !e.isRetryable && e.code.serverCode != nil {
                if rejected < 3 { progress(.pushRefused(client: p.client, reason: "\(e)")) }
                rejected += 1
            }
            wallTime.push += seconds(since: started)
            pushed += 1
            try counted(p.samples, at: p.time)
        }

        var roundFigures: RoundFigures?
        if s.checkIn {
            let rounds = CheckInRounds(
                server: server, clock: clock, configuration: s, seed: seed, deadlineSeconds: deadline,
                isCancelled: isCancelled)
            let outcome = try rounds.run(
                train: { c, time in try fetchAndTrain(c, at: time) },
                applied: { samples, time in try counted(samples, at: time) },
                bytes: { sent, received in
                    inProcessSent += sent
                    inProcessReceived += received
                }, refused: { c, reason in progress(.pushRefused(client: c, reason: reason)) })
            roundFigures = outcome.figures
            pushed = outcome.reports
            rejected = outcome.refused
        } else if let fraction = s.syncFraction {
            let perRound = max(1, Int((fraction * Double(s.clients)).rounded()))
            var round = 0
            while trained < s.budget {
                var chosen = Array(0..<s.clients)
                var roundRng = SeededGenerator(seed: seed &+ 0xC0FFEE &+ UInt64(round))
                roundRng.shuffle(&chosen)
                try syncRound(chosen.prefix(perRound).sorted(), at: now)
                control?.apply(variateChanges)
                variateChanges = []
                round += 1
            }
        } else {
            var queue: [Pending] = []
            for c in 0..<s.clients where trained < s.budget { queue.append(try fetchAndTrain(c, at: 0)) }
            while !queue.isEmpty {
                let i = queue.indices.min { (queue[$0].time, queue[$0].client) < (queue[$1].time, queue[$1].client) }!
                let p = queue.remove(at: i)
                try send(p)
                if trained < s.budget { queue.append(try fetchAndTrain(p.client, at: p.time)) }
            }
        }
        try evaluate(at: now)
        let final = server.store.snapshot()
        let versions = final.version
        var clientAccuracy: AccuracyDistribution?
        var personalizedAccuracy: AccuracyDistribution?
        if s.clientHoldout > 0 {
            if isCancelled() { throw CancellationError() }
            // Fine-tuning uses the run's Adam, whatever the strategy's local optimizer.
            trainer.optimizer.plainSGD = false
            trainer.optimizer.learningRate = s.learningRate
            let measured = try Personalization(configuration: s, seed: seed).accuracies(
                server: final.tensors, train: clients.map(\.data), heldOut: clients.map(\.heldOut),
                privateTensors: privateTensors, trainer: trainer)
            clientAccuracy = AccuracyDistribution(measured.served)
            personalizedAccuracy = measured.personalized.flatMap { AccuracyDistribution($0) }
        }
        let name = s.checkIn && !s.runsCohorts(spec) ? Self.roundsStrategy : spec.text
        return SimulationResult(
            strategy: encoding == EncodingSetting() ? name : "\(name) [\(encoding)]",
            encoding: encoding.description, scenario: s.scenario, seed: seed, finalAccuracy: curve.last!.accuracy,
            virtualSeconds: now, bytes: bytes(), bytesSent: bytesSent(), bytesReceived: bytesReceived(),
            deltaFetches: clients.reduce(0) { $0 + $1.transport.deltaFetches },
            fullFetches: clients.reduce(0) { $0 + $1.transport.fullFetches }, pushes: pushed, rejected: rejected,
            versions: versions,
            wallSeconds: Date().timeIntervalSince(wall), wallTime: wallTime, curve: curve, rounds: roundFigures,
            privacy: server.privacySpent, clientAccuracy: clientAccuracy, personalizedAccuracy: personalizedAccuracy)
    }

    /// A client's task, prepared on the simulation's thread for `localTraining`.
    struct LocalTask {
        var client: Int
        var time: Double
        var version: UInt64
        var count: UInt64
        /// The weights fetched, and those training starts from (with the client's private tensors).
        var fetched: [Tensor]
        var start: [Tensor]
        var objective: LocalObjective
        /// The client's kept Adam (`--optimizer-state kept`); nil: a fresh one.
        var optimizer: Adam?
        /// The shuffles' generator; after training, what an attacker draws from.
        var rng: SeededGenerator
    }

    /// What a client's local training gives.
    struct LocalResult {
        var weights: [Tensor]
        /// The Adam to keep for the client's next task (`--optimizer-state kept`).
        var optimizer: Adam?
    }

    /// The strategy's name in the results of a run through check-in: the
    /// server's rounds average their reports by samples.
    static let roundsStrategy = "fedavg-rounds"

    /// One model trained on all of `train` with the same sample budget: the reference.
    static func centralized(train: Dataset, test: Dataset, configuration s: SimulationConfiguration, seed: UInt64)
        -> Double
    {
        let trainer = Trainer(model: MLP(seed: seed), maxBatch: 256, threads: 2)
        trainer.optimizer.learningRate = s.learningRate
        var rng = SeededGenerator(seed: seed &+ 77)
        var done = 0
        while done < s.budget {
            let take = min(train.count, s.budget - done)
            var order = Array(0..<train.count)
            rng.shuffle(&order)
            trainer.trainEpoch(
                take == train.count ? train : train.subset(Array(order.prefix(take))), batchSize: s.batchSize, rng: &rng
            )
            done += take
        }
        return Evaluation(predicted: trainer.predict(test), actual: test.labels).accuracy
    }
}

/// Trains a synchronous round's clients side by side.
enum ParallelTraining {
    /// Tasks trained at once: one a processor, at most three.
    static let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 3))

    /// `body(&tasks[i], trainer)` for every task, on one thread per trainer (up to one per
    /// task), each thread taking the next untrained task in `order` and training it on its own
    /// trainer; meanwhile, on the calling thread, `consume(i, tasks[i], result)` for every task
    /// in `order`, each as soon as its result is ready. Returns once every task was consumed and
    /// every training thread has finished; the first error (of a task or of `consume`, in
    /// `order`) stops the tasks not yet started and is rethrown.
    static func run<Task, Result>(
        _ tasks: inout [Task], trainers: [Trainer], order: [Int], body: (inout Task, Trainer) throws -> Result,
        consume: (Int, Task, Result) throws -> Void
    ) throws {
        precondition(order.count == tasks.count && Set(order) == Set(tasks.indices))
        let count = tasks.count
        guard count > 0 else { return }
        var results = [Swift.Result<Result, any Error>?](repeating: nil, count: count)
        let ready = (0..<count).map { _ in DispatchSemaphore(value: 0) }
        let finished = DispatchSemaphore(value: 0)
        let threads = min(trainers.count, count)
        try withoutActuallyEscaping(body) { body in
            try tasks.withUnsafeMutableBufferPointer { taskBuffer in
                try results.withUnsafeMutableBufferPointer { resultBuffer in
                    let shared = Shared(tasks: taskBuffer, results: resultBuffer, order: order, body: body)
                    for t in 0..<threads {
                        let trainer = UncheckedTrainer(trainer: trainers[t])
                        Thread.detachNewThread {
                            shared.work(trainer.trainer, ready: ready)
                            finished.signal()
                        }
                    }
                    // Every thread has finished before the buffers go away, error or not; then
                    // `body` is dropped, since the threads' closures may outlive this call.
                    defer {
                        for _ in 0..<threads { finished.wait() }
                        shared.body = nil
                    }
                    do {
                        for i in order {
                            ready[i].wait()
                            try consume(i, shared.tasks[i], shared.results[i]!.get())
                        }
                    } catch {
                        shared.stop.store(true, ordering: .relaxed)
                        throw error
                    }
                }
            }
        }
    }

    /// Sendable by argument: the trainer is used by the one thread it is given to, while the
    /// caller waits.
    private struct UncheckedTrainer: @unchecked Sendable { let trainer: Trainer }

    /// Sendable by argument: each index of `tasks` and `results` is written by the one thread
    /// that claimed it from `next`, and read by the caller only after that thread signalled it
    /// ready; the caller keeps the buffers and `body` alive until every thread has finished.
    private final class Shared<Task, Result>: @unchecked Sendable {
        let tasks: UnsafeMutableBufferPointer<Task>
        let results: UnsafeMutableBufferPointer<Swift.Result<Result, any Error>?>
        let order: [Int]
        /// Set to nil once every thread has finished (see `run`).
        var body: ((inout Task, Trainer) throws -> Result)?
        let next = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)

        init(
            tasks: UnsafeMutableBufferPointer<Task>,
            results: UnsafeMutableBufferPointer<Swift.Result<Result, any Error>?>, order: [Int],
            body: @escaping (inout Task, Trainer) throws -> Result
        ) {
            self.tasks = tasks
            self.results = results
            self.order = order
            self.body = body
        }

        /// Trains the next task in `order` on `trainer` until none is left (or `stop`).
        func work(_ trainer: Trainer, ready: [DispatchSemaphore]) {
            guard let body else { return }
            while true {
                let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard k < order.count else { return }
                let i = order[k]
                if stop.load(ordering: .relaxed) {
                    results[i] = .failure(CancellationError())
                } else {
                    results[i] = Swift.Result { try body(&tasks[i], trainer) }
                }
                ready[i].signal()
            }
        }
    }
}

/// Seconds from `start` to now.
func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

extension Dataset {
    /// The images and labels at `indices`, in that order.
    func subset(_ indices: [Int]) -> Dataset {
        var images = [Float]()
        images.reserveCapacity(indices.count * features)
        var labels = [UInt8]()
        labels.reserveCapacity(indices.count)
        for i in indices {
            images.append(contentsOf: self.images[(i * features)..<((i + 1) * features)])
            labels.append(self.labels[i])
        }
        return Dataset(images: images, labels: labels, features: features)
    }
}
