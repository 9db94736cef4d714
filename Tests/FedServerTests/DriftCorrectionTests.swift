import FedCodec
import FedServer
import Testing

@Suite("FedProx and SCAFFOLD on the server")
struct DriftCorrectionTests {
    @Test("The server variate: c += (|S| / N) mean(delta c_i), by hand")
    func serverVariate() throws {
        var c = ServerControlVariate(shapes: [[2]], population: 4)
        #expect(c.variate == [Tensor(zeros: [2])])
        // |S| = 2 of N = 4, changes 0.9 and 0.1: mean 0.5, c = 0 + 0.5 * 0.5 = 0.25; second element (-0.4 + 0) / 4 = -0.1.
        c.apply([[try Tensor(shape: [2], values: [0.9, -0.4])], [try Tensor(shape: [2], values: [0.1, 0])]])
        #expect(abs(c.variate[0].values[0] - 0.25) < 1e-6 && abs(c.variate[0].values[1] + 0.1) < 1e-6)
        // |S| = 1, change -0.2: c = 0.25 - 0.2 / 4 = 0.2; a change of the wrong shape is ignored.
        c.apply([[try Tensor(shape: [2], values: [-0.2, 0])], [Tensor(zeros: [3])]])
        #expect(abs(c.variate[0].values[0] - 0.2) < 1e-6)
    }

    @Test("Strategy names: fedprox with mu, scaffold, both with fedavg's keys and a server optimizer")
    func names() throws {
        let prox = try StrategySpec("fedprox/k=10/mu=0.05/opt=adam:0.003")
        #expect(prox.proximalMu == 0.05 && !prox.controlVariates && prox.strategy is FedBuff)
        #expect(try StrategySpec("fedprox").proximalMu == 0.01)
        let scaffold = try StrategySpec("scaffold/k=10/opt=adam:0.003")
        #expect(scaffold.controlVariates && scaffold.proximalMu == nil && scaffold.strategy is FedBuff)
        #expect(try StrategySpec("fedavg/k=10").proximalMu == nil)
        #expect(throws: StrategySpecError.self) { try StrategySpec("fedprox/mu=-1") }
        #expect(throws: StrategySpecError.self) { try StrategySpec("scaffold/mu=0.1") }
    }

    @Test("The local optimizer: adam by default, local=sgd:LR for plain SGD")
    func localOptimizer() throws {
        #expect(try StrategySpec("fedavg/k=10/opt=adam:0.003").localSGD == nil)
        #expect(try StrategySpec("scaffold/local=adam").localSGD == nil)
        let sgd = try StrategySpec("scaffold/k=10/local=sgd:0.05/opt=sgd:1")
        #expect(sgd.localSGD == 0.05 && sgd.controlVariates)
        #expect(try StrategySpec("fedprox/mu=0.1/local=sgd:0.02").localSGD == 0.02)
        for bad in ["scaffold/local=sgd", "scaffold/local=sgd:0", "scaffold/local=sgd:-1", "scaffold/local=yogi"] {
            #expect(throws: StrategySpecError.self) { try StrategySpec(bad) }
        }
        #expect(throws: StrategySpecError.self) { try StrategySpec("fedasync/local=sgd:0.1") }
    }
}
