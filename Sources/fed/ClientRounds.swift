import ArgumentParser
import Dispatch
import FedClient
import FedSecureClient
import FedCodec
import FedModel
import FedStorage
import Foundation
import Synchronization

/// The built-in MLP as a `LocalTrainer`: each task trains `epochs` epochs
/// (the round's `epochs` parameter when it gives one) on all the client's
/// training data, from the task's weights. Adam's moments are kept from task
/// to task. An evaluate task measures the served weights on `heldOut` (never
/// trained on): examples, mean cross-entropy loss and `accuracy`.
struct MLPTrainer: LocalTrainer {
    let trainer: Trainer
    let data: Dataset
    /// Held-out samples to evaluate on; nil: the trainer does not evaluate.
    let heldOut: Dataset?
    /// Evaluates without disturbing `trainer`'s weights.
    let evaluator: Trainer
    let epochs: Int
    let batchSize: Int
    private var rng: SeededGenerator
    private let progress: (TrainingTask, Int, Double, Double) -> Void
    /// Where each report is kept (`round-R-ID.fedk`), if anywhere.
    let keep: (folder: String, clientID: String)?

    init(
        data: Dataset, heldOut: Dataset? = nil, epochs: Int, batchSize: Int, seed: UInt64, threads: Int,
        keep: (folder: String, clientID: String)? = nil,
        progress: @escaping (TrainingTask, Int, Double, Double) -> Void
    ) {
        self.keep = keep
        self.data = data
        self.heldOut = heldOut.flatMap { $0.count > 0 ? $0 : nil }
        self.evaluator = Trainer(model: MLP(seed: seed), maxBatch: 256, threads: threads)
        self.epochs = epochs
        self.batchSize = batchSize
        self.trainer = Trainer(model: MLP(seed: seed), maxBatch: max(256, batchSize), threads: threads)
        self.rng = SeededGenerator(seed: seed &+ 0x5EED)
        self.progress = progress
    }

    mutating func train(_ task: TrainingTask) async throws -> TrainingOutcome {
        try trainer.adopt(task.weights)
        try trainer.setObjective(task.proximalMu.map { .proximal(mu: Float($0), base: task.weights) })
        let epochs = task.parameters["epochs"].flatMap { Int($0) }.map { min(max($0, 1), 1000) } ?? self.epochs
        for epoch in 1...epochs {
            let r = trainer.trainEpoch(data, batchSize: batchSize, rng: &rng)
            progress(task, epoch, r.loss, r.accuracy)
        }
        let outcome = TrainingOutcome(weights: trainer.model.tensors(), samples: UInt64(data.count))
        if let keep {
            try CheckpointFile.write(
                Checkpoint(version: task.round, datasets: outcome.samples, tensors: outcome.weights),
                to: "\(keep.folder)/round-\(task.round)-\(keep.clientID).fedk")
        }
        return outcome
    }

    mutating func evaluate(_ task: EvaluationTask) async throws -> EvaluationOutcome? {
        guard let heldOut else { return nil }
        try evaluator.adopt(task.weights)
        let result = evaluator.evaluate(heldOut)
        // The loss is taken a batch at a time: the mean of the batches' means, weighted by their sizes.
        var loss = 0.0
        var start = 0
        while start < heldOut.count {
            let end = min(start + evaluator.maxBatch, heldOut.count)
            loss += evaluator.loss(heldOut.slice(start..<end)) * Double(end - start)
            start = end
        }
        return EvaluationOutcome(
            examples: UInt64(result.total), loss: loss / Double(heldOut.count), metrics: ["accuracy": result.accuracy])
    }
}

