import FedCodec
import FedPrivacy
import FedStorage
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

/// Differential privacy in rounds (issue 26): the aggregation's clipping and
/// noise, the ledger's budget across restarts, sampling, refusals.
@Suite("Rounds with differential privacy (in process)")
struct PrivateRoundsTests {
    static let size = 9  // RoundsFixture's model: 2x3 and 3 values

    /// Rounds of `cohort` over a population of `population`, Poisson unless said.
    static func configuration(
        cohort: Int, population: Int, noise: Double, clipping: DifferentialPrivacy.Clipping = .fixed(norm: 1),
        sampling: DifferentialPrivacy.Sampling = .poisson, target: Double? = nil, seed: UInt64 = 7
    ) -> RoundConfiguration {
        RoundConfiguration(
            cohortSize: cohort, deadline: .seconds(5), selectionWindow: .seconds(60), seed: seed,
            privacy: DifferentialPrivacy(
                noiseMultiplier: noise, clipping: clipping, sampling: sampling, population: population,
                targetEpsilon: target))
    }

    /// Runs one round with every client of `ids` reporting `value`; returns the tasks given.
    @discardableResult
    static func round(_ f: RoundsFixture, _ ids: [String], value: Float = 1) throws -> [Assignment] {
        // Those not selected hear so when their short wait ends.
        let boxes = ids.map { f.checkIn($0, wait: 300) }
        let answers = try boxes.map { try #require($0.get()) }
        var acks: [Box<Result<Acknowledgement, ErrorMessage>>] = []
        for (id, a) in zip(ids, answers) where a.kind == .train {
            acks.append(f.report(a, as: id, value: value, samples: 10))
        }
        for ack in acks { _ = try #require(ack.get()).get() }
        return answers.filter { $0.kind == .train }
    }

    @Test(
        "Clipping bounds each update's norm; without noise the result is base + the clipped sum / the expected cohort")
    func clipsAndDividesByTheExpectedCohort() throws {
        let base = [try Tensor(shape: [4], values: [0, 0, 0, 0])]
        // Norms 10 (clipped to 1) and 0.5 (kept).
        let reports = [
            [try Tensor(shape: [4], values: [5, 5, 5, 5])], [try Tensor(shape: [4], values: [0.25, 0.25, 0.25, 0.25])],
        ]
        var random: any RandomNumberGenerator = SplitMix(seed: 1)
        let r = PrivateMean(clip: 1, valueNoise: 0, countNoise: 0, expectedCohort: 4)
            .aggregate(base: base, reports: reports, using: &random)
        // (0.5 + 0.25) / 4 per coordinate.
        for v in r.weights[0].values { #expect(abs(v - 0.1875) < 1e-7) }
        #expect(r.clipped == 1)
        #expect(abs(r.unclippedFraction - (1 - 0.5 * 2) / 4 - 0.5) < 1e-12, "centred count / cohort + 1/2")
    }

    @Test("The noise on each coordinate is Gaussian with standard deviation valueNoise / expected cohort")
    func noiseHasTheStatedSpread() throws {
        let n = 200_000
        let base = [try Tensor(shape: [n], values: [Float](repeating: 0, count: n))]
        var random: any RandomNumberGenerator = SplitMix(seed: 3)
        let r = PrivateMean(clip: 1, valueNoise: 2.5, countNoise: 0, expectedCohort: 10)
            .aggregate(base: base, reports: [], using: &random)
        let values = r.weights[0].values.map(Double.init)
        let mean = values.reduce(0, +) / Double(n)
        let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)).squareRoot()
        #expect(abs(mean) < 4 * 0.25 / Double(n).squareRoot(), "mean \(mean)")
        #expect(abs(sd - 0.25) < 0.25 * 0.01, "standard deviation \(sd), expected 0.25")
        let beyond2 = Double(values.filter { abs($0) > 0.5 }.count) / Double(n)
        #expect(abs(beyond2 - 0.0455) < 0.003, "share beyond 2 sd: \(beyond2)")
    }

    @Test(
        "A target epsilon publishes exactly the rounds that fit, and a restart from the checkpoint continues the budget"
    )
    func budgetStopsExactlyAndSurvivesRestarts() throws {
        let (q, z) = (0.5, 1.0)
        var accountant = RDPAccountant()
        var epsilons: [Double] = []
        for _ in 0..<6 {
            try accountant.compose(.poissonSampledGaussian(samplingRate: q, noise: z))
            epsilons.append(accountant.epsilon(delta: 1e-5).epsilon)
        }
        // Room for exactly 4 rounds.
        let target = (epsilons[3] + epsilons[4]) / 2
        let configuration = Self.configuration(cohort: 4, population: 8, noise: z, target: target)
        let checkpoints = InMemoryCheckpointStore()
        let ids = (0..<8).map { "c\($0)" }
        var f = try RoundsFixture(configuration, checkpoints: checkpoints)
        for _ in 0..<2 { try Self.round(f, ids) }
        #expect(f.store.snapshot().version == 2)
        let spent = try #require(f.rounds.privacy)
        #expect(spent.rounds == 2 && abs(spent.epsilon - epsilons[1]) < 1e-12)
        #expect(f.store.snapshot().datasets == 0, "a private round does not publish its sample count")

        // A restart (the checkpoint as a crash leaves it: every round written before its ACK).
        f = try RoundsFixture(configuration, checkpoints: checkpoints)
        #expect(try #require(f.rounds.privacy).rounds == 2)
        for _ in 0..<2 { try Self.round(f, ids) }
        #expect(f.store.snapshot().version == 4)
        #expect(abs(try #require(f.rounds.privacy).epsilon - epsilons[3]) < 1e-12)
        #expect(f.checkpoints.saves >= 2)
        // The fifth would exceed the target: every check-in is told the budget is spent.
        let answer = try #require(f.checkIn("c0").get())
        #expect(answer.kind == .comeBack && answer.reason == .budgetSpent, "\(answer)")
        #expect(f.store.snapshot().version == 4)

        // And again after another restart, at once.
        f = try RoundsFixture(configuration, checkpoints: checkpoints)
        let again = try #require(f.checkIn("c1").get(within: 1))
        #expect(again.reason == .budgetSpent)
        #expect(f.store.durable().scalars[PrivacyLedger.roundsKey] == 4)
    }

    @Test(
        "Poisson sampling selects each waiting client with probability cohort/population; tasks state the clip, noise and epsilon"
    )
    func poissonSampling() throws {
        let f = try RoundsFixture(Self.configuration(cohort: 10, population: 40, noise: 1, seed: 11))
        let ids = (0..<40).map { "c\($0)" }
        var sizes: [Int] = []
        for _ in 0..<12 {
            let tasks = try Self.round(f, ids)
            sizes.append(tasks.count)
            let p = try #require(tasks.first?.parameters)
            #expect(p["dp.clip"] == "1.0" && p["dp.noise"] == "1.0" && p["dp.epsilon"] != nil)
        }
        // Binomial(40, 0.25): mean 10, sd 2.7; 12 rounds' mean within 3 sd of theirs (0.8).
        let mean = Double(sizes.reduce(0, +)) / Double(sizes.count)
        #expect(abs(mean - 10) < 2.4, "cohort sizes \(sizes)")
        #expect(Set(sizes).count > 1, "Poisson cohorts vary in size: \(sizes)")
        #expect(try #require(f.rounds.privacy).rounds == 12)
    }

    @Test(
        "Fixed-size sampling is accounted as replace-one with noise z/2 (a replaced client moves the sum by 2C); fewer waiting than the cohort wait, without spending the budget"
    )
    func fixedSampling() throws {
        let z = 1.0
        var one = RDPAccountant()
        try one.compose(.fixedSizeSampledGaussian(sampleSize: 4, populationSize: 8, noise: z / 2))
        let target = one.epsilon(delta: 1e-5).epsilon * 1.01
        let f = try RoundsFixture(
            RoundConfiguration(
                cohortSize: 4, deadline: .seconds(5), selectionWindow: .milliseconds(100), seed: 5,
                privacy: DifferentialPrivacy(
                    noiseMultiplier: z, clipping: .fixed(norm: 1), sampling: .fixed, population: 8,
                    targetEpsilon: target)))
        // Three wait past the window: a sample of 3 of 3 (rate 1) would exceed the target; they wait.
        let early = (0..<3).map { f.checkIn("e\($0)", wait: 400) }
        for box in early {
            let a = try #require(box.get())
            #expect(a.kind == .comeBack && a.reason == .noTask, "\(a)")
        }
        #expect(try #require(f.rounds.privacy).rounds == 0)
        // Eight waiting: exactly 4 selected, accounted as 4 of 8 at z/2.
        let tasks = try Self.round(f, (0..<8).map { "c\($0)" })
        #expect(tasks.count == 4)
        let ledger = try #require(f.rounds.privacy)
        #expect(ledger.counts == [.fixedSizeSampledGaussian(sampleSize: 4, populationSize: 8, noise: 0.5): 1])
        #expect(abs(ledger.epsilon - one.epsilon(delta: 1e-5).epsilon) < 1e-12)
    }

    @Test("An empty Poisson draw is a round of noise alone, published and accounted, never drawn again")
    func emptyDrawIsARound() throws {
        let f = try RoundsFixture(
            RoundConfiguration(
                cohortSize: 1, deadline: .seconds(5), selectionWindow: .milliseconds(50), seed: 3,
                privacy: DifferentialPrivacy(noiseMultiplier: 1, clipping: .fixed(norm: 1), population: 100_000)))
        // Two clients wait; each round selects each with probability 1/100000.
        let boxes = ["a", "b"].map { f.checkIn($0, wait: 600) }
        for box in boxes { _ = box.get(within: 3) }
        f.rounds.settle()
        let version = f.store.snapshot().version
        #expect(version >= 2, "rounds of noise were published while the clients waited: \(version)")
        #expect(try #require(f.rounds.privacy).rounds == version, "every published version is accounted for")
        #expect(f.rounds.statistics.tasksGiven == 0)
        #expect(f.model.contains { $0 != 0 }, "noise was added")
    }

    @Test("Adaptive clipping moves the norm towards the target quantile of the updates' norms")
    func adaptiveClippingFollowsTheQuantile() throws {
        let f = try RoundsFixture(
            Self.configuration(
                cohort: 10, population: 10, noise: 0.01,
                clipping: .adaptive(initialNorm: 5, quantile: 0.5, rate: 0.2)))
        let ids = (0..<10).map { "c\($0)" }
        // Each client reports base + v everywhere: norm 3|v| with 9 values; v from 1 to 10 around the model.
        for _ in 0..<60 {
            let base = f.model[0]
            let boxes = ids.map { f.checkIn($0) }
            let answers = try boxes.map { try #require($0.get()) }
            var acks: [Box<Result<Acknowledgement, ErrorMessage>>] = []
            for (k, (id, a)) in zip(ids, answers).enumerated() where a.kind == .train {
                acks.append(f.report(a, as: id, value: base + Float(k + 1), samples: 10))
            }
            for ack in acks { _ = try #require(ack.get()).get() }
        }
        // Norms 3, 6, ..., 30: the median lies between 15 and 18.
        let clip = try #require(f.rounds.privacy).clip
        #expect(clip > 12 && clip < 21, "clip \(clip)")
    }

    @Test(
        "Refused: differential privacy with an asynchronous strategy, too much noise for adaptive clipping, a bad --dp")
    func refusals() throws {
        var c = Self.configuration(cohort: 10, population: 100, noise: 1)
        c.admission = .continuous
        #expect(c.problem()?.contains("needs synchronous rounds") == true)
        let tooNoisy = Self.configuration(
            cohort: 10, population: 100, noise: 1.5, clipping: .adaptive(initialNorm: 0.1, quantile: 0.5, rate: 0.2))
        #expect(tooNoisy.problem()?.contains("below 2 x the count's noise") == true, "\(tooNoisy.problem() ?? "")")
        for (spec, message) in [
            ("noise=1", "population"), ("population=10,noise=1,color=red", "unknown key color"),
            ("population=100,target-epsilon=2", "number of rounds"), ("population=5,noise=1", "at least the cohort"),
            ("population=100,noise=1,sampling=stratified", "poisson or fixed"),
        ] {
            #expect(throws: PrivacyError.self, "\(spec)") {
                try DifferentialPrivacy(spec: spec, cohort: 10, rounds: 0)
            }
            do {
                _ = try DifferentialPrivacy(spec: spec, cohort: 10, rounds: 0)
            } catch {
                #expect(error.message.contains(message), "\(spec): \(error)")
            }
        }
    }

    @Test("Calibrated noise: the run's rounds reach the target epsilon and one more would exceed it")
    func calibration() throws {
        let dp = try DifferentialPrivacy(spec: "population=1000,target-epsilon=2", cohort: 100, rounds: 100)
        var accountant = RDPAccountant()
        try accountant.compose(.poissonSampledGaussian(samplingRate: 0.1, noise: dp.noiseMultiplier), count: 100)
        let at100 = accountant.epsilon(delta: 1e-5).epsilon
        #expect(at100 <= 2 && at100 > 1.99, "epsilon after 100 rounds \(at100) with noise \(dp.noiseMultiplier)")
        try accountant.compose(.poissonSampledGaussian(samplingRate: 0.1, noise: dp.noiseMultiplier))
        #expect(accountant.epsilon(delta: 1e-5).epsilon > 2)
    }

    @Test("With differential privacy a push (binary or HTTP) is refused: it would publish an update without noise")
    func pushesAreRefused() throws {
        let f = try ServiceFixture { c in
            c.rounds = Self.configuration(cohort: 2, population: 10, noise: 1)
        }
        let request = FederationService.PushRequest(tensors: ServiceFixture.tensors(1), datasets: 5, pushID: 7)
        for session in [ServiceFixture.session(), FederationService.Session.http(clientID: "h")] {
            guard case .failure(let refusal) = f.push(request, as: session) else {
                Issue.record("a push was accepted")
                continue
            }
            #expect(refusal.code == .unexpectedMessage && refusal.message.contains("differential privacy"))
        }
        #expect(f.store.snapshot().version == 0)
    }

    @Test("The ledger's scalars name their events and read back exactly")
    func ledgerRoundTrip() throws {
        for event: DPEvent in [
            .poissonSampledGaussian(samplingRate: 0.1, noise: 1.1337),
            .fixedSizeSampledGaussian(sampleSize: 10, populationSize: 97, noise: 0.7),
            .gaussian(noise: 3),
        ] {
            #expect(PrivacyLedger.event(named: PrivacyLedger.name(of: event)) == event)
        }
        let dp = DifferentialPrivacy(noiseMultiplier: 1, sampling: .fixed, population: 10)
        #expect(throws: PrivacyError.self) {
            try PrivacyLedger(dp, scalars: ["privacy.event.poisson:0.1:1.0": 3])
        }
        #expect(throws: PrivacyError.self) { try PrivacyLedger(dp, scalars: ["privacy.event.laplace:1": 1]) }
    }
}
