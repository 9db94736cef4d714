import Testing

@testable import FedCodec

/// Quantizing any finite input never traps (issue 21, item 1): ranges that
/// overflow binary32 (`hi - lo` of ±2e38) are computed in binary64.
@Suite("Quantization of extreme values")
struct QuantizationBoundsTests {
    static let big: Float = 2e38
    static let inputs: [(String, [Float])] = [
        ("alternating ±2e38", (0..<600).map { $0 % 2 == 0 ? big : -big }),
        ("±greatest finite", (0..<300).map { $0 % 2 == 0 ? .greatestFiniteMagnitude : -.greatestFiniteMagnitude }),
        ("greatest finite and 0", (0..<300).map { $0 % 5 == 0 ? .greatestFiniteMagnitude : 0 }),
        ("subnormals", (0..<300).map { Float($0 % 7) * Float.leastNonzeroMagnitude }),
        (
            "subnormal and -least normal",
            (0..<300).map { $0 % 2 == 0 ? Float.leastNonzeroMagnitude : -.leastNormalMagnitude }
        ),
        ("one value", [.greatestFiniteMagnitude]),
        ("±limit", (0..<513).map { $0 % 2 == 0 ? Limits.maxMagnitude : -Limits.maxMagnitude }),
        ("ramp across the range", (0..<1000).map { Float($0 - 500) * 6e35 }),
    ]

    @Test(
        "Every encoding and rounding encodes extreme finite input without trapping",
        arguments: ValueEncoding.allCases, [ValueEncoding.Rounding.nearest, .stochastic(seed: 7)])
    func extremes(encoding: ValueEncoding, rounding: ValueEncoding.Rounding) {
        for (name, values) in Self.inputs {
            let out = encoding.roundTrip(values, rounding: rounding)
            #expect(out.count == values.count, "\(name)")
            guard encoding.codeBits != nil else { continue }
            // Within one step of the input wherever the block's decoded values are finite.
            for b in stride(from: 0, to: values.count, by: ValueEncoding.blockSize) {
                let block = b..<min(values.count, b + ValueEncoding.blockSize)
                let lo = values[block].min()!
                let hi = values[block].max()!
                let step = (Double(hi) - Double(lo)) / Double((1 << encoding.codeBits!) - 1)
                for i in block where out[i].isFinite {
                    #expect(
                        abs(Double(out[i]) - Double(values[i])) <= step * 1.0001 + 1e-30,
                        "\(name) \(encoding) index \(i): \(values[i]) -> \(out[i])")
                }
            }
        }
    }

    @Test("Within ±Limits.maxMagnitude every block encoding decodes to finite values")
    func finiteWithinLimit() {
        let values = (0..<1000).map { i -> Float in
            [Limits.maxMagnitude, -Limits.maxMagnitude, 0, .leastNonzeroMagnitude][i % 4]
        }
        for e in ValueEncoding.allCases where e.codeBits != nil {
            #expect(e.roundTrip(values).allSatisfy { $0.isFinite }, "\(e)")
        }
    }

    @Test("Non-finite values code as the block's lo without trapping")
    func nonFinite() {
        for e in ValueEncoding.allCases where e.codeBits != nil {
            _ = e.roundTrip([.nan, 1, 2, .infinity, -.infinity])
            _ = e.roundTrip([.nan, .nan])
        }
    }
}
