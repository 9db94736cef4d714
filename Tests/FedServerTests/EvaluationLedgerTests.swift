import Testing

@testable import FedServer

@Suite("Evaluation ledger")
struct EvaluationLedgerTests {
    @Test("The mean is weighted by examples; p10, p90, min and max describe the clients, hand-computed")
    func handComputed() throws {
        var ledger = EvaluationLedger(keptVersions: 8, maxReportsPerVersion: 100)
        for (client, n, accuracy, loss) in [("a", 10, 0.9, 0.25), ("b", 30, 0.5, 1.0), ("c", 60, 0.75, 0.5)] {
            #expect(
                ledger.record(
                    clientID: client, version: 3, examples: UInt64(n), loss: loss, metrics: ["accuracy": accuracy])
                    == .recorded)
        }
        let s = try #require(ledger.summary(of: 3))
        #expect(s.modelVersion == 3 && s.clients == 3 && s.examples == 100)
        // (10 x 0.9 + 30 x 0.5 + 60 x 0.75) / 100 = 69 / 100.
        let accuracy = try #require(s.metrics["accuracy"])
        #expect(abs(accuracy.mean - 0.69) < 1e-15)
        // Three clients: p10 is rank ceil(0.3) = 1, p90 rank ceil(2.7) = 3.
        #expect(accuracy.p10 == 0.5 && accuracy.p90 == 0.9 && accuracy.min == 0.5 && accuracy.max == 0.9)
        #expect(accuracy.clients == 3 && accuracy.examples == 100)
        // (10 x 0.25 + 30 x 1 + 60 x 0.5) / 100 = 62.5 / 100, exact in binary64.
        let loss = try #require(s.metrics["loss"])
        #expect(loss.mean == 0.625 && loss.min == 0.25 && loss.max == 1.0)
        #expect(ledger.summary(of: 2) == nil)
    }

    @Test("Nearest-rank percentiles of 20 clients: p10 is the 2nd value, p90 the 18th")
    func percentiles() throws {
        var ledger = EvaluationLedger(keptVersions: 8, maxReportsPerVersion: 100)
        // Reported out of order, each with one example.
        for v in [7, 3, 20, 1, 14, 9, 2, 18, 5, 11, 16, 4, 19, 8, 13, 6, 17, 10, 15, 12] {
            _ = ledger.record(clientID: "c\(v)", version: 1, examples: 1, loss: Double(v), metrics: [:])
        }
        let loss = try #require(ledger.summary(of: 1)?.metrics["loss"])
        #expect(loss.p10 == 2 && loss.p90 == 18 && loss.min == 1 && loss.max == 20 && loss.mean == 10.5)
    }

    @Test("A client's second report of a version replaces its first; other versions are apart")
    func replacement() throws {
        var ledger = EvaluationLedger(keptVersions: 8, maxReportsPerVersion: 100)
        _ = ledger.record(clientID: "a", version: 1, examples: 10, loss: 1, metrics: ["accuracy": 0.5])
        _ = ledger.record(clientID: "b", version: 1, examples: 30, loss: 1, metrics: ["accuracy": 1])
        _ = ledger.record(clientID: "a", version: 1, examples: 10, loss: 1, metrics: ["accuracy": 0])
        _ = ledger.record(clientID: "a", version: 2, examples: 5, loss: 3, metrics: ["accuracy": 0.25])
        let one = try #require(ledger.summary(of: 1))
        #expect(one.clients == 2 && one.examples == 40 && one.metrics["accuracy"]?.mean == 0.75)
        let two = try #require(ledger.summary(of: 2))
        #expect(two.clients == 1 && two.examples == 5 && two.metrics["accuracy"]?.mean == 0.25)
        #expect(ledger.history.map(\.modelVersion) == [1, 2])
    }

    @Test("A metric only some clients report is weighted over those clients")
    func partialMetric() throws {
        var ledger = EvaluationLedger(keptVersions: 8, maxReportsPerVersion: 100)
        _ = ledger.record(clientID: "a", version: 1, examples: 10, loss: 1, metrics: ["f1": 0.5])
        _ = ledger.record(clientID: "b", version: 1, examples: 30, loss: 1, metrics: [:])
        let f1 = try #require(ledger.summary(of: 1)?.metrics["f1"])
        #expect(f1.clients == 1 && f1.examples == 10 && f1.mean == 0.5)
    }

    @Test("The highest versions are kept; a full version refuses new clients but takes its clients' retries")
    func bounds() {
        var ledger = EvaluationLedger(keptVersions: 2, maxReportsPerVersion: 2)
        for v: UInt64 in [3, 1, 2] { _ = ledger.record(clientID: "a", version: v, examples: 1, loss: 0, metrics: [:]) }
        #expect(ledger.history.map(\.modelVersion) == [2, 3])
        #expect(ledger.record(clientID: "b", version: 3, examples: 1, loss: 0, metrics: [:]) == .recorded)
        #expect(ledger.record(clientID: "c", version: 3, examples: 1, loss: 0, metrics: [:]) == .full)
        #expect(ledger.record(clientID: "a", version: 3, examples: 2, loss: 0, metrics: [:]) == .recorded)
        #expect(ledger.summary(of: 3)?.clients == 2 && ledger.summary(of: 3)?.examples == 3)
    }
}
