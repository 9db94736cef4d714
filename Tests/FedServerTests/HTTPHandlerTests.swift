import FedCodec
import FedTestSupport
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import FedServer

/// The HTTP connection handler in an `EmbeddedChannel`: request parts in,
/// response parts out, no socket. Routes parsed off the event loop (the
/// original's form protocol) use a `NIOAsyncTestingChannel`.
@Suite("HTTP handler in an embedded channel")
struct HTTPHandlerTests {
    struct Response {
        var head: HTTPResponseHead
        var body: String
        var closed: Bool
    }

    static func channel(_ f: ServiceFixture) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        let gate = HTTPRequestGate(context: f.context)
        try channel.pipeline.syncOperations.addHandler(gate)
        try channel.pipeline.syncOperations.addHandler(HTTPConnectionHandler(context: f.context, gate: gate))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        return channel
    }

    static func request(
        _ channel: EmbeddedChannel, _ method: HTTPMethod, _ uri: String, headers: [(String, String)] = []
    ) throws -> Response {
        try channel.writeInbound(
            HTTPServerRequestPart.head(
                HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: .init(headers))))
        try channel.writeInbound(HTTPServerRequestPart.end(nil))
        channel.embeddedEventLoop.run()
        guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            throw TestError("no response head")
        }
        var body = ""
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
            if case .body(.byteBuffer(let b)) = part { body += String(buffer: b) }
        }
        return Response(head: head, body: body, closed: !channel.isActive)
    }

    @Test("GET /metrics: 200, the exposition text, and the connection stays open")
    func metrics() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        let r = try Self.request(channel, .GET, "/metrics")
        #expect(r.head.status == .ok && !r.closed)
        #expect(r.body.contains("fed_model_version 0"))
        #expect(r.body.contains("fed_requests_total{protocol=\"http\",kind=\"metrics\"} 1"))
        _ = try channel.finish()
    }

    @Test("A cross-origin request is refused with 403 before its body, and the connection closes")
    func origin() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        let r = try Self.request(channel, .GET, "/metrics", headers: [("Origin", "https://evil.example")])
        #expect(r.head.status == .forbidden && r.closed)
        #expect(r.body.contains("unauthorized"))
    }

    @Test(
        "With tokens, a request needs a configured bearer token",
        arguments: [("", HTTPResponseStatus.unauthorized), ("Bearer nope", .unauthorized), ("Bearer right", .ok)])
    func bearer(authorization: String, status: HTTPResponseStatus) throws {
        let f = try ServiceFixture { $0.security.authTokens = ["right"] }
        let channel = try Self.channel(f)
        let headers = authorization.isEmpty ? [] : [("Authorization", authorization)]
        let r = try Self.request(channel, .GET, "/v1/model", headers: headers)
        #expect(r.head.status == status)
        if status == .unauthorized { #expect(r.head.headers.first(name: "www-authenticate") == "Bearer" && r.closed) }
    }

    @Test("GET /v1/model: ETag of the version, 304 on a match, 404 for a version not held")
    func modelResource() throws {
        let f = try ServiceFixture()
        let channel = try Self.channel(f)
        let first = try Self.request(channel, .GET, "/v1/model")
        #expect(first.head.status == .ok && first.head.headers.first(name: "etag") == "\"v0\"")
        #expect(first.head.headers.first(name: "content-location") == "/v1/model/0")
        let again = try Self.request(channel, .GET, "/v1/model", headers: [("If-None-Match", "W/\"v0\"")])
        #expect(again.head.status == .notModified && again.body.isEmpty)
        let missing = try Self.request(channel, .GET, "/v1/model/7")
        #expect(missing.head.status == .notFound && missing.closed)
        #expect(f.budget.used == 0)
    }

    @Test("The original's form push: 200 Success after the commit, then its fetch shows the update")
    func legacyPushAndFetch() async throws {
        let f = try ServiceFixture()
        let channel = NIOAsyncTestingChannel()
        let context = f.context
        try await channel.testingEventLoop.executeInContext {
            let gate = HTTPRequestGate(context: context)
            try channel.pipeline.syncOperations.addHandler(gate)
            try channel.pipeline.syncOperations.addHandler(HTTPConnectionHandler(context: context, gate: gate))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))
        let weights = "[[[1,1,1],[1,1,1]],[1,1,1]]"
        let form = "id=h&send=True&datasets=3&weights=\(weights.addingPercentEncodingForForm)"
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")
        head.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        head.headers.add(name: "Content-Length", value: "\(form.utf8.count)")
        try await channel.writeInbound(HTTPServerRequestPart.head(head))
        try await channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: form)))
        try await channel.writeInbound(HTTPServerRequestPart.end(nil))
        let pushed = try await Self.response(channel)
        #expect(pushed.head.status == .ok && pushed.body == "Success")
        #expect(f.store.snapshot().version == 1 && f.store.snapshot().datasets == 3)
        try await channel.writeInbound(
            HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/?id=h")))
        try await channel.writeInbound(HTTPServerRequestPart.end(nil))
        let fetched = try await Self.response(channel)
        #expect(fetched.head.status == .ok && fetched.body.contains("\"datasets\": 3"))
        _ = try await channel.finish()
    }

    @Test("A request pipelined behind one handled off the event loop is answered after it, in order")
    func pipelined() async throws {
        let f = try ServiceFixture()
        let channel = NIOAsyncTestingChannel()
        let context = f.context
        try await channel.testingEventLoop.executeInContext {
            let gate = HTTPRequestGate(context: context)
            try channel.pipeline.syncOperations.addHandler(gate)
            try channel.pipeline.syncOperations.addHandler(HTTPConnectionHandler(context: context, gate: gate))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))
        // The original's fetch is parsed off the event loop; /metrics is answered at once.
        for uri in ["/?id=a", "/metrics"] {
            try await channel.writeInbound(
                HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)))
            try await channel.writeInbound(HTTPServerRequestPart.end(nil))
        }
        let first = try await Self.response(channel)
        let second = try await Self.response(channel)
        #expect(first.head.status == .ok && first.body.contains("\"weights\""))
        #expect(second.head.status == .ok && second.body.contains("fed_model_version"))
        _ = try await channel.finish()
    }

    @Test("The connection's state: one request at a time, in order; reads held while one waits")
    func stateMachine() {
        var state = HTTPConnectionState<Int>()
        #expect(state.requestArrived(1, writable: true) == 1)
        state.startedWork()
        // Pipelined behind the first: it waits, and so do reads.
        #expect(state.requestArrived(2, writable: true) == nil)
        #expect(state.readRequested(writable: true) == .hold)
        #expect(state.becameWritable() == nil)
        // The first answer written: the second goes at once; reads resume after it.
        #expect(state.answered(writable: true) == 2)
        #expect(state.resumeReading(writable: true) == .read)
        // Answers backed up: a request waits for the channel to drain.
        #expect(state.requestArrived(3, writable: false) == nil)
        #expect(state.answered(writable: false) == nil)
        #expect(state.becameWritable() == 3)
        // A half-close with nothing in progress closes now; with a request arriving, not yet.
        var closing = HTTPConnectionState<Int>()
        let busyClose = closing.inputDidClose(requestInProgress: true)
        let idleClose = closing.inputDidClose(requestInProgress: false)
        #expect(!busyClose && idleClose && closing.inputClosed)
        state.discardRest()
        #expect(state.discarding)
        state.headArrived()
        #expect(!state.discarding)
    }

    static func response(_ channel: NIOAsyncTestingChannel) async throws -> Response {
        guard case .head(let head) = try await channel.waitForOutboundWrite(as: HTTPServerResponsePart.self) else {
            throw TestError("no response head")
        }
        var body = ""
        while true {
            switch try await channel.waitForOutboundWrite(as: HTTPServerResponsePart.self) {
            case .body(.byteBuffer(let b)): body += String(buffer: b)
            case .end: return Response(head: head, body: body, closed: false)
            default: continue
            }
        }
    }
}

extension String {
    /// Percent-encoded for an `application/x-www-form-urlencoded` value.
    fileprivate var addingPercentEncodingForForm: String {
        var out = ""
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            default: out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}
