import FedClient
import FedCodec
import Foundation
import Testing

@Suite("SCAFFOLD client control variate")
struct ControlVariateTests {
    func tensors(_ values: [Float]) -> [Tensor] { [try! Tensor(shape: [values.count], values: values)] }

    @Test("Option II's update, by hand: c_i+ = c_i - c + (x - y) / (K lr)")
    func update() {
        var variate = ClientControlVariate()
        // c_i = 0: the correction is c.
        #expect(variate.correction(server: tensors([0.1, -0.2])) == tensors([0.1, -0.2]))
        // c = 0.1, x = 1.0, y = 0.9, K = 10, lr = 0.01: (x - y) / (K lr) = 1.0; c_i+ = 0 - 0.1 + 1.0 = 0.9.
        // Second element: c = -0.2, x = 0, y = 0.05: -0.5; c_i+ = 0 + 0.2 - 0.5 = -0.3.
        let change = variate.update(
            server: tensors([0.1, -0.2]), start: tensors([1.0, 0]), end: tensors([0.9, 0.05]), steps: 10,
            learningRate: 0.01)
        #expect(zip(change[0].values, [0.9, -0.3] as [Float]).allSatisfy { abs($0 - $1) < 1e-5 })
        #expect(zip(variate.variate![0].values, [0.9, -0.3] as [Float]).allSatisfy { abs($0 - $1) < 1e-5 })
        // c - c_i with c = 0.2, 0: -0.7, 0.3.
        let correction = variate.correction(server: tensors([0.2, 0]))
        #expect(zip(correction[0].values, [-0.7, 0.3] as [Float]).allSatisfy { abs($0 - $1) < 1e-5 })
        // Again: c = 0.2, x = 1, y = 0.95, K = 5, lr = 0.01: 1.0; c_i+ = 0.9 - 0.2 + 1 = 1.7, a change of 0.8.
        let second = variate.update(
            server: tensors([0.2, 0]), start: tensors([1, 0]), end: tensors([0.95, 0]), steps: 5, learningRate: 0.01)
        #expect(abs(second[0].values[0] - 0.8) < 1e-5 && abs(variate.variate![0].values[0] - 1.7) < 1e-5)
        // Second element: c = 0, x = y = 0: c_i+ = -0.3 - 0 + 0, no change.
        #expect(abs(second[0].values[1]) < 1e-6 && abs(variate.variate![0].values[1] + 0.3) < 1e-5)
    }

    @Test("The variate survives a restart: saved, then read by a new instance")
    func restart() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cv-\(UUID().uuidString).fedk").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var variate = ClientControlVariate()
        try variate.save(to: path)
        #expect(try ClientControlVariate(contentsOf: path) == ClientControlVariate())
        _ = variate.update(
            server: tensors([0.1, -0.2]), start: tensors([1.0, 0]), end: tensors([0.9, 0.05]), steps: 10,
            learningRate: 0.01)
        try variate.save(to: path)
        let restarted = try ClientControlVariate(contentsOf: path)
        #expect(restarted == variate)
        #expect(restarted.correction(server: tensors([0.2, 0])) == variate.correction(server: tensors([0.2, 0])))
    }
}
