/// `--secagg t=..,k=..,bits=..,clip=..,stage=..` (`fed server`, `fed simulate`).
extension SecureAggregation {
    /// What `--secagg` accepts, for `--help`.
    public static let specHelp =
        "KEY=VALUE pairs, all optional (give `on` for the defaults): t, the shares that rebuild a client's secrets (default floor(k/2)+1: an active server cannot then collect both kinds of shares of one client); k, each client's neighbours (default n-1 up to 99, n the clients selected; n-1 is the original SecAgg); bits, the ring's width, 2-32 (default 32; 16 halves the bytes of a masked input at a coarser resolution); clip, the L2 norm each update is clipped to on its client (default 10); stage, the seconds each of the keys, shares and unmask stages waits (default 10); w, the largest sample count an update carries (default --max-update-samples; a client with more counts for w; a w near the clients' typical count gives the fixed point a finer resolution); consistency=on, the consistency check with signatures (Bonawitz et al.'s active-security version: needs the clients' public keys, --secagg-identities FILE; default t floor(n/2)+1, and 2t > n is required). A round fails, and is selected anew, when a client has fewer than t neighbours answering: `fed bench secagg --n N --k K --t T --dropout D` prints that probability."

    /// The configuration `spec` describes.
    ///
    /// - Throws: a message naming the key that is wrong.
    public init(spec: String) throws(SecureAggregationSpecError) {
        self.init()
        if spec == "on" { return }
        var seen: Set<String> = []
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw SecureAggregationSpecError("\(item): give KEY=VALUE")
            }
            let (key, text) = (parts[0], parts[1])
            guard seen.insert(key).inserted else { throw SecureAggregationSpecError("\(key) given twice") }
            func integer() throws(SecureAggregationSpecError) -> Int {
                guard let v = Int(text), v >= 1 else {
                    throw SecureAggregationSpecError("\(key)=\(text): give a whole number >= 1")
                }
                return v
            }
            func number() throws(SecureAggregationSpecError) -> Double {
                guard let v = Double(text), v.isFinite, v > 0 else {
                    throw SecureAggregationSpecError("\(key)=\(text): give a positive number")
                }
                return v
            }
            switch key {
            case "t": threshold = try integer()
            case "k": neighbours = try integer()
            case "bits": bits = try integer()
            case "clip": clip = try number()
            case "stage": stageTimeout = .milliseconds(Int64(try number() * 1_000))
            case "w": maximumWeight = try integer()
            case "consistency":
                guard text == "on" || text == "off" else {
                    throw SecureAggregationSpecError("consistency=\(text): give on or off")
                }
                consistency = text == "on"
            default:
                throw SecureAggregationSpecError(
                    "unknown key \(key); the keys are bits, clip, consistency, k, stage, t, w")
            }
        }
    }
}

/// Why a `--secagg` specification was refused.
public struct SecureAggregationSpecError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
