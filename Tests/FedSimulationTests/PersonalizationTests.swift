import FedCodec
import FedModel
import FedServer
import FedSimulation
import Foundation
import Testing

@Suite("Per-client accuracy and personalization")
struct PersonalizationTests {
    @Test("The distribution over clients: mean, 10th percentile by nearest rank, worst")
    func distribution() throws {
        let d = try #require(AccuracyDistribution([0.5, 1.0, 0.9, 0.8, 0.7, 0.6, 0.95, 0.85, 0.75, 0.65, 0.55]))
        // 11 clients: the ceil(1.1) = 2nd lowest is the 10th percentile.
        #expect(d.p10 == 0.55 && d.min == 0.5 && d.clients == 11)
        #expect(abs(d.mean - 8.25 / 11) < 1e-12)
        #expect(AccuracyDistribution([]) == nil)
        #expect(AccuracyDistribution([0.3])!.p10 == 0.3)
    }

    @Test("A client's hold-out: the fraction rounded down, disjoint from its training share")
    func holdOut() {
        var rng = SeededGenerator(seed: 3)
        let share = Array(100..<111)
        let (train, held) = Personalization.holdOut(share, fraction: 0.2, rng: &rng)
        #expect(held.count == 2 && train.count == 9)
        #expect(Set(train).union(held) == Set(share) && Set(train).isDisjoint(with: held))
        #expect(Personalization.holdOut([1, 2, 3, 4], fraction: 0.2, rng: &rng) == ([1, 2, 3, 4], []))
    }

    /// Weights whose head answers `label` whatever the input: W3 zero, b3 one-hot.
    func head(answering label: Int) -> [Int: Tensor] {
        var bias = [Float](repeating: 0, count: 10)
        bias[label] = 5
        return [4: Tensor(zeros: [200, 10]), 5: try! Tensor(shape: [10], values: bias)]
    }

    @Test("Each client's accuracy on its own held-out share, with its private head, by hand")
    func perClient() throws {
        var c = SimulationConfiguration()
        c.clientHoldout = 0.2
        c.privateTensors = [4, 5]
        let image = [Float](repeating: 0.5, count: 784)
        func data(_ labels: [UInt8]) -> Dataset {
            Dataset(images: Array(repeating: image, count: labels.count).flatMap { $0 }, labels: labels, features: 784)
        }
        // Client 0 answers 1 on [1, 1, 2, 3]: 0.5; client 1 answers 2 on [2, 2, 2, 0]: 0.75; client 2 has no held-out data.
        let heldOut = [data([1, 1, 2, 3]), data([2, 2, 2, 0]), data([])]
        let trainer = Trainer(model: MLP(seed: 1), maxBatch: 256)
        let measured = try Personalization(configuration: c, seed: 1).accuracies(
            server: MLP(seed: 2).tensors(), train: heldOut, heldOut: heldOut,
            privateTensors: [head(answering: 1), head(answering: 2), [:]], trainer: trainer)
        #expect(measured.served == [0.5, 0.75])
        // No fine-tuning: the personalized model is the served one with the private head.
        #expect(measured.personalized == [0.5, 0.75])
        let d = try #require(AccuracyDistribution(measured.served))
        #expect(d.mean == 0.625 && d.p10 == 0.5 && d.min == 0.5 && d.clients == 2)
        // Without private tensors or fine-tuning there is no personalized model.
        c.privateTensors = []
        let plain = try Personalization(configuration: c, seed: 1).accuracies(
            server: MLP(seed: 2).tensors(), train: heldOut, heldOut: heldOut, privateTensors: [[:], [:], [:]],
            trainer: trainer)
        #expect(plain.personalized == nil && plain.served.count == 2)
    }

    @Test("A small federation with FedProx, SCAFFOLD and fine-tuning reports each client's accuracy")
    func smallRun() async throws {
        let data = try mnist.get()
        var c = try smallConfiguration(["fedavg/k=2", "fedprox/k=2/mu=0.1", "scaffold/k=2/opt=adam:0.003"])
        c.syncFraction = 0.5
        c.partition = try #require(Partition("dirichlet:0.1"))
        c.clientHoldout = 0.2
        c.personalizeSteps = 5
        let report = try await Simulation(c, data: data).run()
        #expect(report.results.count == 3)
        for r in report.results {
            let served = try #require(r.clientAccuracy)
            let personalized = try #require(r.personalizedAccuracy)
            #expect(served.clients == 4 && personalized.clients == 4)
            #expect(served.min <= served.p10 && served.p10 <= served.mean && served.mean <= 1)
            #expect(r.finalAccuracy > 0.3)
        }
        #expect(report.summary.contains("held-out share"))
        #expect(report.summary.contains("95% interval"))
        let json = try JSONSerialization.jsonObject(with: report.summaryJSON()) as! [String: Any]
        let run = (json["runs"] as! [[String: Any]])[0]
        #expect((run["client_accuracy"] as? [String: Any])?["p10"] != nil)
        #expect((run["personalized_accuracy"] as? [String: Any])?["mean"] != nil)
    }

    @Test("SCAFFOLD needs synchronous pushes; FedPer needs a hold-out")
    func validation() throws {
        var c = try smallConfiguration(["scaffold"])
        #expect(throws: SimulationError.self) { try c.validate() }
        c.syncFraction = 0.5
        try c.validate()
        c.privateTensors = [4, 5]
        #expect(throws: SimulationError.self) { try c.validate() }
        c.clientHoldout = 0.2
        try c.validate()
    }
}
