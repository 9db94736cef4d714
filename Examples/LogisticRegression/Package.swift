// swift-tools-version: 6.0
// A package that uses swift-federated as a dependency: its own model
// (logistic regression), trained federatedly against `fed server` with the
// async client. Copy it, point the path (or a URL) at swift-federated.
import PackageDescription

let package = Package(
    name: "LogisticRegression",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-federated", path: "../..")
    ],
    targets: [
        .executableTarget(
            name: "logreg",
            dependencies: [
                .product(name: "FedClient", package: "swift-federated"),
                .product(name: "FedCodec", package: "swift-federated"),
                .product(name: "FedModel", package: "swift-federated"),
                .product(name: "FedStorage", package: "swift-federated"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