extension Fed.Client {
    /// `fed client --rounds`: `FederationClient.run` with the built-in MLP.
    func runRounds(
        host: String, port: Int, clientID: String, data slices: [Dataset], wire: WireEncoding, policy: RetryPolicy
    ) throws {
        var images: [Float] = []
        var labels: [UInt8] = []
        for s in slices {
            images += s.images
            labels += s.labels
        }
        let all = Dataset(images: images, labels: labels, features: slices[0].features)
        // The last share of the client's samples is held out: never trained on, evaluated on.
        let held = Int((Double(all.count) * heldOut).rounded())
        let data = all.slice(0..<(all.count - held))
        let heldOutData = held > 0 ? all.slice((all.count - held)..<all.count) : nil
        var properties: [String: String] = [:]
        for p in property {
            let eq = p.firstIndex(of: "=")!
            properties[String(p[..<eq])] = String(p[p.index(after: eq)...])
        }
        let client = FederationClient(
            host: host, port: port,
            configuration: .init(
                clientID: clientID, authToken: try resolvedToken(), retryPolicy: policy,
                compression: Compression(name: compression)!, encoding: wire, acceptDeltas: true, tls: tlsSettings))
        let name = clientID
        let trainer = MLPTrainer(
            data: data, heldOut: heldOutData, epochs: epochs, batchSize: batchSize, seed: seed, threads: threads,
            keep: keepReports.map { (folder: $0, clientID: clientID) }
        ) { task, epoch, loss, accuracy in
            print(
                String(
                    format: "[%@] round %llu epoch %d  loss %.4f  accuracy %.4f", name, task.round, epoch, loss,
                    accuracy))
        }
        let privacy = try localPrivacy()
        if let privacy {
            print(
                "[\(clientID)] local differential privacy: each report's update clipped to \(privacy.clip), noise \(privacy.noise) per weight: (\(privacy.epsilon), \(privacy.delta)) per report"
            )
        }
        let options = FederationClient.RunOptions(
            properties: properties, maxTasks: maxTasks, evaluate: heldOutData != nil, localPrivacy: privacy,
            secureAggregation: try secureFactory(clientID: clientID))
        let started = Date()
        let outcome = Mutex<Result<FederationClient.RunSummary, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        print(
            "[\(clientID)] \(data.count) samples\(held > 0 ? " (\(held) more held out for evaluation)" : ""); checking in at \(host):\(port)"
        )
        fflush(nil)
        Task { [trainer] in
            var trainer = trainer
            do {
                let summary = try await client.run(trainer: &trainer, options: options) { event in
                    switch event {
                    case .assigned(let a) where a.kind == .evaluate:
                        print("[\(name)] task: evaluate version \(a.modelVersion)")
                    case .assigned(let a):
                        print("[\(name)] task: train round \(a.round) from version \(a.modelVersion)")
                    case .evaluated(let version, let e, _):
                        print(
                            String(
                                format:
                                    "[%@] evaluated version %llu on %llu held-out samples: loss %.4f  accuracy %.4f",
                                name, version, e.examples, e.loss, e.metrics["accuracy"] ?? .nan))
                    case .comeBack(let a):
                        print("[\(name)] no task (\(a.reason)); back in \(a.retryAfterMilliseconds) ms")
                    case .skipped(let round, let reason): print("[\(name)] round \(round) skipped: \(reason)")
                    case .reported(let round, let samples, let ack):
                        print(
                            "[\(name)] round \(round): reported \(samples) samples; the round made version \(ack.version)"
                        )
                    case .refused(let round, let error): print("[\(name)] round \(round): report refused: \(error)")
                    }
                    fflush(nil)
                }
                outcome.withLock { $0 = .success(summary) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            await client.close()
            done.signal()
        }
        done.wait()
        let summary = try outcome.withLock { $0! }.get()
        print(
            "[\(clientID)] done in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(summary.tasks) tasks, \(summary.reportsApplied) reports applied, \(summary.reportsRefused) refused, \(summary.evaluations) evaluations, model version \(summary.modelVersion)\(summary.finished ? "; the federation finished" : "")"
        )
        if summary.tasks == 0 && summary.evaluations == 0 && !summary.finished { throw ExitCode(2) }
    }
}
