import ArgumentParser
import FedPrivacy
import Foundation

extension Fed {
    struct PrivacyCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "privacy", abstract: "Differential privacy accounting.", subcommands: [Epsilon.self])
    }
}

extension Fed.PrivacyCommand {
    struct Epsilon: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The (epsilon, delta) of training with the sampled Gaussian mechanism.",
            discussion: """
                Each of --steps rounds samples records (or clients), clips each one's contribution to \
                an L2 norm C, sums them and adds Gaussian noise of standard deviation --noise x C. \
                This prints the smallest epsilon such that the whole run is (epsilon, --delta)-\
                differentially private, the RDP order that gave it and the sampling assumed, so the \
                number can be checked against another accountant (Google's dp-accounting gives the \
                same with its RdpAccountant and default orders).

                --sampling poisson (the default): each record joins a round independently with \
                probability --sampling-rate (add-or-remove-one neighbours; Mironov, Talwar, Zhang 2019).

                --sampling fixed: exactly --sampling-rate x --population records (rounded), drawn \
                without replacement (replace-one neighbours; Wang, Balle, Kasiviswanathan 2019).

                --sampling none: every record in every round, no amplification (--sampling-rate, \
                if given, must be 1).

                --accountant rdp (the default): Renyi differential privacy over dp-accounting's \
                orders (1.1 to 10.9 by 0.1, 11 to 63, 128, 256, 512, 1024), converted to epsilon \
                with the bound of Canonne, Kamath, Steinke 2020. --accountant pld (privacy loss \
                distributions, tighter) is not built yet.

                Example, 1,000 rounds, each client taking part with probability 1%, noise 1.1, \
                delta 1e-5 (the default): epsilon 1.7117702 at order 9.6.

                  fed privacy epsilon --sampling-rate 0.01 --noise 1.1 --steps 1000
                """
        )

        @Option(
            help:
                "Probability that a record takes part in a round, in (0, 1] (fixed: the share of the population sampled)."
        )
        var samplingRate: Double?
        @Option(help: "Noise multiplier z: the Gaussian noise's standard deviation over the clipping norm (>= 0).")
        var noise: Double
        @Option(help: "Number of rounds (steps) composed, at least 1.") var steps: Int
        @Option(help: "Target delta, in (0, 1); 1/population or less is customary.") var delta = 1e-5
        @Option(help: "How records are sampled each round: poisson, fixed or none.") var sampling = "poisson"
        @Option(help: "Number of records sampled from (--sampling fixed only).") var population: Int?
        @Option(help: "rdp (pld is not built yet).") var accountant = "rdp"

        func validate() throws {
            guard ["poisson", "fixed", "none"].contains(sampling) else {
                throw ValidationError("--sampling is poisson, fixed or none (got \(sampling))")
            }
            guard accountant == "rdp" || accountant == "pld" else {
                throw ValidationError("--accountant is rdp or pld (got \(accountant))")
            }
            guard accountant == "rdp" else {
                throw ValidationError("--accountant pld is not built yet; use --accountant rdp")
            }
            if let q = samplingRate, !(q > 0 && q <= 1) {
                throw ValidationError("--sampling-rate must be in (0, 1] (got \(q))")
            }
            if sampling != "none" && samplingRate == nil {
                throw ValidationError("--sampling \(sampling) needs --sampling-rate")
            }
            if sampling == "none", let q = samplingRate, q != 1 {
                throw ValidationError("--sampling none samples every record: --sampling-rate must be 1 or absent")
            }
            guard noise >= 0, noise.isFinite else {
                throw ValidationError("--noise must be a finite number >= 0 (got \(noise))")
            }
            guard steps >= 1 else { throw ValidationError("--steps must be at least 1 (got \(steps))") }
            guard delta > 0 && delta < 1 else { throw ValidationError("--delta must be in (0, 1) (got \(delta))") }
            if sampling == "fixed" {
                guard let population else { throw ValidationError("--sampling fixed needs --population N") }
                guard population >= 1 else {
                    throw ValidationError("--population must be at least 1 (got \(population))")
                }
                let size = sampleSize(population)
                guard size >= 1 else {
                    throw ValidationError(
                        "--sampling-rate x --population is \(samplingRate! * Double(population)): less than one record")
                }
            } else if population != nil {
                throw ValidationError("--population is for --sampling fixed")
            }
        }

        /// The fixed sample size: `--sampling-rate × --population`, rounded to the nearest record.
        func sampleSize(_ population: Int) -> Int { Int(((samplingRate ?? 1) * Double(population)).rounded()) }

        func run() throws {
            let event: DPEvent
            let described: String
            switch sampling {
            case "fixed":
                let population = population!
                let size = sampleSize(population)
                event = .fixedSizeSampledGaussian(sampleSize: size, populationSize: population, noise: noise)
                described = "fixed, \(size) of \(population) without replacement (replace-one neighbours)"
            case "none":
                event = .gaussian(noise: noise)
                described = "none, every record in every step (no amplification)"
            default:
                event = .poissonSampledGaussian(samplingRate: samplingRate!, noise: noise)
                described = "poisson, rate \(samplingRate!) (add-or-remove-one neighbours)"
            }
            var accountant = RDPAccountant()
            do {
                try accountant.compose(event, count: steps)
            } catch {
                throw ValidationError(error.message)
            }
            let (epsilon, order) = accountant.epsilon(delta: delta)
            print("epsilon: \(String(format: "%.8g", epsilon))")
            print("delta: \(delta)")
            print(epsilon.isFinite ? "order: \(order)" : "order: none (no order gives a finite bound; is --noise 0?)")
            print("sampling: \(described)")
            print("noise multiplier: \(noise)")
            print("steps: \(steps)")
            print("accountant: rdp (\(accountant.orders.count) orders, dp-accounting's defaults)")
        }
    }
}

/// Why `--dp DP` and `--secagg SECAGG` cannot go together as given, or nil:
/// `survivors=` is distributed noise's and needs `--secagg`; under `--dp` the
/// clients clip to the privacy's clip and weigh 1, so `--secagg clip=` and
/// `w=` would be ignored.
func distributedNoiseConflict(dp: String?, secagg: String?) -> String? {
    func keys(_ spec: String?) -> Set<String> {
        Set((spec ?? "").split(separator: ",").compactMap { $0.split(separator: "=").first.map(String.init) })
    }
    if secagg == nil, keys(dp).contains("survivors") {
        return "--dp survivors= applies to distributed noise: give --secagg too, or drop it"
    }
    if dp != nil, let given = ["clip", "w"].first(where: keys(secagg).contains) {
        return
            "--secagg \(given)= does not apply with --dp: the clients clip to the privacy's clip (--dp clip=) and each weighs 1"
    }
    return nil
}
