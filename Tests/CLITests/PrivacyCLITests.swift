import Foundation
import Testing

@Suite("fed privacy epsilon")
struct PrivacyCLITests {
    /// The value after `name: ` on its own line of `output`.
    func field(_ name: String, in output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix(name + ": ") }.map { String($0.dropFirst(name.count + 2)) }
    }

    /// dp-accounting 0.6.0's RDP epsilon at delta 1e-5 (Benchmarks/dp_accounting_reference.py).
    @Test(
        "Prints dp-accounting's epsilon and order for a grid point",
        arguments: [
            (["--sampling-rate", "0.01", "--noise", "1.1", "--steps", "1000"], 1.7117701662429012, "9.6"),
            (
                [
                    "--sampling", "fixed", "--population", "10000", "--sampling-rate", "0.01", "--noise", "1.1",
                    "--steps", "1000",
                ],
                3.1899987783606503, "7.0"
            ),
            (["--sampling", "none", "--noise", "3", "--steps", "100"], 20.392520209469453, "2.4"),
        ])
    func gridPoint(_ flags: [String], _ reference: Double, _ order: String) async throws {
        let (status, output) = try await FedProcess.run(["privacy", "epsilon"] + flags + ["--delta", "1e-5"])
        #expect(status == 0, "\(output)")
        let epsilon = try #require(field("epsilon", in: output).flatMap(Double.init), "\(output)")
        #expect(abs(epsilon - reference) / reference < 0.01, "\(epsilon) against dp-accounting's \(reference)")
        #expect(field("order", in: output) == order)
        #expect(field("delta", in: output) == "1e-05")
        #expect(field("sampling", in: output) != nil)
    }

    @Test(
        "Refuses input out of range with a clear message",
        arguments: [
            (["--sampling-rate", "0", "--noise", "1", "--steps", "10"], "--sampling-rate must be in (0, 1]"),
            (["--sampling-rate", "1.5", "--noise", "1", "--steps", "10"], "--sampling-rate must be in (0, 1]"),
            (["--sampling-rate", "0.1", "--noise=-1", "--steps", "10"], "--noise must be"),
            (["--sampling-rate", "0.1", "--noise", "1", "--steps", "0"], "--steps must be at least 1"),
            (["--sampling-rate", "0.1", "--noise", "1", "--steps", "10", "--delta", "1"], "--delta must be in (0, 1)"),
            (["--sampling", "fixed", "--sampling-rate", "0.1", "--noise", "1", "--steps", "10"], "needs --population"),
            (["--sampling-rate", "0.1", "--noise", "1", "--steps", "10", "--accountant", "pld"], "not built yet"),
        ])
    func refuses(_ flags: [String], _ message: String) async throws {
        let (status, output) = try await FedProcess.run(["privacy", "epsilon"] + flags)
        #expect(status != 0)
        #expect(output.contains(message), "\(output)")
    }

    @Test("--help explains the flags and gives an example")
    func help() async throws {
        let (status, output) = try await FedProcess.run(["privacy", "epsilon", "--help"])
        #expect(status == 0)
        for text in ["--sampling-rate", "--noise", "--steps", "--delta", "--population", "poisson", "Example"] {
            #expect(output.contains(text), "\(text) missing from:\n\(output)")
        }
    }
}
