import FedClient
import FedCodec
import Testing

@Suite("FedProx's mu in a train task")
struct ProximalTermTests {
    func task(_ parameters: [String: String]) -> TrainingTask {
        TrainingTask(
            round: 1, taskID: 1, modelVersion: 1, weights: [], parameters: parameters, deadline: .now,
            features: Features())
    }

    @Test("prox.mu is read when it is a finite number at least 0, else nil")
    func parse() {
        #expect(task(["prox.mu": "0.1"]).proximalMu == 0.1)
        #expect(task(["prox.mu": "0"]).proximalMu == 0)
        #expect(task([:]).proximalMu == nil)
        #expect(task(["prox.mu": "-1"]).proximalMu == nil)
        #expect(task(["prox.mu": "nan"]).proximalMu == nil)
        #expect(task(["prox.mu": "abc"]).proximalMu == nil)
    }
}
