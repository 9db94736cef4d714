import FedCodec
import FedTestSupport
import Foundation
import Testing

@testable import FedServer

#if canImport(Glibc)
    import Glibc
#endif

/// `/v1/model`: model versions as HTTP resources any cache can keep.
@Suite("Model over HTTP caches", .serialized)
struct ModelCacheTests {
    func get(_ port: Int, _ path: String, headers: String = "") throws -> (head: String, body: [UInt8]) {
        let c = try TestClient(port: port, timeoutSeconds: 5)
        try c.send(Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)Connection: close\r\n\r\n".utf8))
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        let split = out.indices.first { i in i + 3 < out.count && out[i..<i + 4].elementsEqual([13, 10, 13, 10]) }!
        return (String(decoding: out[..<split], as: UTF8.self), Array(out[(split + 4)...]))
    }

    @Test("ETag is the version, If-None-Match gives 304, a version's own path is immutable, the body a MODEL payload")
    func etags() throws {
        let s = try RunningServer()
        let c = try TestClient(port: s.port)
        _ = try c.handshake()
        _ = try c.push(constantTensors(2), datasets: 10)
        let (head, body) = try get(s.port, "/v1/model")
        #expect(head.hasPrefix("HTTP/1.1 200") && head.contains("ETag: \"v1\"") && head.contains("no-cache"))
        let frame = Frame(
            header: FrameHeader(type: .model, requestID: 0, payloadLength: UInt32(body.count)), payload: body)
        guard case .model(let m) = try MessageCodec.decode(frame) else { throw TestError("not a MODEL payload") }
        #expect(m.version == 1 && m.tensors == constantTensors(2))
        #expect(try get(s.port, "/v1/model", headers: "If-None-Match: \"v1\"\r\n").head.hasPrefix("HTTP/1.1 304"))
        #expect(try get(s.port, "/v1/model", headers: "If-None-Match: \"v0\"\r\n").head.hasPrefix("HTTP/1.1 200"))
        let fixed = try get(s.port, "/v1/model/1").head
        #expect(fixed.hasPrefix("HTTP/1.1 200") && fixed.contains("public, max-age=31536000, immutable"))
        #expect(try get(s.port, "/v1/model/0").head.hasPrefix("HTTP/1.1 200"))  // retained
        #expect(try get(s.port, "/v1/model/99").head.hasPrefix("HTTP/1.1 404"))
    }

    @Test("With tokens the model is private to caches unless declared public")
    func privateWithTokens() throws {
        let s = try RunningServer(authTokens: ["t"])
        let auth = "Authorization: Bearer t\r\n"
        #expect(try get(s.port, "/v1/model/0").head.hasPrefix("HTTP/1.1 401"))
        #expect(try get(s.port, "/v1/model/0", headers: auth).head.contains("Cache-Control: private"))
        let open = try RunningServer(authTokens: ["t"]) { $0.http.publicModel = true }
        #expect(try get(open.port, "/v1/model/0", headers: auth).head.contains("Cache-Control: public"))
    }

    @Test(
        "Through a real nginx cache, 1,000 fetches of one version reach the server at most 10 times",
        .enabled(if: FileManager.default.fileExists(atPath: "/usr/sbin/nginx"), "needs Debian's nginx"))
    func nginx() throws {
        let s = try RunningServer()
        let dir = try temporaryDirectory("nginx")
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = reservePort()
        let d = dir.path
        let conf = """
            daemon off; worker_processes 1; pid \(d)/nginx.pid; error_log \(d)/error.log;\(getuid() == 0 ? " user root;" : "")
            events { worker_connections 64; }
            http {
              access_log off;
              client_body_temp_path \(d)/body; proxy_temp_path \(d)/proxy; fastcgi_temp_path \(d)/fcgi;
              uwsgi_temp_path \(d)/uwsgi; scgi_temp_path \(d)/scgi;
              proxy_cache_path \(d)/cache levels=1 keys_zone=fed:1m max_size=100m;
              server {
                listen 127.0.0.1:\(port);
                location / {
                  proxy_pass http://127.0.0.1:\(s.port);
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                  proxy_cache fed;
                  proxy_cache_lock on;
                  proxy_cache_revalidate on;
                }
              }
            }
            """
        try conf.write(toFile: d + "/nginx.conf", atomically: true, encoding: .utf8)
        let nginx = Process()
        nginx.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        nginx.arguments = ["-c", d + "/nginx.conf", "-p", d]
        nginx.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try nginx.run()
        defer {
            nginx.terminate()
            nginx.waitUntilExit()
        }
        var up = false
        for _ in 0..<100 where !up {
            up = (try? TestClient(port: port)) != nil
            if !up { usleep(50_000) }
        }
        try #require(
            up, "nginx did not start: \((try? String(contentsOfFile: d + "/error.log", encoding: .utf8)) ?? "")")
        var ok = 0
        for _ in 0..<1000 where try get(port, "/v1/model/0").head.hasPrefix("HTTP/1.1 200") { ok += 1 }
        #expect(ok == 1000)
        let metrics = s.server.metrics.render(
            modelVersion: 0, modelSamples: 0, bufferedUpdates: 0, openConnections: 0, budgetUsed: 0, budgetLimit: 0)
        let served =
            metrics.split(separator: "\n").first {
                $0.hasPrefix("fed_requests_total{protocol=\"http\",kind=\"model\"}")
            }
            .flatMap { Int($0.split(separator: " ").last!) } ?? 0
        #expect(served >= 1 && served <= 10, "the server answered \(served) of 1,000 fetches")
    }
}
