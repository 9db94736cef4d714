import FedCodec
import FedTestSupport
import Testing

@testable import FedServer

/// The federation core without any transport: each rule is checked by calling
/// the service as an adapter would.
@Suite("Federation core")
struct FederationServiceTests {
    @Test(
        "HELLO agrees on the highest common version, or refuses with unsupported_version",
        arguments: [
            (UInt8(1), UInt8(1), UInt8?.some(1)), (1, 3, 3), (2, 9, 4), (3, 3, 3), (4, 9, 4), (5, 9, nil), (0, 0, nil),
        ])
    func helloVersions(low: UInt8, high: UInt8, agreed: UInt8?) throws {
        let f = try ServiceFixture()
        switch f.service.hello(Hello(minVersion: low, maxVersion: high, compressions: 0b011, clientID: "a")) {
        case .accepted(let session, let welcome):
            #expect(agreed == welcome.version && session.version == welcome.version)
            #expect(welcome.compressions == 0b011 && session.clientID == "a")
        case .refused(let error):
            #expect(agreed == nil && error.code == .unsupportedVersion)
        }
    }

    @Test(
        "Tokens: any token without a configured one; otherwise exactly a configured one",
        arguments: [
            ([String](), "", true), ([], "x", true), (["secret"], "secret", true), (["secret"], "", false),
            (["secret"], "secre", false), (["secret"], "secret2", false), (["a", "bb"], "bb", true),
            (["a", "bb"], "b", false),
        ])
    func tokens(configured: [String], given: String, accepted: Bool) throws {
        let f = try ServiceFixture { $0.security.authTokens = Set(configured) }
        #expect(f.service.isAuthorized(token: given) == accepted)
        let outcome = f.service.hello(Hello(clientID: "a", authToken: given))
        if case .refused(let e) = outcome {
            #expect(!accepted && e.code == .unauthorized)
        } else {
            #expect(accepted)
        }
        #expect(f.service.isAuthorized(token: nil) == configured.isEmpty)
    }

    @Test("A push is applied once: its idempotency key replays the ACK, the model moves once")
    func idempotentPush() throws {
        let f = try ServiceFixture()
        let request = FederationService.PushRequest(tensors: ServiceFixture.tensors(1), datasets: 5, pushID: 7)
        let first = try f.push(request, as: ServiceFixture.session()).get()
        let again = try f.push(request, as: ServiceFixture.session()).get()
        #expect(first.version == 1 && !first.replayed)
        #expect(again.version == 1 && again.replayed)
        #expect(f.store.snapshot().version == 1 && f.store.snapshot().datasets == 5)
        // The same number from another client is another push.
        let other = try f.push(request, as: ServiceFixture.session("d")).get()
        #expect(other.version == 2 && !other.replayed)
        #expect(f.budget.used == 0)
    }

    @Test("While draining, a push is refused with shutting_down and nothing is submitted")
    func drainingRefusesPushes() throws {
        let f = try ServiceFixture()
        f.lifecycle.startDraining()
        let result = f.push(.init(tensors: ServiceFixture.tensors(1), datasets: 1), as: ServiceFixture.session())
        guard case .failure(let e) = result else { throw TestError("a push was taken while draining") }
        #expect(e.code == .shuttingDown)
        #expect(f.store.snapshot().version == 0 && f.committer.isIdle && f.budget.used == 0)
    }

    @Test("A push the memory budget cannot hold is refused with overloaded; one that fits is released after its commit")
    func pushBudget() throws {
        // 9 floats = 36 B: a request may hold 5/8 of the limit.
        let tight = try ServiceFixture(budgetBytes: 48)
        let refused = tight.push(.init(tensors: ServiceFixture.tensors(1), datasets: 1), as: ServiceFixture.session())
        guard case .failure(let e) = refused else { throw TestError("a push beyond the budget was taken") }
        #expect(e.code == .overloaded && tight.store.snapshot().version == 0)
        let roomy = try ServiceFixture(budgetBytes: 64)
        let ack = try roomy.push(.init(tensors: ServiceFixture.tensors(1), datasets: 1), as: ServiceFixture.session())
            .get()
        #expect(ack.version == 1 && roomy.budget.used == 0)
    }

    @Test("A push in a compression the session did not agree on is refused before it is submitted")
    func compressionNotAgreed() throws {
        let f = try ServiceFixture()
        var session = ServiceFixture.session()
        session.compressions = .uncompressed
        let result = f.push(
            .init(tensors: ServiceFixture.tensors(1), datasets: 1, compression: .zlib), as: session)
        guard case .failure(let e) = result else { throw TestError("taken") }
        #expect(e.code == .unsupportedCompression && f.store.snapshot().version == 0)
    }

