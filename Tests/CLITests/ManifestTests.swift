import FedTestSupport
import Foundation
import Testing

/// Package.swift's choice of FedModel's target CPU, read back with
/// `swift package dump-package` on copies of the manifest (a copy, so the nested
/// SwiftPM never waits on the lock of the build that runs these tests).
@Suite("Package manifest")
struct ManifestTests {
    static let manifest = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Package.swift")

    /// FedModel's unsafe flags when the manifest sits at `relativePath` (under a fresh
    /// temporary folder) and is evaluated with FED_TARGET_CPU set to `cpu` (nil: unset).
    static func fedModelFlags(at relativePath: String, cpu: String?) async throws -> [String] {
        let base = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let dir = base.appendingPathComponent(relativePath)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: manifest, to: dir.appendingPathComponent("Package.swift"))
        let env = ["/usr/bin/env", "-u", "FED_TARGET_CPU"] + (cpu.map { ["FED_TARGET_CPU=\($0)"] } ?? [])
        let (status, data) = try await offPool {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: env[0])
            p.arguments = Array(env.dropFirst()) + ["swift", "package", "--package-path", dir.path, "dump-package"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, data)
        }
        try #require(status == 0, "swift package dump-package failed in \(dir.path)")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let targets = try #require(json["targets"] as? [[String: Any]])
        let fedModel = try #require(targets.first { $0["name"] as? String == "FedModel" })
        let settings = fedModel["settings"] as? [[String: Any]] ?? []
        return settings.flatMap { setting -> [String] in
            guard let kind = setting["kind"] as? [String: Any], let unsafe = kind["unsafeFlags"] as? [String: Any]
            else { return [] }
            return unsafe["_0"] as? [String] ?? []
        }
    }

    @Test("As the root package: FED_TARGET_CPU names the CPU, `baseline` gives no unsafe flags")
    func root() async throws {
        #expect(try await Self.fedModelFlags(at: "swift-federated", cpu: "haswell") == ["-target-cpu", "haswell"])
        #expect(try await Self.fedModelFlags(at: "swift-federated", cpu: "baseline") == [])
        let automatic = try await Self.fedModelFlags(at: "swift-federated", cpu: nil)
        #expect(automatic == [] || automatic == ["-target-cpu", "native"], "\(automatic)")
    }

    @Test(
        "As a dependency's checkout: never unsafe flags (SwiftPM refuses them), whatever FED_TARGET_CPU says",
        arguments: [".build/checkouts/swift-federated", "SourcePackages/checkouts/swift-federated"])
    func dependency(path: String) async throws {
        #expect(try await Self.fedModelFlags(at: path, cpu: nil) == [])
        #expect(try await Self.fedModelFlags(at: path, cpu: "native") == [])
    }
}
