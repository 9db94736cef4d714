// swift-tools-version: 6.0
import Foundation
import PackageDescription

// The MLP's kernels need fused multiply-add and wide vectors to be fast, but
// release builds of Swift target baseline x86-64 (SSE2) unless told otherwise
// (several times slower: README, "Fast kernels"), and SwiftPM refuses
// `unsafeFlags` in packages used as dependencies.
// So FedModel's target CPU is chosen here. As a dependency (a checkout of
// another package's build) it is always the portable baseline, with no unsafe
// flags. As the root package, by FED_TARGET_CPU:
//   unset     the build machine has FMA: compile for this machine
//             (`-target-cpu native`, FED_FMA); otherwise the baseline.
//   baseline  the portable baseline (a binary for any x86-64).
//   a CPU     any LLVM CPU name (haswell = AVX2+FMA, skylake-avx512, znver4,
//             native, ...); name only a CPU that has FMA.
// The kernels give bit-identical results for one build whatever the thread
// count; different target CPUs may differ in the last bits.
let requestedCPU = Context.environment["FED_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let targetCPU: String? =
    switch requestedCPU {
    case _ where !isRootPackage(): nil
    case "baseline", "none": nil
    case .some(let cpu): cpu
    case nil: buildMachineHasFMA() ? "native" : nil
    }
let kernelSettings: [SwiftSetting] =
    targetCPU.map { [.unsafeFlags(["-target-cpu", $0]), .define("FED_FMA")] } ?? []

/// True unless this manifest is a dependency's checkout (`.build/checkouts/NAME`,
/// Xcode's `SourcePackages/checkouts/NAME`) or SwiftPM's repository cache.
func isRootPackage() -> Bool {
    let components = Context.packageDirectory.split(separator: "/")
    return !components.contains { $0 == "checkouts" || $0 == "repositories" || $0.contains("swiftpm") }
}

/// True when this machine's CPU has fused multiply-add (x86-64: the `fma` and
/// `avx2` flags of /proc/cpuinfo; arm64 always has it).
func buildMachineHasFMA() -> Bool {
    #if arch(arm64)
        return true
    #elseif arch(x86_64) && os(Linux)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return false }
        let set = Set(flags.split(separator: " "))
        return set.contains("fma") && set.contains("avx2")
    #else
        return false
    #endif
}

let package = Package(
    name: "swift-federated",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FedCodec", targets: ["FedCodec"]),
        .library(name: "FedModel", targets: ["FedModel"]),
        .library(name: "FedStorage", targets: ["FedStorage"]),
        .library(name: "FedServer", targets: ["FedServer"]),
        .library(name: "FedClient", targets: ["FedClient"]),
        .library(name: "FedSimulation", targets: ["FedSimulation"]),
        .library(name: "FedPrivacy", targets: ["FedPrivacy"]),
        .library(name: "FedSecureAggregation", targets: ["FedSecureAggregation"]),
        .library(name: "FedSecureClient", targets: ["FedSecureClient"]),
        .executable(name: "fed", targets: ["fed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // `swift package generate-documentation` (DocC); a plugin, built only when used.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
        // Secure aggregation's cryptography (X25519, HKDF, ChaChaPoly, ChaCha20); it builds its
        // own BoringSSL, so only FedSecureAggregation (and FedBench, fed) depend on it.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        .target(name: "FedCodec", dependencies: ["CZlib"]),
        .target(name: "FedStorage", dependencies: ["FedCodec"]),
        .target(
            name: "FedServer",
            dependencies: [
                "FedCodec", "FedStorage", "FedPrivacy", "FedSecureAggregation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "FedClient",
            dependencies: [
                "FedCodec", "FedPrivacy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .target(name: "FedModel", dependencies: ["CZlib", "FedCodec"], swiftSettings: kernelSettings),
        .target(
            name: "FedSimulation",
            dependencies: [
                "FedCodec", "FedModel", "FedServer", "FedClient", "FedSecureClient",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Differential privacy accounting (RDP of the sampled Gaussian mechanism); pure Swift, no I/O.
        .target(name: "FedPrivacy"),
        // Secure aggregation (Shamir sharing, key agreement, masks, fixed point, a participant's steps,
        // the server's unmasking); no I/O. FedServer depends on it; FedClient does not, so that a
        // client without secure aggregation does not build swift-crypto's BoringSSL.
        .target(
            name: "FedSecureAggregation",
            dependencies: [
                "FedPrivacy",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // A FederationClient's secure-train tasks: FedClient's protocol for a participant, carried
        // out with FedSecureAggregation.
        .target(name: "FedSecureClient", dependencies: ["FedClient", "FedCodec", "FedSecureAggregation"]),
        .target(
            name: "FedBench",
            dependencies: [
                "FedCodec", "FedModel", "FedStorage", "FedClient", "FedServer", "FedSecureAggregation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "fed",
            dependencies: [
                "FedBench",
                "FedSimulation",
                "FedPrivacy",
                "FedCodec",
                "FedModel",
                "FedStorage",
                "FedServer",
                "FedClient",
                "FedSecureClient",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(name: "FedCodecTests", dependencies: ["FedCodec", "FedTestSupport"]),
        .testTarget(name: "FedModelTests", dependencies: ["FedModel", "FedCodec"]),
        .target(name: "FedTestSupport", dependencies: ["FedCodec"], path: "Tests/FedTestSupport"),
        .testTarget(name: "FedPrivacyTests", dependencies: ["FedPrivacy"]),
        .testTarget(
            name: "FedSecureAggregationTests",
            dependencies: [
                "FedSecureAggregation", "FedTestSupport", .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "FedSimulationTests", dependencies: ["FedSimulation", "FedServer", "FedModel", "FedCodec"]),
        .testTarget(name: "FedClientTests", dependencies: ["FedClient", "FedCodec", "FedPrivacy", "FedTestSupport"]),
        .testTarget(
            name: "FedServerTests",
            dependencies: [
                "FedServer", "FedStorage", "FedCodec", "FedClient", "FedTestSupport", "FedSecureClient",
                "FedSecureAggregation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .testTarget(
            name: "CLITests",
            dependencies: [
                "fed", "FedBench", "FedClient", "FedCodec", "FedModel", "FedPrivacy", "FedSecureAggregation",
                "FedTestSupport",
            ],
            exclude: ["original_http_client.py", "broken_server.py"]),
    ],
    swiftLanguageModes: [.v6]
)