    @Test("A rejected update comes back as its ERROR and leaves the model as it was")
    func rejectedUpdate() throws {
        let f = try ServiceFixture()
        var bad = ServiceFixture.tensors(1)
        bad[0] = try Tensor(shape: [2, 3], values: [1, 2, .nan, 4, 5, 6])
        let result = f.push(.init(tensors: bad, datasets: 1), as: ServiceFixture.session())
        guard case .failure(let e) = result else { throw TestError("a NaN was applied") }
        #expect(e.code == .nonFiniteValue)
        #expect(f.store.snapshot().version == 0 && f.budget.used == 0)
    }

    @Test("FETCH: unchanged for the current version, the whole model otherwise, in an agreed compression only")
    func fetchAnswers() throws {
        let f = try ServiceFixture()
        var session = ServiceFixture.session(version: 1)
        session.compressions = [.uncompressed, .zlib]
        guard
            case .model(let m, let compression) = f.service.fetch(
                held: 0, wanted: .shuffleZlib, deltaEncodings: [], session: session)
        else { throw TestError("no model") }
        #expect(m.version == 0 && compression == .none)
        _ = try f.push(.init(tensors: ServiceFixture.tensors(1), datasets: 3), as: session).get()
        guard
            case .unchanged(let v, let datasets) = f.service.fetch(
                held: 1, wanted: .zlib, deltaEncodings: [], session: session)
        else { throw TestError("no MODEL_UNCHANGED") }
        #expect(v == 1 && datasets == 3)
        guard case .model(_, .zlib) = f.service.fetch(held: 0, wanted: .zlib, deltaEncodings: [], session: session)
        else { throw TestError("zlib was agreed") }
    }

    @Test("FETCH from a retained version by a version-3 client that accepts the steps' encoding: MODEL_DELTA")
    func fetchSteps() throws {
        let f = try ServiceFixture(deltaEncoding: .int8) { $0.aggregation.maxStaleness = 4 }
        for v: Float in [1, 2] {
            _ = try f.push(.init(tensors: ServiceFixture.tensors(v), datasets: 1), as: ServiceFixture.session())
                .get()
        }
        let v3 = ServiceFixture.session(version: 3)
        if case .steps(let m, let from, let blobs) = f.service.fetch(
            held: 1, wanted: .none, deltaEncodings: .int8, session: v3)
        {
            #expect(m.version == 2 && from == 1 && blobs.count == 1)
        } else {
            // A 9-weight model's steps are not always smaller than its MODEL; then the MODEL it is.
            guard
                case .model(let m, _) = f.service.fetch(
                    held: 1, wanted: .none, deltaEncodings: .int8, session: v3)
            else { throw TestError("neither steps nor a model") }
            #expect(m.version == 2)
        }
        // Version 2 never gets steps, nor a client that does not accept their encoding.
        guard
            case .model = f.service.fetch(
                held: 1, wanted: .none, deltaEncodings: .int8,
                session: ServiceFixture.session(version: 2)
            )
        else { throw TestError("steps for version 2") }
        guard case .model = f.service.fetch(held: 1, wanted: .none, deltaEncodings: [], session: v3)
        else { throw TestError("steps the client did not accept") }
    }

    @Test("An answer is held in the budget until written; one beyond it is refused with overloaded")
    func answerHolds() throws {
        let f = try ServiceFixture(budgetBytes: 1000)
        guard case .success(let hold) = f.service.holdAnswer(bytes: 800, kind: .fetch) else {
            throw TestError("refused")
        }
        #expect(f.budget.used == 800)
        guard case .failure(let e) = f.service.holdAnswer(bytes: 300, kind: .other) else {
            throw TestError("held beyond the budget")
        }
        #expect(e.code == .overloaded)
        hold.written()
        #expect(f.budget.used == 0)
    }

    @Test("Every request and error an adapter reports is counted once in /metrics")
    func metricsCounted() throws {
        let f = try ServiceFixture()
        f.service.record(.request(.binary, "fetch"))
        f.service.record(.request(.binary, "fetch"))
        f.service.record(.request(.http, "push"))
        f.service.record(.answeredError(.shapeMismatch))
        let text = f.context.renderMetrics()
        #expect(text.contains("fed_requests_total{protocol=\"binary\",kind=\"fetch\"} 2"))
        #expect(text.contains("fed_requests_total{protocol=\"http\",kind=\"push\"} 1"))
        #expect(text.contains("fed_errors_total{code=\"shape_mismatch\"} 1"))
    }

    @Test("Secrets are compared byte for byte whatever their lengths")
    func constantTimeEquality() {
        #expect(ConstantTime.equal([], []))
        #expect(ConstantTime.equal([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2]))
        #expect(!ConstantTime.equal([1, 2], [1, 2, 3]))
        // Lengths differing by a multiple of 256 must not compare equal either.
        #expect(!ConstantTime.equal([UInt8](repeating: 0, count: 256), []))
    }
}
