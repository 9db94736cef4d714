#!/usr/bin/env bash
# Builds the examples as packages that depend on swift-federated, as a user
# would, and runs them. A step of .ci/run after the test suite (building a
# dependant compiles SwiftNIO and BoringSSL again, minutes on two cores, so
# it is kept out of `swift test`). Run it from anywhere:
#
#   swift build -c release && Examples/check.sh   (or after swift test -c release)
#
# 1. The README's client example (the block after `<!-- client-example -->`)
#    compiles as written in a package of its own depending on FedClient and
#    FedCodec only; its cold build time is printed.
# 2. Examples/LogisticRegression builds, and its four clients (each a single
#    `run` call with its own model, no polling loop) take part in the 8 rounds
#    of `fed server --rounds 4` (.build/release/fed) and reach 0.88 on held-out digits.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fed="$root/.build/release/fed"
[ -x "$fed" ] || { echo "no $fed: run 'swift build -c release' first" >&2; exit 1; }
work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
failed=0
passed=0

# 1. The README's client example.
pkg="$work/readme-client"
mkdir -p "$pkg/Sources/app"
cat >"$pkg/Package.swift" <<EOF
// swift-tools-version: 6.0
import PackageDescription
let package = Package(
    name: "readme-client",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "swift-federated", path: "$root")],
    targets: [
        .executableTarget(
            name: "app",
            dependencies: [
                .product(name: "FedClient", package: "swift-federated"),
                .product(name: "FedCodec", package: "swift-federated"),
            ])
    ],
    swiftLanguageModes: [.v6]
)
EOF
awk '/<!-- client-example -->/ { on = 1; next } on && /^```swift/ { body = 1; next } body && /^```/ { exit } body { print }' \
    "$root/README.md" >"$pkg/Sources/app/Example.swift"
[ -s "$pkg/Sources/app/Example.swift" ] || { echo "FAIL readme-client: no client example in README.md"; exit 1; }
printf '// Calls the example so that it is compiled as used.\nlet model = MyModel()\n_ = model\n' >"$pkg/Sources/app/main.swift"
start=$(date +%s)
if swift build --package-path "$pkg" >"$work/readme-build.log" 2>&1; then
    took=$(($(date +%s) - start))
    fedmodel=$(grep -c "Compiling FedModel" "$work/readme-build.log" || true)
    echo "PASS readme-client  the README's client example builds as written in a package of its own: cold debug build ${took} s, FedModel sources compiled: ${fedmodel}"
    passed=$((passed + 1))
else
    echo "FAIL readme-client  the README's client example does not build:"
    tail -30 "$work/readme-build.log"
    failed=$((failed + 1))
fi

# 2. The logistic-regression example against fed server.
example="$root/Examples/LogisticRegression"
if swift build --package-path "$example" >"$work/logreg-build.log" 2>&1 && ! grep -q unsafeFlags "$work/logreg-build.log"; then
    logreg="$example/.build/debug/logreg"
    "$logreg" init "$work/lr-init.fedk" >/dev/null
    "$fed" server --port 0 --checkpoint "$work/lr.fedk" --init "$work/lr-init.fedk" --rounds 4 --over-selection 1 --total-rounds 8 --selection-window 60 \
        --log-level warning >"$work/server.out" 2>"$work/server.log" &
    server=$!
    for _ in $(seq 1 100); do grep -q "listening on" "$work/server.out" && break; sleep 0.2; done
    port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/server.out" | head -1)
    if [ -n "$port" ] && timeout 600 "$logreg" run --server "127.0.0.1:$port" --data "$root/Data/mnist" \
        --clients 4 >"$work/logreg.out" 2>&1; then
        accuracy=$(sed -n 's/^final held-out accuracy.* \([0-9.]*\)$/\1/p' "$work/logreg.out" | tail -1)
        if python3 -c "import sys; sys.exit(0 if float('${accuracy:-0}') >= 0.88 else 1)"; then
            echo "PASS logreg         Examples/LogisticRegression built as a dependant; 4 clients, 8 rounds: held-out accuracy $accuracy (bar 0.88)"
            passed=$((passed + 1))
        else
            echo "FAIL logreg         held-out accuracy ${accuracy:-none} (bar 0.88)"
            cat "$work/logreg.out"
            failed=$((failed + 1))
        fi
    else
        echo "FAIL logreg         the example's run failed"
        cat "$work/logreg.out" 2>/dev/null || true
        failed=$((failed + 1))
    fi
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
else
    echo "FAIL logreg         Examples/LogisticRegression does not build as a dependant:"
    tail -30 "$work/logreg-build.log"
    failed=$((failed + 1))
fi

echo "examples checked: $passed of $((passed + failed)) passed"
[ "$failed" -eq 0 ]
