// swift-tools-version: 6.0
import PackageDescription

// The MLP's kernels need FMA and wide vectors to be fast, but release builds
// of Swift target baseline x86-64 (SSE2) unless told otherwise, and SwiftPM
// refuses `unsafeFlags` in packages used as dependencies. So the default build
// is portable, and FED_TARGET_CPU opts in when this package is the root:
//   FED_TARGET_CPU=native swift build -c release
// compiles FedModel for the CPU named (any LLVM name: native, x86-64-v3,
// znver4, ...) and enables fused multiply-add in the kernels (FED_FMA). Name
// only a CPU that has FMA.
let targetCPU = Context.environment["FED_TARGET_CPU"].flatMap { $0.isEmpty ? nil : $0 }
let kernelSettings: [SwiftSetting] =
    targetCPU.map { [.unsafeFlags(["-target-cpu", $0]), .define("FED_FMA")] } ?? []

let package = Package(
    name: "swift-federated",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FedCodec", targets: ["FedCodec"]),
        .library(name: "FedModel", targets: ["FedModel"]),
        .library(name: "FedServer", targets: ["FedServer"]),
        .library(name: "FedClient", targets: ["FedClient"]),
        .executable(name: "fed", targets: ["fed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        .target(name: "FedCodec", dependencies: ["CZlib"]),
        .target(
            name: "FedServer",
            dependencies: [
                "CZlib", "FedCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "FedClient", dependencies: ["FedCodec", "FedModel"]),
        .target(name: "FedModel", dependencies: ["CZlib", "FedCodec"], swiftSettings: kernelSettings),
        .executableTarget(
            name: "fed",
            dependencies: [
                "FedCodec",
                "FedModel",
                "FedServer",
                "FedClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "FedCodecTests", dependencies: ["FedCodec"]),
        .testTarget(name: "FedModelTests", dependencies: ["FedModel", "FedCodec"]),
        .target(name: "FedTestSupport", dependencies: ["FedCodec"], path: "Tests/FedTestSupport"),
        .testTarget(name: "FedClientTests", dependencies: ["FedClient", "FedCodec"]),
        .testTarget(name: "FedServerTests", dependencies: ["FedServer", "FedCodec", "FedTestSupport"]),
        .testTarget(
            name: "CLITests", dependencies: ["fed", "FedCodec", "FedModel", "FedTestSupport"],
            exclude: ["original_http_client.py", "broken_server.py"]),
    ],
    swiftLanguageModes: [.v6]
)
