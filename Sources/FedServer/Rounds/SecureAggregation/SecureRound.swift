import FedCodec
import FedSecureAggregation

/// The server's state of one secure round (`Protocol/SPEC.md` section
/// 12.11): a state machine fed by the cohort's `SECAGG_*` requests and the
/// stages' deadlines, returning what to answer. It never holds a client's
/// input apart from the others: each masked input is added to the running
/// ``MaskedSum`` as it arrives, and only the unmasked sum of the contributors
/// is decoded.
///
/// Stages: keys (U1: the clients that advertised keys), shares (U2: those
/// that sealed a bundle to every neighbour on their roster), input (U3: the
/// masked inputs summed), with the consistency check (``identities``) a
/// consistency stage in which U3's members sign it
/// (`SecureRound+Consistency.swift`), unmask. A request of a stage that has closed, or
/// from a client outside the stage's set, is refused; a repeated request of
/// the open stage (a retry) waits for the same answer.
struct SecureRound {
    typealias Answer = @Sendable (Result<Message, ErrorMessage>) -> Void

    enum Stage: Int, Comparable {
        case keys, shares, input, consistency, unmask
        static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }
    }

    /// What a step asks the coordinator to do.
    enum Outcome {
        /// Nothing more: the request waits for its stage to close.
        case wait
        /// The round cannot complete: abandon it with this reason.
        case abandon(String)
        /// The sum is unmasked: apply `mean` (the weighted mean of the
        /// clipped updates, flattened) with `weight` samples from `contributors` inputs.
        case unmasked(mean: [Double], weight: Int, contributors: Int)
    }

    let round: UInt64
    let threshold: Int
    /// The fewest inputs the round takes (max of t and the round's minimum of reports).
    let minimumInputs: Int
    let encoding: FixedPointEncoding
    let elementBytes: Int
    /// Participant ids by task id, 1...n.
    let ids: [UInt64: UInt32]
    /// The cohort's graph, by participant id.
    let graph: [UInt32: [UInt32]]
    /// Called with the number of inputs in every sum decoded (tests).
    let decoded: (@Sendable (Int) -> Void)?
    /// With differential privacy: the noise the clients add.
    var distributedNoise: DistributedNoise?
    /// The consistency check's cohort and trusted keys; nil in a round without it.
    let identities: SecureRoundIdentities?

    var stage = Stage.keys
    var keys: [UInt32: ParticipantPublicKeys] = [:]
    var keyMessages: [UInt32: SecAggKeys] = [:]
    /// Each participant's signature of its keys (the consistency check).
    var keySignatures: [UInt32: [UInt8]] = [:]
    /// Each survivor's signature of U3 (the consistency check).
    var consistencySignatures: [UInt32: [UInt8]] = [:]
    var rosters: [UInt32: SecAggRoster] = [:]
    /// Sender -> recipient -> sealed bundle: the keys are U2.
    private var sealed: [UInt32: [UInt32: [UInt8]]] = [:]
    private var maskingNeighbours: [UInt32: [UInt32]] = [:]
    private var sum: MaskedSum
    private var revealedBy: [UInt32: SecAggUnmask] = [:]
    private var selfMaskSeedShares: [UInt32: [SecretShare]] = [:]
    private var maskingKeyShares: [UInt32: [SecretShare]] = [:]
    /// Answers waiting for the open stage to close, by participant.
    var waiting: [UInt32: [Answer]] = [:]
    /// Clients that advertised keys (U1).
    var advertised: Int { keys.count }
    /// Clients that shared keys (U2).
    var shared: Int { sealed.count }
    /// Clients whose masked input is in the sum.
    var contributors: Set<UInt32> { sum.contributors }

    init(
        round: UInt64, threshold: Int, minimumInputs: Int, encoding: FixedPointEncoding, elementBytes: Int,
        dimension: Int, ids: [UInt64: UInt32], graph: [UInt32: [UInt32]], decoded: (@Sendable (Int) -> Void)?,
        identities: SecureRoundIdentities? = nil
    ) {
        self.identities = identities
        self.round = round
        self.threshold = threshold
        self.minimumInputs = minimumInputs
        self.encoding = encoding
        self.elementBytes = elementBytes
        self.ids = ids
        self.graph = graph
        self.decoded = decoded
        self.sum = MaskedSum(ring: encoding.ring, count: encoding.encodedCount(dimension: dimension))
    }

    /// The task ids whose input is in the sum: the ones a closed round acknowledges.
    var contributingTasks: Set<UInt64> { Set(ids.filter { contributors.contains($0.value) }.keys) }

    /// Every answer still waiting (to refuse them all when the round is abandoned).
    mutating func takeWaiting() -> [Answer] {
        defer { waiting = [:] }
        return waiting.values.flatMap { $0 }
    }

    static func refusal(_ code: ErrorCode, _ message: String) -> Result<Message, ErrorMessage> {
        .failure(ErrorMessage(code: code, message: message))
    }

    mutating func hold(_ id: UInt32, _ answer: @escaping Answer) { waiting[id, default: []].append(answer) }

    // MARK: Requests

    /// A request of task `taskID` (already known to belong to this round and its client).
    mutating func receive(_ message: AnyProtocolMessage, taskID: UInt64, answer: @escaping Answer) -> Outcome {
        guard let id = ids[taskID] else { return .wait }
        if let m = message.as(SecAggKeys.self) {
            guard identities == nil else {
                answer(
                    Self.refusal(.unexpectedMessage, "this round runs the consistency check: send SECAGG_SIGNED_KEYS"))
                return .wait
            }
            return advertise(m, id, answer)
        }
        if let m = message.as(SecAggSignedKeys.self) { return advertiseSigned(m, id, answer) }
        if let m = message.as(SecAggConsistency.self) { return signContributors(m, id, answer) }
        if let m = message.as(SecAggShares.self) { return share(m, id, answer) }
        if let m = message.as(SecAggInput.self) { return input(m, id, answer) }
        if let m = message.as(SecAggUnmask.self) { return reveal(m, id, answer) }
        answer(Self.refusal(.unexpectedMessage, "not a request of secure aggregation"))
        return .wait
    }

    mutating func outOfStage(_ what: String, _ answer: Answer) -> Outcome {
        answer(Self.refusal(.unexpectedMessage, "\(what) does not belong to the stage open (\(stage))"))
        return .wait
    }

    mutating func advertise(_ m: SecAggKeys, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard stage == .keys else { return outOfStage("SECAGG_KEYS", answer) }
        if let earlier = keyMessages[id] {
            guard earlier.encryptionKey == m.encryptionKey && earlier.maskingKey == m.maskingKey else {
                answer(Self.refusal(.unexpectedMessage, "keys were already advertised for this task"))
                return .wait
            }
        } else {
            guard m.encryptionKey != m.maskingKey,
                let publicKeys = try? ParticipantPublicKeys(encryption: m.encryptionKey, masking: m.maskingKey)
            else {
                answer(Self.refusal(.malformedPayload, "the two public keys must differ"))
                return .wait
            }
            keys[id] = publicKeys
            keyMessages[id] = m
        }
        hold(id, answer)
        return keys.count == ids.count ? closeKeys() : .wait
    }

    private mutating func share(_ m: SecAggShares, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard stage == .shares, let roster = rosters[id] else { return outOfStage("SECAGG_SHARES", answer) }
        guard m.bundles.map(\.participant) == roster.neighbours.map(\.id) else {
            answer(
                Self.refusal(.malformedPayload, "one bundle is needed for each neighbour of the roster, and no other"))
            return .wait
        }
        let bundles = Dictionary(uniqueKeysWithValues: m.bundles.map { ($0.participant, $0.sealed) })
        if let earlier = sealed[id], earlier != bundles {
            answer(Self.refusal(.unexpectedMessage, "shares were already sent for this task"))
            return .wait
        }
        sealed[id] = bundles
        hold(id, answer)
        return sealed.count == rosters.count ? closeShares() : .wait
    }

    private mutating func input(_ m: SecAggInput, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard stage == .input, sealed[id] != nil else { return outOfStage("SECAGG_INPUT", answer) }
        if contributors.contains(id) {
            // A retry: the input counts once.
            hold(id, answer)
            return .wait
        }
        guard m.elementBytes == elementBytes, m.values.count == sum.count else {
            answer(
                Self.refusal(
                    .shapeMismatch,
                    "a masked input must be \(sum.count) elements of \(elementBytes) bytes (got \(m.values.count) of \(m.elementBytes))"
                ))
            return .wait
        }
        guard m.values.allSatisfy({ $0 <= encoding.ring.mask }) else {
            answer(Self.refusal(.malformedPayload, "a masked input element beyond the \(encoding.ring.bits)-bit ring"))
            return .wait
        }
        do {
            try sum.add(maskedInput: m.values, from: id)
        } catch {
            answer(Self.refusal(.unexpectedMessage, "\(error)"))
            return .wait
        }
        hold(id, answer)
        return contributors.count == sealed.count ? closeInputs() : .wait
    }

    private mutating func reveal(_ m: SecAggUnmask, _ id: UInt32, _ answer: @escaping Answer) -> Outcome {
        guard stage == .unmask, contributors.contains(id), identities == nil || consistencySignatures[id] != nil else {
            return outOfStage("SECAGG_UNMASK", answer)
        }
        if let earlier = revealedBy[id] {
            guard earlier.shares == m.shares else {
                answer(Self.refusal(.unexpectedMessage, "shares were already revealed for this task"))
                return .wait
            }
            hold(id, answer)
            return .wait
        }
        // Exactly one share per masking neighbour, of the kind its fate calls for.
        let expected = maskingNeighbours[id] ?? []
        guard m.shares.map(\.owner) == expected else {
            answer(Self.refusal(.malformedPayload, "one share is needed for each masking neighbour, and no other"))
            return .wait
        }
        var parsed: [(UInt32, Bool, SecretShare)] = []
        for s in m.shares {
            let wantSeed = contributors.contains(s.owner)
            guard (s.kind == .selfMaskSeed) == wantSeed else {
                answer(
                    Self.refusal(
                        .malformedPayload,
                        "the share of \(s.owner) must be of its \(wantSeed ? "self-mask seed" : "masking key")"))
                return .wait
            }
            guard let share = try? SecretShare(encoded: s.share), share.x == id, share.secretByteCount == 32 else {
                answer(Self.refusal(.malformedPayload, "the share of \(s.owner) is not a share held by \(id)"))
                return .wait
            }
            parsed.append((s.owner, wantSeed, share))
        }
        for (owner, isSeed, share) in parsed {
            if isSeed {
                selfMaskSeedShares[owner, default: []].append(share)
            } else {
                maskingKeyShares[owner, default: []].append(share)
            }
        }
        revealedBy[id] = m
        hold(id, answer)
        return unmaskIfComplete()
    }

    // MARK: Stages closing

    /// The keys stage's timeout, or every client advertised.
    mutating func closeKeys() -> Outcome {
        guard stage == .keys else { return .wait }
        stage = .shares
        let answers = waiting
        waiting = [:]
        if keys.count < max(minimumInputs, threshold + 1) {
            refuseAll(answers, "\(keys.count) clients advertised keys, too few for the round")
            return .abandon(
                "\(keys.count) clients advertised keys; the round needs \(max(minimumInputs, threshold + 1))")
        }
        for (id, pending) in answers {
            let neighbours = (graph[id] ?? []).filter { keys[$0] != nil }
            guard neighbours.count >= threshold else {
                for a in pending {
                    a(
                        Self.refusal(
                            .roundClosed,
                            "\(neighbours.count) of your neighbours advertised keys, fewer than the threshold \(threshold); check in for a new task"
                        ))
                }
                continue
            }
            let roster = SecAggRoster(
                taskID: keyMessages[id]!.taskID, participant: id,
                neighbours: neighbours.map {
                    SecAggRoster.Neighbour(id: $0, encryptionKey: keys[$0]!.encryption, maskingKey: keys[$0]!.masking)
                })
            rosters[id] = roster
            let relayed = identities == nil ? AnyProtocolMessage(roster) : AnyProtocolMessage(signedRoster(roster))
            for a in pending { a(.success(.other(relayed))) }
        }
        return rosters.count < max(minimumInputs, threshold + 1)
            ? .abandon("\(rosters.count) clients could take part after the keys stage, too few") : .wait
    }

    /// The shares stage's timeout, or every client with a roster shared.
    mutating func closeShares() -> Outcome {
        guard stage == .shares else { return .wait }
        stage = .input
        let answers = waiting
        waiting = [:]
        let shared = Set(sealed.keys)
        if shared.count < minimumInputs {
            refuseAll(answers, "\(shared.count) clients shared keys, too few for the round")
            return .abandon("\(shared.count) clients shared keys; the round needs \(minimumInputs)")
        }
        for id in shared {
            maskingNeighbours[id] = rosters[id]!.neighbours.map(\.id).filter(shared.contains)
            // Fewer than t holders of its shares: its secrets could not be rebuilt if it dropped.
            if maskingNeighbours[id]!.count < threshold {
                refuseAll(answers, "a client has fewer than t neighbours that shared keys")
                return .abandon(
                    "client \(id) has \(maskingNeighbours[id]!.count) neighbours that shared keys, fewer than t = \(threshold)"
                )
            }
        }
        for (id, pending) in answers {
            let inbox = SecAggInbox(
                taskID: rosters[id]!.taskID,
                bundles: maskingNeighbours[id]!.map { SealedShares(participant: $0, sealed: sealed[$0]![id]!) })
            for a in pending { a(.success(.other(AnyProtocolMessage(inbox)))) }
        }
        return .wait
    }

    /// The round's deadline, or every client that shared sent its input.
    mutating func closeInputs() -> Outcome {
        guard stage == .input else { return .wait }
        stage = identities == nil ? .unmask : .consistency
        let answers = waiting
        waiting = [:]
        if contributors.count < minimumInputs {
            refuseAll(answers, "\(contributors.count) masked inputs arrived, too few for the round")
            return .abandon("\(contributors.count) masked inputs arrived; the round needs \(minimumInputs)")
        }
        if identities != nil {
            // The consistency check: every survivor is sent U3, whole, to sign.
            let u3 = contributors.sorted()
            for (id, pending) in answers {
                let message = SecAggContributors(taskID: rosters[id]!.taskID, contributors: u3)
                for a in pending { a(.success(.other(AnyProtocolMessage(message)))) }
            }
            return .wait
        }
        for (id, pending) in answers {
            let survivors = SecAggSurvivors(
                taskID: rosters[id]!.taskID, contributors: UInt32(contributors.count),
                survivors: maskingNeighbours[id]!.filter(contributors.contains))
            for a in pending { a(.success(.other(AnyProtocolMessage(survivors)))) }
        }
        return .wait
    }

    /// The unmask stage's timeout: the shares at hand do not rebuild every secret.
    mutating func unmaskTimedOut() -> Outcome {
        guard stage == .unmask else { return .wait }
        return .abandon(
            "the revealed shares did not rebuild every secret the sum needs before the unmask stage's timeout")
    }

    private mutating func unmaskIfComplete() -> Outcome {
        let unmasking = CohortUnmasking(
            round: round, threshold: threshold, maskingKeys: keys.mapValues(\.masking),
            maskingNeighbours: maskingNeighbours)
        guard
            unmasking.isComplete(
                contributors: contributors, selfMaskSeedShares: selfMaskSeedShares, maskingKeyShares: maskingKeyShares)
        else { return .wait }
        var total = sum
        do {
            try unmasking.unmask(
                &total, selfMaskSeedShares: selfMaskSeedShares, maskingKeyShares: maskingKeyShares)
            decoded?(total.contributors.count)
            let (mean, weight) = try encoding.decode(total.total, summands: total.contributors.count)
            return .unmasked(mean: mean, weight: weight, contributors: total.contributors.count)
        } catch {
            return .abandon("the sum could not be unmasked: \(error)")
        }
    }

    func refuseAll(_ answers: [UInt32: [Answer]], _ reason: String) {
        for a in answers.values.flatMap({ $0 }) {
            a(Self.refusal(.roundClosed, "\(reason); check in for a new task"))
        }
    }
}
