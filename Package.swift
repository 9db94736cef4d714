// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-federated",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FedCodec", targets: ["FedCodec"]),
        .executable(name: "fed", targets: ["fed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        .target(name: "FedCodec", dependencies: ["CZlib"]),
        .executableTarget(
            name: "fed",
            dependencies: [
                "FedCodec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "FedCodecTests", dependencies: ["FedCodec"], resources: []),
    ],
    swiftLanguageModes: [.v6]
)
