#!/usr/bin/env bash
# Builds the FedCodec fuzz target with libFuzzer + AddressSanitizer and runs it.
#   Fuzz/run.sh [RUNS]     (default 1000000 executions; extra args go to libFuzzer)
# The corpus starts from the golden vectors (each prefixed with a chunk-size byte).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
shift || true
out=.build-fuzz
mkdir -p "$out" fuzz-corpus
# Every FedCodec source, its subfolders' too (Messages/, Messages/Rounds/).
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name FedCodecFuzz \
    -I Sources/CZlib $(find Sources/FedCodec -name '*.swift' | sort) Fuzz/FuzzFrameDecoder.swift -o "$out/fuzz-codec"
for f in Protocol/vectors/*.bin; do
    name=$(basename "$f" .bin)
    [ -f "fuzz-corpus/$name" ] || { printf '\x00'; cat "$f"; } > "fuzz-corpus/$name"
    # The same frame's payload alone, for the payload mode (odd first byte whose bits 1-2 are the frame's
    # version - 1, then the type byte).
    if [ ! -f "fuzz-corpus/$name.payload" ] && [ "$(head -c 4 "$f")" = "FEDW" ]; then
        mode=$(( 1 | (($(od -An -tu1 -j4 -N1 "$f") - 1) & 3) << 1 ))
        { printf "\\x$(printf %02x $mode)"; printf "\\x$(printf %02x $(( $(od -An -tu1 -j5 -N1 "$f") - 1 )))"; tail -c +21 "$f"; } > "fuzz-corpus/$name.payload"
    fi
done
# Seeds for the JSON mode (first byte 2).
[ -f fuzz-corpus/json-weights ] || printf '\x02[[[0.5, -1.25e-3], [3, 4]], [1.0, 2.0], 7]' > fuzz-corpus/json-weights
[ -f fuzz-corpus/json-answer ] || printf '\x02{"id": "s", "datasets": 5000, "weights": [[1.5], [2]]}' > fuzz-corpus/json-answer
"$out/fuzz-codec" -runs="$runs" -max_len=65536 -print_final_stats=1 "$@" fuzz-corpus
