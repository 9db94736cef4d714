#!/usr/bin/env python3
"""Writes the golden vectors of Protocol versions 1-4 and their manifest.

An implementation of the encoding side of Protocol/SPEC.md written in Python
with the standard library only (struct, zlib, json), independent of the Swift
codec, plus, for secure aggregation (section 12.11), Python's `cryptography`
package: it also writes secagg_three_clients.json, a fixed-seed vector of the
cryptography of a cohort of three clients (X25519, HKDF-SHA256, Shamir shares,
ChaCha20-Poly1305 bundles, ChaCha20 masks, masked inputs and their sum). Run
from anywhere: `python3 Protocol/vectors/generate.py`. The output is
deterministic; the committed files are what it writes.
"""
import json
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"FEDW"
TYPES = {
    "hello": 1, "welcome": 2, "fetch": 3, "model": 4, "model_unchanged": 5,
    "push": 6, "ack": 7, "error": 8, "ping": 9, "pong": 10, "model_delta": 11,
    "check_in": 12, "assignment": 13, "report": 14, "evaluation_report": 15,
}
CODES = {
    "bad_magic": 1, "unsupported_version": 2, "unknown_message_type": 3,
    "unsupported_flags": 4, "frame_too_large": 5, "checksum_mismatch": 6,
    "truncated": 7, "malformed_payload": 8, "trailing_bytes": 9,
    "invalid_string": 10, "unsupported_compression": 11, "unsupported_d_type": 12,
    "invalid_shape": 13, "size_mismatch": 14, "decompressed_too_large": 15,
    "corrupt_compressed_data": 16, "overloaded": 38, "unknown_base": 43,
}
COMPRESSION = {"none": 0, "zlib": 1, "shuffle-zlib": 2}


def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)


def string(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u16(len(b)) + b


def frame(type_, request_id, payload, version=1, flags=0, length=None, crc=None):
    head = MAGIC + u8(version) + u8(type_) + u16(flags) + u32(request_id)
    head += u32(len(payload) if length is None else length)
    c = zlib.crc32(head + payload) if crc is None else crc
    return head + u32(c) + payload


def raw_bytes(tensors):
    return b"".join(struct.pack("<%df" % len(v), *v) for _, v in tensors)


def shuffle(raw):
    n = len(raw) // 4
    return b"".join(raw[j::4] for j in range(4)) if n else b""


def blob(tensors, mode="none", level=6, raw_size=None, stored=None, dtype=1):
    out = u8(COMPRESSION.get(mode, mode) if isinstance(mode, str) else mode) + u16(len(tensors))
    for shape, _ in tensors:
        out += u8(dtype) + u8(len(shape)) + b"".join(u32(d) for d in shape)
    raw = raw_bytes(tensors)
    if stored is None:
        if mode == "none":
            stored = raw
        elif mode == "zlib":
            stored = zlib.compress(raw, level)
        elif mode == "shuffle-zlib":
            stored = zlib.compress(shuffle(raw), level)
    out += u32(len(raw) if raw_size is None else raw_size) + u32(len(stored)) + stored
    return out


def tensor_json(shape, values):
    raw = struct.pack("<%df" % len(values), *values)
    t = {"shape": shape, "count": len(values), "crc32": zlib.crc32(raw)}
    if len(values) <= 32:
        t["values_hex"] = [raw[i:i + 4][::-1].hex() for i in range(0, len(raw), 4)]
    return t


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


SMALL = [([2, 3], [f32(v) for v in (0.5, -1.25, 3.0, 0.0, -0.0, 1e-3)]), ([3], [1.0, 2.0, -3.5])]
MULTI = [([2, 2, 2], [f32(i * 0.25 - 1) for i in range(8)]), ([], [42.0])]
EMPTY = [([0], []), ([3, 0], []), ([1], [7.0])]


def mlp_tensors():
    shapes = [[784, 200], [200], [200, 200], [200], [200, 10], [10]]
    out, k = [], 0
    for s in shapes:
        n = 1
        for d in s:
            n *= d
        vals = []
        for i in range(n):
            k += 1
            vals.append(f32(((k * 2654435761) % 4001 - 2000) / 20000.0))
        out.append((s, vals))
    return out


vectors = []


def add(name, data, description, frames=(), error=None, canonical=False, kind="stream"):
    path = os.path.join(HERE, name + ".bin")
    with open(path, "wb") as fh:
        fh.write(data)
    v = {"name": name, "file": name + ".bin", "kind": kind, "description": description,
         "canonical": canonical, "frames": list(frames)}
    if error is not None:
        stage, code = error
        v["error"] = {"stage": stage, "name": code, "code": CODES[code]}
    vectors.append(v)


def msg(type_name, request_id, **fields):
    return {"type": type_name, "request_id": request_id, "message": fields}


def tensors_json(ts):
    return [tensor_json(s, v) for s, v in ts]


# ---- valid messages -------------------------------------------------------
add("hello_basic", frame(1, 1, u8(1) + u8(1) + u8(0b111) + string("alice") + string("")),
    "HELLO from a client speaking only version 1, all three compressions, no token",
    [msg("hello", 1, min_version=1, max_version=1, compressions=7, client_id="alice", auth_token="")],
    canonical=True)
add("hello_token_range", frame(1, 2, u8(1) + u8(3) + u8(0b101) + string("z\u00fcrich-7") + string("s3cret")),
    "HELLO with a version range 1...3, compressions none+shuffle-zlib, a UTF-8 client id and an auth token",
    [msg("hello", 2, min_version=1, max_version=3, compressions=5, client_id="z\u00fcrich-7", auth_token="s3cret")],
    canonical=True)
add("welcome", frame(2, 1, u8(1) + u8(0b111) + string("fed-server") + u64(12) + u64(60000) + u32(16 << 20)),
    "WELCOME choosing version 1",
    [msg("welcome", 1, version=1, compressions=7, server_id="fed-server", model_version=12, datasets=60000,
         max_payload=16 << 20)], canonical=True)
add("welcome_v2", frame(2, 1, u8(2) + u8(0b101) + string("fed-server") + u64(12) + u64(60000) + u32(1 << 20)
                        + u64(796840) + u64(60000)),
    "WELCOME choosing version 2 (in a version-1 frame): it announces max_decompressed and max_datasets",
    [msg("welcome", 1, version=2, compressions=5, server_id="fed-server", model_version=12, datasets=60000,
         max_payload=1 << 20, max_decompressed=796840, max_datasets=60000)], canonical=True)
add("fetch_initial", frame(3, 5, u64(0) + u8(0)), "FETCH holding no model, asking for raw weights",
    [msg("fetch", 5, held_version=0, compression="none")], canonical=True)
add("fetch_held", frame(3, 6, u64(42) + u8(2)), "FETCH holding version 42, asking for shuffle-zlib",
    [msg("fetch", 6, held_version=42, compression="shuffle-zlib")], canonical=True)
for mode, canon in (("none", True), ("zlib", False), ("shuffle-zlib", False)):
    add("model_" + mode.replace("-", "_"), frame(4, 7, u64(3) + u64(10000) + blob(SMALL, mode)),
        "MODEL version 3, 10,000 samples, a 2x3 and a 3 tensor, compression " + mode,
        [msg("model", 7, version=3, datasets=10000, compression=mode, tensors=tensors_json(SMALL))],
        canonical=canon)
add("model_unchanged", frame(5, 8, u64(3) + u64(10000)), "MODEL_UNCHANGED: the client already holds version 3",
    [msg("model_unchanged", 8, version=3, datasets=10000)], canonical=True)
for mode, canon in (("none", True), ("zlib", False), ("shuffle-zlib", False)):
    add("push_multidim_" + mode.replace("-", "_"),
        frame(6, 9, string("bob") + u64(5000) + u64(3) + blob(MULTI, mode)),
        "PUSH of a rank-3 2x2x2 tensor and a rank-0 scalar, compression " + mode,
        [msg("push", 9, client_id="bob", datasets=5000, base_version=3, compression=mode,
             tensors=tensors_json(MULTI))], canonical=canon)
add("push_v2_with_id", frame(6, 21, string("bob") + u64(5000) + u64(3) + u64(0x0123456789ABCDEF)
                             + blob(MULTI, "none"), version=2),
    "PUSH in a version-2 frame: a push id (idempotency key) follows base_version",
    [msg("push", 21, client_id="bob", datasets=5000, base_version=3, push_id=0x0123456789ABCDEF,
         compression="none", tensors=tensors_json(MULTI))], canonical=True)
add("ack_v2", frame(7, 21, u64(4) + u64(15000), version=2), "ACK in a version-2 frame (same layout as version 1)",
    [msg("ack", 21, version=4, datasets=15000)], canonical=True)
add("push_empty_tensors", frame(6, 10, string("carol") + u64(1) + u64(0) + blob(EMPTY, "none")),
    "PUSH with empty tensors (shapes [0] and [3,0]) next to a non-empty one",
    [msg("push", 10, client_id="carol", datasets=1, base_version=0, compression="none",
         tensors=tensors_json(EMPTY))], canonical=True)
add("push_no_tensors", frame(6, 11, string("dave") + u64(1) + u64(0) + blob([], "zlib")),
    "PUSH with zero tensors, zlib (an empty zlib stream)",
    [msg("push", 11, client_id="dave", datasets=1, base_version=0, compression="zlib", tensors=[])])
add("ack", frame(7, 9, u64(4) + u64(15000)), "ACK: the push made version 4, 15,000 samples",
    [msg("ack", 9, version=4, datasets=15000)], canonical=True)
add("error_overloaded", frame(8, 12, u16(38) + u8(1) + u8(1) + u8(1) + string("too many connections")),
    "ERROR overloaded, retryable",
    [msg("error", 12, code=38, retryable=True, min_version=1, max_version=1, message="too many connections")],
    canonical=True)
add("error_version", frame(8, 0, u16(2) + u8(0) + u8(1) + u8(1) + string("this peer speaks 1...1")),
    "ERROR unsupported_version naming the versions the sender speaks",
    [msg("error", 0, code=2, retryable=False, min_version=1, max_version=1, message="this peer speaks 1...1")],
    canonical=True)
add("error_stale_base_v2", frame(8, 21, u16(42) + u8(0) + u8(1) + u8(2) + string("base version 3 is too old"),
                                  version=2),
    "ERROR stale_base (42, version 2): a push trained from a version older than the server keeps",
    [msg("error", 21, code=42, retryable=False, min_version=1, max_version=2, message="base version 3 is too old")],
    canonical=True)
add("ping", frame(9, 13, u64(0x0123456789ABCDEF)), "PING", [msg("ping", 13, nonce=0x0123456789ABCDEF)],
    canonical=True)
add("pong", frame(10, 13, u64(0x0123456789ABCDEF)), "PONG", [msg("pong", 13, nonce=0x0123456789ABCDEF)],
    canonical=True)
add("pipelined_three", frame(9, 1, u64(1)) + frame(3, 2, u64(0) + u8(1)) + frame(9, 3, u64(3)),
    "three frames back to back (pipelining): PING, FETCH, PING",
    [msg("ping", 1, nonce=1), msg("fetch", 2, held_version=0, compression="zlib"), msg("ping", 3, nonce=3)])
MLP = mlp_tensors()
add("model_mlp_shuffle_zlib", frame(4, 20, u64(1) + u64(5000) + blob(MLP, "shuffle-zlib", level=1)),
    "MODEL carrying the MNIST MLP's six tensors (199,210 floats) in Keras order, shuffle-zlib level 1",
    [msg("model", 20, version=1, datasets=5000, compression="shuffle-zlib", tensors=tensors_json(MLP))])

# ---- version 3: value encodings, delta pushes, MODEL_DELTA (section 6.3) ---
DTYPE = {"fp32": 1, "fp16": 2, "int8": 3, "int4": 4, "int2": 5}
CODE_BITS = {"int8": 8, "int4": 4, "int2": 2}


def encode_values(enc, vals):
    """(data bytes, decoded Float32 values) of one tensor, nearest rounding (the sender's choice)."""
    n = len(vals)
    if enc == "fp32":
        return struct.pack("<%df" % n, *vals), list(vals)
    if enc == "fp16":
        data = struct.pack("<%de" % n, *vals)
        return data, list(struct.unpack("<%de" % n, data))
    bits = CODE_BITS[enc]
    top, per = (1 << bits) - 1, 8 // bits
    heads, codes, out = b"", bytearray((n * bits + 7) // 8), []
    for b0 in range(0, n, 256):
        block = vals[b0:b0 + 256]
        lo, hi = min(block), max(block)
        step = f32(f32(hi - lo) / top) if hi > lo else 0.0
        heads += struct.pack("<ff", lo, step)
        for i, v in enumerate(block, b0):
            q = 0
            if step > 0:
                q = min(max(int(math.floor(f32(f32(f32(v - lo) / step) + 0.5))), 0), top)
            codes[i // per] |= q << ((i % per) * bits)
            out.append(f32(lo + f32(q * step)))
    return heads + bytes(codes), out


def blob3(tensors, enc, mode="none"):
    """A blob whose tensors are all stored as `enc`, and the tensors it decodes to."""
    out = u8(COMPRESSION[mode]) + u16(len(tensors))
    data, decoded = b"", []
    for shape, vals in tensors:
        out += u8(DTYPE[enc]) + u8(len(shape)) + b"".join(u32(d) for d in shape)
        d, v = encode_values(enc, vals)
        data += d
        decoded.append((shape, v))
    stored = data
    if mode == "zlib":
        stored = zlib.compress(data, 6)
    elif mode == "shuffle-zlib":
        w = 2 if enc == "fp16" else 4
        stored = zlib.compress(b"".join(data[j::w] for j in range(w)), 6)
    return out + u32(len(data)) + u32(len(stored)) + stored, decoded


DELTA = [([2, 150], [f32(math.sin(i * 0.7) * 0.01) for i in range(300)]), ([3], [f32(0.5), f32(-0.25), f32(1e-3)])]
add("welcome_v3", frame(2, 1, u8(3) + u8(0b111) + string("fed-server") + u64(12) + u64(60000) + u32(1 << 20)
                        + u64(796840) + u64(60000) + u8(0b11111) + u8(0b10000)),
    "WELCOME choosing version 3: it also names the value encodings it accepts in pushes (fp32..int2) and the "
    "encoding of its MODEL_DELTA steps (int2)",
    [msg("welcome", 1, version=3, compressions=7, server_id="fed-server", model_version=12, datasets=60000,
         max_payload=1 << 20, max_decompressed=796840, max_datasets=60000, encodings=31, delta_encoding=16)],
    canonical=True)
add("fetch_v3_deltas", frame(3, 6, u64(42) + u8(2) + u8(0b11111), version=3),
    "FETCH in a version-3 frame holding version 42 and accepting MODEL_DELTA steps in any encoding",
    [msg("fetch", 6, held_version=42, compression="shuffle-zlib", delta_encodings=31)], canonical=True)
for enc, mode, canon in (("fp16", "none", True), ("fp16", "shuffle-zlib", False), ("int8", "zlib", False),
                         ("int4", "none", False), ("int2", "none", False)):
    b, dec = blob3(DELTA, enc, mode)
    add("push_v3_%s_delta_%s" % (enc, mode.replace("-", "_")),
        frame(6, 30, string("eve") + u64(600) + u64(41) + u64(77) + u8(1) + b, version=3),
        "PUSH (version 3) of a delta against version 41, values stored as %s, compression %s" % (enc, mode),
        [msg("push", 30, client_id="eve", datasets=600, base_version=41, push_id=77, delta=True, encoding=enc,
             compression=mode, tensors=tensors_json(dec))], canonical=canon)
steps = [blob3(SMALL, "fp16")[0], blob3(SMALL, "fp16")[0]]
step_tensors = [tensors_json(blob3(SMALL, "fp16")[1])] * 2
add("model_delta_fp16", frame(11, 31, u64(44) + u64(20000) + u64(42) + u16(2)
                              + b"".join(u32(len(s)) + s for s in steps), version=3),
    "MODEL_DELTA (version 3): version 42 becomes 44 by adding two fp16 steps in order",
    [msg("model_delta", 31, version=44, datasets=20000, from_version=42, encoding="fp16", steps=step_tensors)],
    canonical=True)
b_int4, dec_int4 = blob3(DELTA, "int4", "zlib")
add("model_delta_int4", frame(11, 32, u64(43) + u64(20000) + u64(42) + u16(1) + u32(len(b_int4)) + b_int4,
                              version=3),
    "MODEL_DELTA with one int4 step, zlib",
    [msg("model_delta", 32, version=43, datasets=20000, from_version=42, encoding="int4",
         steps=[tensors_json(dec_int4)])])
add("error_unknown_base", frame(8, 30, u16(43) + u8(0) + u8(1) + u8(3) + string("version 41 is not held"),
                                 version=3),
    "ERROR unknown_base (43, version 3): a delta against a version the server does not hold",
    [msg("error", 30, code=43, retryable=False, min_version=1, max_version=3, message="version 41 is not held")],
    canonical=True)
b_fp16, _ = blob3(DELTA, "fp16")
add("push_v2_fp16", frame(6, 33, string("eve") + u64(600) + u64(41) + u64(77) + b_fp16, version=2),
    "a version-2 PUSH whose blob stores fp16: only float32 is defined before version 3",
    error=("message", "unsupported_d_type"))
add("push_v3_bad_flags", frame(6, 34, string("eve") + u64(600) + u64(41) + u64(77) + u8(2) + b_fp16, version=3),
    "a version-3 PUSH with an undefined flag bit", error=("message", "malformed_payload"))
b_int8, _ = blob3(DELTA, "int8")
add("push_v3_int8_shuffle", frame(6, 35, string("eve") + u64(600) + u64(41) + u64(77) + u8(1)
                                  + b_int8[:0] + u8(2) + b_int8[1:], version=3),
    "shuffle-zlib declared over int8 blocks (shuffling is defined for fp32 and fp16 only)",
    error=("message", "unsupported_compression"))
bad_size = bytearray(blob3(DELTA, "int4")[0])
bad_size[3 + 2 * (2 + 4) + 4 + 3] ^= 1  # raw size: the byte before stored size
add("push_v3_int4_raw_size", frame(6, 36, string("eve") + u64(600) + u64(41) + u64(77) + u8(1) + bytes(bad_size),
                                   version=3),
    "int4 blob whose raw size is not the blocks' encoded size", error=("message", "size_mismatch"))
add("welcome_v3_two_delta_bits", frame(2, 1, u8(3) + u8(0b111) + string("fed-server") + u64(12) + u64(60000)
                                      + u32(1 << 20) + u64(796840) + u64(60000) + u8(0b11111) + u8(0b01100)),
    "WELCOME version 3 whose delta_encoding names two dtypes (int8 and int4): it names at most one",
    error=("message", "malformed_payload"))
b_int2, dec_int2 = blob3(DELTA, "int2")
dirty = bytearray(b_int2)
dirty[-1] |= 0b11000000  # the [3] tensor's 3 codes use the low 6 bits of its last byte
add("push_v3_int2_dirty_padding", frame(6, 39, string("eve") + u64(600) + u64(41) + u64(77) + u8(1) + bytes(dirty),
                                        version=3),
    "int2 PUSH whose last tensor's last code byte has its unused high bits set: a receiver ignores them "
    "(same values as with zeros; a sender writes zeros)",
    [msg("push", 39, client_id="eve", datasets=600, base_version=41, push_id=77, delta=True, encoding="int2",
         compression="none", tensors=tensors_json(dec_int2))])
LOSSY_N = (64 << 20) // 4 + 1  # 4 x elements is over 64 MiB, the int2 data is 4.5 MB
lossy_raw = 8 * ((LOSSY_N + 255) // 256) + (LOSSY_N + 3) // 4
add("blob_lossy_over_max_decompressed",
    frame(6, 40, string("eve") + u64(600) + u64(41) + u64(0) + u8(0) + u8(1) + u16(1) + u8(5) + u8(1) + u32(LOSSY_N)
          + u32(lossy_raw) + u32(len(zlib.compress(b"\0" * lossy_raw, 9))) + zlib.compress(b"\0" * lossy_raw, 9),
          version=3),
    "int2 PUSH of %d values: its raw size (%d bytes) is under max_decompressed, 4 bytes a value is not; "
    "max_decompressed bounds the decoded Float32 size" % (LOSSY_N, lossy_raw),
    error=("message", "decompressed_too_large"))
add("model_delta_in_v2", frame(11, 37, u64(43) + u64(1) + u64(42) + u16(0), version=2),
    "MODEL_DELTA in a version-2 frame: type 0x0b is not defined before version 3",
    error=("frame", "unknown_message_type"))
add("model_delta_too_many_steps", frame(11, 38, u64(43) + u64(1) + u64(42) + u16(65), version=3),
    "MODEL_DELTA announcing 65 steps (at most 64)", error=("message", "malformed_payload"))

# ---- invalid frames -------------------------------------------------------
good = frame(9, 99, u64(7))
for cut, field in ((2, "magic"), (4, "version"), (5, "type"), (7, "flags"), (10, "request_id"),
                   (14, "payload_length"), (18, "crc"), (24, "payload")):
    add("truncated_in_" + field, good[:cut],
        "a PING frame cut after %d bytes, inside its %s field" % (cut, field), error=("frame", "truncated"))
add("bad_magic", b"GET / HTTP/1.1\r\n\r\n" + good, "bytes that are not a frame (an HTTP request)",
    error=("frame", "bad_magic"))
add("unsupported_version", frame(9, 1, u64(1), version=5), "a frame of protocol version 5 (versions 1-4 are defined)",
    error=("frame", "unsupported_version"))
add("error_unsupported_version_before_hello",
    frame(8, 0, u16(2) + u8(0) + u8(1) + u8(3) + string("protocol version 4 is not supported; this peer speaks 1...3")),
    "a version-1...3 server's answer to a frame of version 4 before HELLO: ERROR unsupported_version in a "
    "version-1 frame, request id 0 (the header is not trusted), naming versions 1...3",
    [msg("error", 0, code=2, retryable=False, min_version=1, max_version=3,
         message="protocol version 4 is not supported; this peer speaks 1...3")], canonical=True)
add("unknown_type", frame(0x7F, 1, u64(1)), "a frame of message type 0x7f", error=("frame", "unknown_message_type"))
add("unknown_flag", frame(9, 1, u64(1), flags=0x0001), "a frame with flag bit 0 set",
    error=("frame", "unsupported_flags"))
add("length_beyond_limit", frame(4, 1, b"", length=0xFFFFFFF0),
    "a header declaring a 4 GiB payload: rejected from the header, before any allocation",
    error=("frame", "frame_too_large"))
add("bad_crc", frame(9, 1, u64(1), crc=0xDEADBEEF), "a PING whose CRC is wrong", error=("frame", "checksum_mismatch"))
add("flipped_payload_bit", good[:-1] + bytes([good[-1] ^ 1]), "a PING with one payload bit flipped in transit",
    error=("frame", "checksum_mismatch"))
add("trailing_garbage_after_frame", good + b"xyz", "a valid PING followed by three bytes of garbage",
    [msg("ping", 99, nonce=7)], error=("frame", "bad_magic"))

# ---- invalid payloads (the frame is intact) -------------------------------
add("payload_trailing_bytes", frame(9, 1, u64(1) + b"\x00"), "a PING payload one byte too long",
    error=("message", "trailing_bytes"))
add("payload_short", frame(9, 1, u32(1)), "a PING payload of 4 bytes, its nonce needs 8",
    error=("message", "malformed_payload"))
add("hello_invalid_utf8", frame(1, 1, u8(1) + u8(1) + u8(1) + string(b"\xff\xfe") + string("")),
    "HELLO whose client id is not UTF-8", error=("message", "invalid_string"))
add("hello_empty_client_id", frame(1, 1, u8(1) + u8(1) + u8(1) + string("") + string("")),
    "HELLO with an empty client id", error=("message", "invalid_string"))
add("hello_client_id_too_long", frame(1, 1, u8(1) + u8(1) + u8(1) + string("x" * 257) + string("")),
    "HELLO with a 257-byte client id", error=("message", "invalid_string"))
add("hello_bad_version_range", frame(1, 1, u8(3) + u8(2) + u8(1) + string("a") + string("")),
    "HELLO whose min version exceeds its max", error=("message", "malformed_payload"))
add("fetch_unknown_compression", frame(3, 1, u64(0) + u8(9)), "FETCH asking for compression 9",
    error=("message", "unsupported_compression"))
add("error_retryable_not_bool", frame(8, 1, u16(38) + u8(2) + u8(1) + u8(1) + string("x")),
    "ERROR whose retryable byte is 2", error=("message", "malformed_payload"))
PUSH_HEAD = string("eve") + u64(5000) + u64(0)
add("blob_unknown_compression", frame(6, 1, PUSH_HEAD + blob(SMALL, 3, stored=raw_bytes(SMALL))),
    "PUSH whose blob names compression 3", error=("message", "unsupported_compression"))
add("blob_unknown_dtype", frame(6, 1, PUSH_HEAD + blob(SMALL, "none", dtype=2)),
    "PUSH whose tensors have dtype 2", error=("message", "unsupported_d_type"))
add("blob_rank_too_large", frame(6, 1, PUSH_HEAD + blob([([1] * 9, [1.0])], "none")),
    "PUSH with a rank-9 tensor (limit 8)", error=("message", "invalid_shape"))
add("blob_too_many_tensors", frame(6, 1, PUSH_HEAD + blob([([1], [1.0])] * 65, "none")),
    "PUSH with 65 tensors (limit 64)", error=("message", "invalid_shape"))
add("blob_raw_size_mismatch", frame(6, 1, PUSH_HEAD + blob(SMALL, "none", raw_size=40, stored=raw_bytes(SMALL)[:40])),
    "PUSH whose declared raw size (40) is not 4 x the shapes' 9 elements", error=("message", "size_mismatch"))
add("blob_stored_beyond_payload", frame(6, 1, (PUSH_HEAD + blob(SMALL, "none"))[:-4]),
    "PUSH whose stored size runs past the end of the payload", error=("message", "malformed_payload"))
add("blob_trailing_bytes", frame(6, 1, PUSH_HEAD + blob(SMALL, "none") + b"\x00\x00"),
    "PUSH with two bytes after the blob's data", error=("message", "trailing_bytes"))
add("blob_decompression_bomb", frame(6, 1, PUSH_HEAD + blob([([20000, 5000], [])], "zlib", raw_size=400000000,
                                                            stored=zlib.compress(b"\x00" * 4096, 9))),
    "PUSH declaring a 20000x5000 tensor (400 MB) with a tiny zlib stream: rejected before inflating",
    error=("message", "decompressed_too_large"))
add("blob_inflates_past_declared", frame(6, 1, PUSH_HEAD + blob([([4], [0.0] * 4)], "zlib",
                                                                stored=zlib.compress(b"\x00" * 100000, 9))),
    "PUSH declaring 16 bytes whose zlib stream inflates to 100,000: inflation stops at the declared size",
    error=("message", "size_mismatch"))
add("blob_inflates_short", frame(6, 1, PUSH_HEAD + blob([([4], [0.0] * 4)], "zlib",
                                                        stored=zlib.compress(b"\x00" * 8))),
    "PUSH declaring 16 bytes whose zlib stream ends after 8", error=("message", "size_mismatch"))
add("blob_corrupt_zlib", frame(6, 1, PUSH_HEAD + blob(SMALL, "zlib", stored=b"\x78\x9c\xff\xff\xff\xff")),
    "PUSH whose zlib stream is not valid deflate data", error=("message", "corrupt_compressed_data"))
add("blob_raw_stored_size_mismatch", frame(6, 1, PUSH_HEAD + blob(SMALL, "none", stored=raw_bytes(SMALL) + b"\0" * 4)),
    "PUSH in mode none whose stored size (40) differs from its raw size (36)", error=("message", "size_mismatch"))

# ---- checkpoint files -----------------------------------------------------
def checkpoint(version, datasets, tensors, mode="shuffle-zlib", magic=b"FEDK", fmt=1, sections=None, reserved=0):
    b = blob(tensors, mode, level=1)
    body = magic + u16(fmt) + u16(reserved) + u64(version) + u64(datasets) + u32(len(b)) + b
    if sections is not None:
        body += u16(len(sections)) + b"".join(u16(tag) + u32(len(data)) + data for tag, data in sections)
    return body + u32(zlib.crc32(body))


def recent_pushes(records):
    return u32(len(records)) + b"".join(string(c) + u64(p) + u64(v) + u64(d) for c, p, v, d in records)


ck = checkpoint(5, 25000, SMALL)
add("checkpoint_valid", ck, "a checkpoint file: version 5, 25,000 samples, two small tensors, shuffle-zlib",
    [{"type": "checkpoint", "message": {"version": 5, "datasets": 25000, "tensors": tensors_json(SMALL)}}],
    kind="checkpoint")
add("checkpoint_bad_crc", ck[:-1] + bytes([ck[-1] ^ 0x80]), "a checkpoint whose CRC is wrong",
    error=("checkpoint", "checksum_mismatch"), kind="checkpoint")
add("checkpoint_truncated", ck[:-10], "a checkpoint cut 10 bytes short (a half-written file)",
    error=("checkpoint", "truncated"), kind="checkpoint")
add("checkpoint_foreign", b"\x80\x04\x95" + ck[3:], "a file that is not a checkpoint (a Python pickle's first bytes)",
    error=("checkpoint", "bad_magic"), kind="checkpoint")
RECENT = [("alice", 7, 4, 20000), ("bob", 0xFFFFFFFFFFFFFFFF, 5, 25000)]
add("checkpoint_format2", checkpoint(5, 25000, SMALL, fmt=2, sections=[(1, recent_pushes(RECENT)),
                                                                      (0x8001, b"optional, skipped")]),
    "a format-2 checkpoint: the recent pushes section (tag 1) and an unknown optional section (tag 0x8001)",
    [{"type": "checkpoint", "message": {"version": 5, "datasets": 25000, "tensors": tensors_json(SMALL),
                                        "recent_pushes": [dict(client_id=c, push_id=p, version=v, datasets=d)
                                                          for c, p, v, d in RECENT]}}],
    kind="checkpoint")
def f64(x): return struct.pack(">d", x)
STATE = (u16(1) + string("alice") + u64(600) + u64(2) + f64(0.5) + f64(1.25) + u32(len(blob(SMALL, "none")))
         + blob(SMALL, "none")
         + u16(1) + string("m") + u32(len(blob(SMALL, "none"))) + blob(SMALL, "none")
         + u16(1) + string("clip") + f64(0.75))
add("checkpoint_strategy_state", checkpoint(5, 25000, SMALL, fmt=2, sections=[(2, STATE)]),
    "a format-2 checkpoint with a strategy state (tag 2): one buffered update, a tensor list 'm', a scalar 'clip'",
    [{"type": "checkpoint", "message": {"version": 5, "datasets": 25000, "tensors": tensors_json(SMALL),
                                        "strategy_state": {
                                            "buffer": [{"client_id": "alice", "samples": 600, "staleness": 2,
                                                        "weight": 0.5, "norm": 1.25, "delta": tensors_json(SMALL)}],
                                            "tensors": {"m": tensors_json(SMALL)}, "scalars": {"clip": 0.75}}}}],
    kind="checkpoint")
def checkpoint_fp16(version, datasets, tensors):
    b = blob3(tensors, "fp16")[0]
    body = b"FEDK" + u16(1) + u16(0) + u64(version) + u64(datasets) + u32(len(b)) + b
    return body + u32(zlib.crc32(body))


add("checkpoint_fp16_blob", checkpoint_fp16(5, 25000, SMALL),
    "a checkpoint whose blob stores fp16: a checkpoint holds float32 (dtype 1) only",
    error=("checkpoint", "unsupported_d_type"), kind="checkpoint")
add("checkpoint_unknown_required_section", checkpoint(5, 25000, SMALL, fmt=2, sections=[(3, b"x")]),
    "a format-2 checkpoint with a section tag (3) this version does not define and may not skip",
    error=("checkpoint", "unsupported_version"), kind="checkpoint")
add("checkpoint_reserved_nonzero", checkpoint(5, 25000, SMALL, reserved=1),
    "a checkpoint whose reserved field is 1 (a future format's bit): refused", error=("checkpoint", "unsupported_version"),
    kind="checkpoint")
add("checkpoint_future_format", checkpoint(5, 25000, SMALL, fmt=3), "a checkpoint of format version 3",
    error=("checkpoint", "unsupported_version"), kind="checkpoint")

# ---- version 4: rounds (SPEC.md section 12) -------------------------------
def key_values(pairs):
    """A list of (key, value) pairs as written: u16 count, then str key, str value each (no sorting here)."""
    return u16(len(pairs)) + b"".join(string(k) + string(v) for k, v in pairs)


def check_in(features, abilities, wait_ms, pairs):
    return u64(features) + u8(abilities) + u32(wait_ms) + key_values(pairs)


def assignment(kind, features, task, round_, model_version, deadline_ms, retry_ms, reason, pairs):
    return (u8(kind) + u64(features) + u64(task) + u64(round_) + u64(model_version) + u32(deadline_ms)
            + u32(retry_ms) + u8(reason) + key_values(pairs))


def report(task, samples, flags, blob_bytes):
    return u64(task) + u64(samples) + u8(flags) + blob_bytes


PROPS = [("os", "linux"), ("region", "eu-west"), ("r\u00e9seau", "wifi")]
add("check_in_basic", frame(12, 50, check_in(0, 1, 30000, PROPS), version=4),
    "CHECK_IN (version 4): no features, able to train, waits up to 30 s, three properties sorted by key",
    [msg("check_in", 50, features=0, abilities=1, wait_ms=30000, properties=dict(PROPS))], canonical=True)
add("check_in_no_properties", frame(12, 51, check_in(0x8000000000000005, 3, 0, []), version=4),
    "CHECK_IN with feature bits this generator does not know (0, 2 and 63: kept as given, ignored by a receiver), "
    "train and evaluate, wait 0 (answer at once), no properties",
    [msg("check_in", 51, features=0x8000000000000005, abilities=3, wait_ms=0, properties={})], canonical=True)
add("check_in_reserved_abilities", frame(12, 52, check_in(0, 0xFD, 1000, []), version=4),
    "CHECK_IN whose abilities byte sets reserved bits 2-7 (0xfd): a receiver ignores them and reads train",
    [msg("check_in", 52, features=0, abilities=1, wait_ms=1000, properties={})])
add("check_in_unsorted_properties", frame(12, 53, check_in(0, 1, 5000, PROPS[::-1]), version=4),
    "CHECK_IN whose properties are not sorted by key: accepted (a writer sorts them; a reader takes any order)",
    [msg("check_in", 53, features=0, abilities=1, wait_ms=5000, properties=dict(PROPS))])
PARAMS = [("epochs", "1"), ("learning_rate", "0.001")]
add("assignment_train", frame(13, 50, assignment(1, 0, 0xFEDCBA9876543210, 7, 42, 60000, 0, 0, PARAMS), version=4),
    "ASSIGNMENT (version 4): train from model version 42 for round 7, task id 0xfedcba9876543210, 60 s to report, "
    "two round parameters",
    [msg("assignment", 50, kind=1, features=0, task_id=0xFEDCBA9876543210, round=7, model_version=42,
         deadline_ms=60000, retry_after_ms=0, reason=0, parameters=dict(PARAMS))], canonical=True)
add("assignment_come_back", frame(13, 51, assignment(0, 0, 0, 0, 0, 0, 1500, 2, []), version=4),
    "ASSIGNMENT come back after 1.5 s: the round is full (reason 2)",
    [msg("assignment", 51, kind=0, features=0, task_id=0, round=0, model_version=0, deadline_ms=0,
         retry_after_ms=1500, reason=2, parameters={})], canonical=True)
add("assignment_unknown_kind", frame(13, 52, assignment(9, 1 << 40, 77, 3, 5, 1000, 2000, 0, []), version=4),
    "ASSIGNMENT of kind 9 (defined by a feature this peer does not speak) with feature bit 40: decodes; a client "
    "that does not know the kind treats it as come back after retry_after_ms",
    [msg("assignment", 52, kind=9, features=1 << 40, task_id=77, round=3, model_version=5, deadline_ms=1000,
         retry_after_ms=2000, reason=0, parameters={})], canonical=True)
add("report_full", frame(14, 54, report(0xFEDCBA9876543210, 600, 0, blob(SMALL, "none")), version=4),
    "REPORT (version 4) of task 0xfedcba9876543210: full weights, 600 samples trained on in this task",
    [msg("report", 54, task_id=0xFEDCBA9876543210, samples=600, compression="none", tensors=tensors_json(SMALL))],
    canonical=True)
b_rep, dec_rep = blob3(DELTA, "fp16")
add("report_delta", frame(14, 55, report(77, 1200, 1, b_rep), version=4),
    "REPORT of task 77 carrying W - W_base (flag bit 0) as fp16, 1,200 samples",
    [msg("report", 55, task_id=77, samples=1200, delta=True, encoding="fp16", compression="none",
         tensors=tensors_json(dec_rep))], canonical=True)
add("report_shuffle_zlib", frame(14, 56, report(78, 32, 0, blob(MULTI, "shuffle-zlib")), version=4),
    "REPORT of full weights in shuffle-zlib",
    [msg("report", 56, task_id=78, samples=32, compression="shuffle-zlib", tensors=tensors_json(MULTI))])
add("check_in_in_v3", frame(12, 57, check_in(0, 1, 1000, []), version=3),
    "CHECK_IN in a version-3 frame: type 0x0c is not defined before version 4",
    error=("frame", "unknown_message_type"))
add("report_in_v3", frame(14, 58, report(77, 10, 0, blob(SMALL, "none")), version=3),
    "REPORT in a version-3 frame: type 0x0e is not defined before version 4", error=("frame", "unknown_message_type"))
add("check_in_duplicate_key", frame(12, 59, check_in(0, 1, 1000, [("os", "linux"), ("os", "ios")]), version=4),
    "CHECK_IN naming the property 'os' twice", error=("message", "malformed_payload"))
add("check_in_empty_key", frame(12, 60, check_in(0, 1, 1000, [("", "x")]), version=4),
    "CHECK_IN with an empty property key", error=("message", "invalid_string"))
add("check_in_key_too_long", frame(12, 61, check_in(0, 1, 1000, [("k" * 65, "x")]), version=4),
    "CHECK_IN with a 65-byte property key (at most 64)", error=("message", "invalid_string"))
add("check_in_value_too_long", frame(12, 62, check_in(0, 1, 1000, [("k", "v" * 257)]), version=4),
    "CHECK_IN with a 257-byte property value (at most 256)", error=("message", "invalid_string"))
add("check_in_too_many_pairs", frame(12, 63, check_in(0, 1, 1000, [("k%02d" % i, "") for i in range(65)]), version=4),
    "CHECK_IN with 65 properties (at most 64)", error=("message", "malformed_payload"))
add("check_in_value_invalid_utf8", frame(12, 64, check_in(0, 1, 1000, [("os", b"\xc3")]), version=4),
    "CHECK_IN whose property value is not UTF-8", error=("message", "invalid_string"))
add("assignment_train_task_zero", frame(13, 65, assignment(1, 0, 0, 7, 42, 60000, 0, 0, []), version=4),
    "ASSIGNMENT of a train task with task id 0 (0 names no task)", error=("message", "malformed_payload"))
add("assignment_short", frame(13, 66, assignment(0, 0, 0, 0, 0, 0, 1500, 2, [])[:-3], version=4),
    "ASSIGNMENT cut inside its reason and parameter count", error=("message", "malformed_payload"))
add("report_undefined_flags", frame(14, 67, report(77, 10, 0b10, blob(SMALL, "none")), version=4),
    "REPORT with flag bit 1 set (only bit 0 is defined)", error=("message", "malformed_payload"))
add("report_task_zero", frame(14, 68, report(0, 10, 0, blob(SMALL, "none")), version=4),
    "REPORT of task id 0", error=("message", "malformed_payload"))
add("report_trailing_bytes", frame(14, 69, report(77, 10, 0, blob(SMALL, "none")) + b"\x00", version=4),
    "REPORT with a byte after its blob", error=("message", "trailing_bytes"))
add("error_unknown_task", frame(8, 70, u16(44) + u8(0) + u8(1) + u8(4) + string("task 77 is unknown"), version=4),
    "ERROR unknown_task (44, version 4): a REPORT naming a task the server did not give or no longer holds",
    [msg("error", 70, code=44, retryable=False, min_version=1, max_version=4, message="task 77 is unknown")],
    canonical=True)
add("error_round_closed", frame(8, 71, u16(45) + u8(0) + u8(1) + u8(4) + string("round 7 closed"), version=4),
    "ERROR round_closed (45, version 4): the round closed or was abandoned without this report",
    [msg("error", 71, code=45, retryable=False, min_version=1, max_version=4, message="round 7 closed")],
    canonical=True)
add("ack_v4", frame(7, 54, u64(43) + u64(60600), version=4), "ACK of a REPORT: the version the round produced",
    [msg("ack", 54, version=43, datasets=60600)], canonical=True)
add("welcome_v4", frame(2, 1, u8(4) + u8(0b111) + string("fed-server") + u64(12) + u64(60000) + u32(1 << 20)
                        + u64(796840) + u64(60000) + u8(0b11111) + u8(0)),
    "WELCOME choosing version 4 (in a version-1 frame): the same fields as version 3",
    [msg("welcome", 1, version=4, compressions=7, server_id="fed-server", model_version=12, datasets=60000,
         max_payload=1 << 20, max_decompressed=796840, max_datasets=60000, encodings=31, delta_encoding=0)],
    canonical=True)
add("push_v4", frame(6, 72, string("eve") + u64(600) + u64(41) + u64(78) + u8(0) + blob(SMALL, "none"), version=4),
    "PUSH in a version-4 frame: version 3's layout; datasets (600) counts the samples of this update alone",
    [msg("push", 72, client_id="eve", datasets=600, base_version=41, push_id=78, compression="none",
         tensors=tensors_json(SMALL))], canonical=True)


# ---- version 4, feature evaluation (bit 1): federated evaluation (SPEC.md section 12.10) ----
def evaluation_report(task, model_version, examples, loss, metrics):
    """metrics: (name, value) pairs as written (no sorting here)."""
    return (u64(task) + u64(model_version) + u64(examples) + f64(loss) + u16(len(metrics))
            + b"".join(string(n) + f64(v) for n, v in metrics))


METRICS = [("accuracy", 0.875), ("f1_macro", 0.5)]
add("assignment_evaluate", frame(13, 80, assignment(2, 2, 99, 0, 42, 60000, 0, 0, []), version=4),
    "ASSIGNMENT of kind 2 (evaluate, feature bit 1 agreed): evaluate model version 42 on held-out data, task 99, "
    "60 s to report",
    [msg("assignment", 80, kind=2, features=2, task_id=99, round=0, model_version=42, deadline_ms=60000,
         retry_after_ms=0, reason=0, parameters={})], canonical=True)
add("evaluation_report_basic", frame(15, 81, evaluation_report(0xFEDCBA9876543210, 42, 1200, 0.3125, METRICS),
                                     version=4),
    "EVALUATION_REPORT (version 4, feature evaluation) of task 0xfedcba9876543210: model version 42 on 1,200 "
    "held-out examples, mean loss 0.3125, two metrics sorted by name",
    [msg("evaluation_report", 81, task_id=0xFEDCBA9876543210, model_version=42, examples=1200, loss=0.3125,
         metrics=dict(METRICS))], canonical=True)
add("evaluation_report_no_metrics", frame(15, 82, evaluation_report(9, 7, 1, 2.0, []), version=4),
    "EVALUATION_REPORT with the loss alone (no named metric)",
    [msg("evaluation_report", 82, task_id=9, model_version=7, examples=1, loss=2.0, metrics={})], canonical=True)
add("evaluation_report_unsorted", frame(15, 83, evaluation_report(9, 7, 10, 0.5, METRICS[::-1]), version=4),
    "EVALUATION_REPORT whose metrics are not sorted by name: accepted (a writer sorts them)",
    [msg("evaluation_report", 83, task_id=9, model_version=7, examples=10, loss=0.5, metrics=dict(METRICS))])
add("evaluation_report_in_v3", frame(15, 84, evaluation_report(9, 7, 10, 0.5, []), version=3),
    "EVALUATION_REPORT in a version-3 frame: type 0x0f is not defined before version 4",
    error=("frame", "unknown_message_type"))
add("evaluation_report_task_zero", frame(15, 85, evaluation_report(0, 7, 10, 0.5, []), version=4),
    "EVALUATION_REPORT of task id 0", error=("message", "malformed_payload"))
add("evaluation_report_duplicate_metric",
    frame(15, 86, evaluation_report(9, 7, 10, 0.5, [("accuracy", 0.5), ("accuracy", 0.25)]), version=4),
    "EVALUATION_REPORT naming the metric 'accuracy' twice", error=("message", "malformed_payload"))
add("evaluation_report_metric_named_loss", frame(15, 87, evaluation_report(9, 7, 10, 0.5, [("loss", 0.5)]), version=4),
    "EVALUATION_REPORT with a metric named 'loss' (the loss has its own field)", error=("message", "malformed_payload"))
add("evaluation_report_bad_metric_name", frame(15, 88, evaluation_report(9, 7, 10, 0.5, [("Accuracy", 0.5)]),
                                               version=4),
    "EVALUATION_REPORT with a metric name outside a-z, 0-9 and _ (an upper-case letter)",
    error=("message", "invalid_string"))
add("evaluation_report_too_many_metrics",
    frame(15, 89, evaluation_report(9, 7, 10, 0.5, [("m%02d" % i, 0.0) for i in range(65)]), version=4),
    "EVALUATION_REPORT with 65 metrics (at most 64)", error=("message", "malformed_payload"))
add("evaluation_report_trailing_bytes", frame(15, 90, evaluation_report(9, 7, 10, 0.5, []) + b"\x00", version=4),
    "EVALUATION_REPORT with a byte after its last metric", error=("message", "trailing_bytes"))
add("assignment_evaluate_task_zero", frame(13, 91, assignment(2, 2, 0, 0, 42, 60000, 0, 0, []), version=4),
    "ASSIGNMENT of an evaluate task with task id 0", error=("message", "malformed_payload"))


# ---- version 4, feature secure aggregation (bit 2): SecAgg+ (SPEC.md section 12.11) ----
# The cryptography of a fixed-seed cohort of three (secagg_three_clients.json) is computed first: the
# message vectors below carry its real public keys, sealed bundles and shares.
P127 = (1 << 127) - 1
SECAGG_SALT = b"swift-federated secagg v1"
SECAGG_AD_LABEL = b"swift-federated secagg share v1"
SECAGG_ROUND = 0x0102030405060708
SECAGG_IDS = [1, 2, 3]
SECAGG_T = 2
SECAGG_BITS = 32
SECAGG_INPUTS = {
    1: [0, 1, 1000, 0xFFFFFFFF, 0x80000000],
    2: [7, 0xFFFFFFFE, 2000, 5, 0x80000000],
    3: [0x12345678, 3, 0xFFFFF000, 0x7FFFFFFF, 1],
}


def sha256(data):
    import hashlib
    return hashlib.sha256(data).digest()


def fixed(label):
    """32 fixed bytes named by `label`: every secret of the vector is one of these."""
    return sha256(b"swift-federated secagg vector: " + label.encode())


def secagg_crypto():
    """Every value of a SecAgg+ round of clients 1, 2, 3 (complete graph, t = 2, 32-bit ring), from fixed
    private keys, self-mask seeds, Shamir coefficients and nonces. Needs Python's `cryptography` package."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = serialization.Encoding.Raw

    def public(private):
        return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(raw, serialization.PublicFormat.Raw)

    def derive(private, peer_public, purpose, i, j):
        shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
        info = purpose + u64(SECAGG_ROUND) + u32(min(i, j)) + u32(max(i, j))
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=SECAGG_SALT, info=info).derive(shared), shared

    def prg(seed, count):
        """ChaCha20 keystream (RFC 8439) under the seed, nonce 0, counter 0, as little-endian u32s mod 2^b."""
        stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor().update(b"\0" * (4 * count))
        return [v & ((1 << SECAGG_BITS) - 1) for v in struct.unpack("<%dI" % count, stream)]

    def chunks(secret):
        return [int.from_bytes(secret[k:k + 15], "big") for k in range(0, len(secret), 15)]

    def share(secret, coefficients, x):
        """The SecretShare encoding of `x`'s share: x u32, length u16, one 16-byte value per 15-byte chunk."""
        values = [(c0 + sum(c * pow(x, d + 1, P127) for d, c in enumerate(cs))) % P127
                  for c0, cs in zip(chunks(secret), coefficients)]
        return u32(x) + u16(len(secret)) + b"".join(v.to_bytes(16, "big") for v in values)

    def recover(shares):
        """Lagrange interpolation at 0 of shares (x, encoded), chunk by chunk, back to bytes."""
        length = struct.unpack(">H", shares[0][1][4:6])[0]
        out = b""
        for k in range((length + 14) // 15):
            pts = [(x, int.from_bytes(enc[6 + 16 * k:22 + 16 * k], "big")) for x, enc in shares]
            total = 0
            for xi, yi in pts:
                num, den = 1, 1
                for xj, _ in pts:
                    if xj != xi:
                        num, den = num * (-xj) % P127, den * (xi - xj) % P127
                total = (total + yi * num * pow(den, P127 - 2, P127)) % P127
            out += total.to_bytes(min(15, length - 15 * k), "big")
        return out

    mod = 1 << SECAGG_BITS
    n = len(SECAGG_INPUTS[1])
    clients = {}
    for i in SECAGG_IDS:
        c, s, b = fixed("c%d" % i), fixed("s%d" % i), fixed("b%d" % i)
        coefficients = {name: [[int.from_bytes(fixed("coefficient %s%d chunk %d degree %d" % (name, i, k, d + 1))[:16],
                                                "big") % P127 for d in range(SECAGG_T - 1)]
                               for k in range(3)] for name in ("s", "b")}
        clients[i] = dict(id=i, encryption_private_key=c, masking_private_key=s, self_mask_seed=b,
                          encryption_public_key=public(c), masking_public_key=public(s),
                          shamir_coefficients=coefficients, input=SECAGG_INPUTS[i])
    pairs = {}
    for i in SECAGG_IDS:
        for j in SECAGG_IDS:
            if i < j:
                ci, cj = clients[i], clients[j]
                share_key, share_secret = derive(ci["encryption_private_key"], cj["encryption_public_key"], b"share key", i, j)
                seed, mask_secret = derive(ci["masking_private_key"], cj["masking_public_key"], b"mask seed", i, j)
                assert (share_key, seed) == (derive(cj["encryption_private_key"], ci["encryption_public_key"],
                                                    b"share key", i, j)[0],
                                             derive(cj["masking_private_key"], ci["masking_public_key"], b"mask seed",
                                                    i, j)[0])
                pairs[(i, j)] = dict(low=i, high=j, encryption_shared_secret=share_secret, share_key=share_key,
                                     masking_shared_secret=mask_secret, mask_seed=seed, mask=prg(seed, n))
    bundles = []
    for i in SECAGG_IDS:
        ci = clients[i]
        for j in SECAGG_IDS:
            if j == i:
                continue
            plain = (share(ci["masking_private_key"], ci["shamir_coefficients"]["s"], j)
                     + share(ci["self_mask_seed"], ci["shamir_coefficients"]["b"], j))
            nonce = fixed("nonce %d to %d" % (i, j))[:12]
            ad = SECAGG_AD_LABEL + u64(SECAGG_ROUND) + u32(i) + u32(j)
            sealed = nonce + ChaCha20Poly1305(pairs[(min(i, j), max(i, j))]["share_key"]).encrypt(nonce, plain, ad)
            bundles.append(dict(sender=i, recipient=j, nonce=nonce, associated_data=ad,
                                masking_key_share=plain[:54], self_mask_seed_share=plain[54:], plaintext=plain,
                                sealed=sealed))
    for i in SECAGG_IDS:
        ci = clients[i]
        ci["self_mask"] = prg(ci["self_mask_seed"], n)
        y = list(ci["input"])
        for k in range(n):
            y[k] = (y[k] + ci["self_mask"][k]) % mod
        for j in SECAGG_IDS:
            if j != i:
                m = pairs[(min(i, j), max(i, j))]["mask"]
                sign = 1 if j > i else -1
                y = [(y[k] + sign * m[k]) % mod for k in range(n)]
        ci["masked_input"] = y
    total = [sum(clients[i]["masked_input"][k] for i in SECAGG_IDS) % mod for k in range(n)]
    inputs_sum = [sum(clients[i]["input"][k] for i in SECAGG_IDS) % mod for k in range(n)]
    # The pairwise masks cancel in the sum; the self masks are what the unmask stage removes.
    unmasked = [(total[k] - sum(clients[i]["self_mask"][k] for i in SECAGG_IDS)) % mod for k in range(n)]
    assert unmasked == inputs_sum and total != inputs_sum
    # Unmask with every input in the sum: each client reveals its share of each neighbour's self-mask seed (kind 1).
    unmask = {i: [dict(owner=b["sender"], kind=1, share=b["self_mask_seed_share"]) for b in bundles
                  if b["recipient"] == i] for i in SECAGG_IDS}
    for i in SECAGG_IDS:
        held = [(b["recipient"], b["self_mask_seed_share"]) for b in bundles if b["sender"] == i]
        assert recover(held) == clients[i]["self_mask_seed"]
        assert recover([(b["recipient"], b["masking_key_share"]) for b in bundles if b["sender"] == i]) == \
            clients[i]["masking_private_key"]
    return dict(clients=clients, pairs=pairs, bundles=bundles, masked_sum=total, sum=inputs_sum, unmask=unmask, n=n)


def secagg_vector_json(sc):
    def h(b): return b.hex()
    return {
        "description": "SecAgg+ (SPEC.md section 12.11) for clients 1, 2 and 3 on the complete graph (k = 2), "
                       "threshold t = 2, ring Z_(2^32), inputs of 5 elements: every value a client and the server "
                       "compute, from fixed private keys, self-mask seeds, Shamir coefficients and nonces. Written "
                       "by Protocol/vectors/generate.py with Python's cryptography package.",
        "round": SECAGG_ROUND, "threshold": SECAGG_T, "ring_bits": SECAGG_BITS, "element_count": sc["n"],
        "participants": SECAGG_IDS,
        "neighbours": {str(i): [j for j in SECAGG_IDS if j != i] for i in SECAGG_IDS},
        "notes": [
            "byte strings are lowercase hex; integers of the ring are numbers; u32/u64 fields in derivation inputs "
            "are big-endian.",
            "X25519 (RFC 7748): private keys are 32 raw bytes as given (clamped by the scalar multiplication).",
            "HKDF-SHA256 (RFC 5869): salt 'swift-federated secagg v1'; info = purpose ('share key' or 'mask seed', "
            "ASCII) + round (u64) + smaller id (u32) + larger id (u32); 32 bytes out. Input: the X25519 shared "
            "secret of the encryption keys c (share key) or the masking keys s (mask seed).",
            "Shamir over GF(2^127 - 1): a secret of 32 bytes is cut into chunks of 15, 15 and 2 bytes, each read "
            "big-endian as a field element and shared with its own polynomial chunk + c_1 x + ... + c_(t-1) x^(t-1); "
            "'shamir_coefficients'[secret][chunk] lists c_1 ... c_(t-1) ('s': the masking private key, 'b': the "
            "self-mask seed). A share's encoding: x (u32), the secret's length (u16), each chunk's value (16 bytes, "
            "big-endian).",
            "share bundle plaintext: the recipient's masking-key share then its self-mask-seed share (x = the "
            "recipient's id). Sealed with ChaCha20-Poly1305 (RFC 8439) under the pair's share key, associated data "
            "'swift-federated secagg share v1' + round (u64) + sender (u32) + recipient (u32); sealed = nonce (12) + "
            "ciphertext + tag (16). A client draws the nonce at random; here it is fixed.",
            "mask expansion: the ChaCha20 keystream (RFC 8439 block function) keyed by the 32-byte seed, nonce of 12 "
            "zero bytes, block counter from 0, read as little-endian u32s, each reduced mod 2^b.",
            "masked input of i: input + self_mask + sum over neighbours j > i of mask(s_ij) - sum over j < i of "
            "mask(s_ij), mod 2^b. The pairwise masks cancel in the sum of the masked inputs ('masked_sum'); minus "
            "the three self masks it is the inputs' sum ('sum').",
            "unmask: with every input in the sum, each client reveals its share of each neighbour's self-mask seed "
            "(SECAGG_UNMASK kind 1); the server rebuilds each seed from t shares and subtracts its self mask.",
        ],
        "clients": [
            {"id": c["id"], "encryption_private_key": h(c["encryption_private_key"]),
             "masking_private_key": h(c["masking_private_key"]), "self_mask_seed": h(c["self_mask_seed"]),
             "shamir_coefficients": {name: [[str(v) for v in chunk] for chunk in cs]
                                     for name, cs in c["shamir_coefficients"].items()},
             "encryption_public_key": h(c["encryption_public_key"]), "masking_public_key": h(c["masking_public_key"]),
             "input": c["input"], "self_mask": c["self_mask"], "masked_input": c["masked_input"],
             "unmask": [{"owner": s["owner"], "kind": s["kind"], "share": h(s["share"])} for s in sc["unmask"][c["id"]]]}
            for c in sc["clients"].values()],
        "pairs": [
            {"low": p["low"], "high": p["high"], "encryption_shared_secret": h(p["encryption_shared_secret"]),
             "share_key": h(p["share_key"]), "masking_shared_secret": h(p["masking_shared_secret"]),
             "mask_seed": h(p["mask_seed"]), "mask": p["mask"]}
            for p in sc["pairs"].values()],
        "bundles": [
            {"sender": b["sender"], "recipient": b["recipient"], "masking_key_share": h(b["masking_key_share"]),
             "self_mask_seed_share": h(b["self_mask_seed_share"]), "plaintext": h(b["plaintext"]),
             "nonce": h(b["nonce"]), "associated_data": h(b["associated_data"]), "sealed": h(b["sealed"])}
            for b in sc["bundles"]],
        "masked_sum": sc["masked_sum"],
        "sum": sc["sum"],
    }


SC = secagg_crypto()
with open(os.path.join(HERE, "secagg_three_clients.json"), "w") as fh:
    json.dump(secagg_vector_json(SC), fh, indent=1)
    fh.write("\n")


def secagg_keys(task, c, s):
    return u64(task) + c + s


def secagg_roster(task, me, neighbours):
    return u64(task) + u32(me) + u16(len(neighbours)) + b"".join(u32(i) + c + s for i, c, s in neighbours)


def secagg_bundles(task, bundles):
    """SECAGG_SHARES and SECAGG_INBOX: u16 count, then (participant u32, u16 length, sealed bytes) each."""
    return u64(task) + u16(len(bundles)) + b"".join(u32(i) + u16(len(b)) + b for i, b in bundles)


def secagg_input(task, width, values, count=None):
    packed = b"".join(v.to_bytes(width, "little") for v in values)
    return u64(task) + u8(width) + u32(len(values) if count is None else count) + packed


def secagg_survivors(task, contributors, ids):
    return u64(task) + u32(contributors) + u16(len(ids)) + b"".join(u32(i) for i in ids)


def secagg_unmask(task, shares):
    return u64(task) + u16(len(shares)) + b"".join(u32(o) + u8(k) + u16(len(s)) + s for o, k, s in shares)


def keys_json(c, s): return dict(encryption_key=c.hex(), masking_key=s.hex())
def bundles_json(bs): return [dict(participant=i, sealed=b.hex()) for i, b in bs]
def shares_json(ss): return [dict(owner=o, kind=k, share=s.hex()) for o, k, s in ss]


SA = {i: SC["clients"][i] for i in SECAGG_IDS}
KEYS = {i: (SA[i]["encryption_public_key"], SA[i]["masking_public_key"]) for i in SECAGG_IDS}
SEALED = {(b["sender"], b["recipient"]): b["sealed"] for b in SC["bundles"]}
SEED_SHARE = {(b["sender"], b["recipient"]): b["self_mask_seed_share"] for b in SC["bundles"]}
KEY_SHARE = {(b["sender"], b["recipient"]): b["masking_key_share"] for b in SC["bundles"]}
TASK2 = 0x5EC0000000000002
ROSTER2 = [(1,) + KEYS[1], (3,) + KEYS[3]]
SHARES2 = [(1, SEALED[(2, 1)]), (3, SEALED[(2, 3)])]
INBOX2 = [(1, SEALED[(1, 2)]), (3, SEALED[(3, 2)])]
UNMASK2 = [(1, 1, SEED_SHARE[(1, 2)]), (3, 1, SEED_SHARE[(3, 2)])]
INPUT16 = [0, 1, 0x8000, 0xFFFF, 0x1234]
SECAGG_PARAMS = [("epochs", "1"), ("secagg.bits", "32"), ("secagg.clip", "10.0"), ("secagg.k", "2"),
                 ("secagg.n", "3"), ("secagg.stage-ms", "10000"), ("secagg.t", "2"), ("secagg.w", "60000")]
add("assignment_secure_train", frame(13, 100, assignment(3, 4, TASK2, 7, 42, 60000, 0, 0, SECAGG_PARAMS), version=4),
    "ASSIGNMENT of kind 3 (secure train, feature bit 2 agreed): train from model version 42 for round 7, then take "
    "part in its secure aggregation as task 0x5ec0000000000002 with the secagg.* parameters",
    [msg("assignment", 100, kind=3, features=4, task_id=TASK2, round=7, model_version=42, deadline_ms=60000,
         retry_after_ms=0, reason=0, parameters=dict(SECAGG_PARAMS))], canonical=True)
add("secagg_keys", frame(0x10, 101, secagg_keys(TASK2, *KEYS[2]), version=4),
    "SECAGG_KEYS (version 4, feature secure aggregation): client 2's X25519 public keys c and s of "
    "secagg_three_clients.json",
    [msg("secagg_keys", 101, task_id=TASK2, **keys_json(*KEYS[2]))], canonical=True)
add("secagg_roster", frame(0x11, 101, secagg_roster(TASK2, 2, ROSTER2), version=4),
    "SECAGG_ROSTER: the task's participant id is 2; its neighbours 1 and 3 advertised these keys",
    [msg("secagg_roster", 101, task_id=TASK2, participant=2,
         neighbours=[dict(id=i, **keys_json(c, s)) for i, c, s in ROSTER2])], canonical=True)
add("secagg_roster_no_neighbours", frame(0x11, 102, secagg_roster(TASK2, 4096, []), version=4),
    "SECAGG_ROSTER of participant 4096 (the largest id) with no neighbour: decodes (a server sends no such roster: "
    "a client with fewer than t neighbours gets round_closed)",
    [msg("secagg_roster", 102, task_id=TASK2, participant=4096, neighbours=[])], canonical=True)
add("secagg_shares", frame(0x12, 103, secagg_bundles(TASK2, SHARES2), version=4),
    "SECAGG_SHARES: client 2's sealed share bundles for recipients 1 and 3 (nonce, ciphertext, tag: 136 bytes each)",
    [msg("secagg_shares", 103, task_id=TASK2, bundles=bundles_json(SHARES2))], canonical=True)
add("secagg_inbox", frame(0x13, 103, secagg_bundles(TASK2, INBOX2), version=4),
    "SECAGG_INBOX: the bundles clients 1 and 3 sealed to client 2, senders ascending",
    [msg("secagg_inbox", 103, task_id=TASK2, bundles=bundles_json(INBOX2))], canonical=True)
add("secagg_input", frame(0x14, 104, secagg_input(TASK2, 4, SA[2]["masked_input"]), version=4),
    "SECAGG_INPUT: client 2's masked input, 5 elements of Z_(2^32) as 4-byte little-endian integers",
    [msg("secagg_input", 104, task_id=TASK2, element_bytes=4, values=SA[2]["masked_input"])], canonical=True)
add("secagg_input_16", frame(0x14, 105, secagg_input(TASK2, 2, INPUT16), version=4),
    "SECAGG_INPUT of a ring of at most 16 bits: 2-byte little-endian elements",
    [msg("secagg_input", 105, task_id=TASK2, element_bytes=2, values=INPUT16)], canonical=True)
add("secagg_survivors", frame(0x15, 104, secagg_survivors(TASK2, 3, [1, 3]), version=4),
    "SECAGG_SURVIVORS: 3 masked inputs are in the sum, both of client 2's inbox senders among them",
    [msg("secagg_survivors", 104, task_id=TASK2, contributors=3, survivors=[1, 3])], canonical=True)
add("secagg_unmask", frame(0x16, 106, secagg_unmask(TASK2, UNMASK2), version=4),
    "SECAGG_UNMASK: client 2 reveals its shares of the self-mask seeds of survivors 1 and 3 (kind 1)",
    [msg("secagg_unmask", 106, task_id=TASK2, shares=shares_json(UNMASK2))], canonical=True)
UNMASK_DROP = [(1, 1, SEED_SHARE[(1, 2)]), (3, 2, KEY_SHARE[(3, 2)])]
add("secagg_unmask_dropped", frame(0x16, 107, secagg_unmask(TASK2, UNMASK_DROP), version=4),
    "SECAGG_UNMASK after client 3 dropped: a self-mask seed share of survivor 1 (kind 1) and a masking-key share of "
    "3 (kind 2)",
    [msg("secagg_unmask", 107, task_id=TASK2, shares=shares_json(UNMASK_DROP))], canonical=True)

# Refused: each decodes up to one bad field (SPEC.md section 12.11's bounds).
BAD = [
    ("assignment_secure_train_task_zero", 13, assignment(3, 4, 0, 7, 42, 60000, 0, 0, []),
     "ASSIGNMENT of a secure-train task (kind 3) with task id 0", "malformed_payload"),
    ("secagg_keys_task_zero", 0x10, secagg_keys(0, *KEYS[2]), "SECAGG_KEYS of task id 0", "malformed_payload"),
    ("secagg_keys_truncated_key", 0x10, secagg_keys(TASK2, *KEYS[2])[:-1],
     "SECAGG_KEYS whose masking key has 31 bytes (a key is 32)", "malformed_payload"),
    ("secagg_keys_trailing_bytes", 0x10, secagg_keys(TASK2, *KEYS[2]) + b"\x00",
     "SECAGG_KEYS with a byte after the masking key", "trailing_bytes"),
    ("secagg_roster_participant_zero", 0x11, secagg_roster(TASK2, 0, ROSTER2),
     "SECAGG_ROSTER naming participant 0 (ids are 1-4096)", "malformed_payload"),
    ("secagg_roster_participant_too_large", 0x11, secagg_roster(TASK2, 4097, ROSTER2),
     "SECAGG_ROSTER naming participant 4097 (ids are 1-4096)", "malformed_payload"),
    ("secagg_roster_neighbour_too_large", 0x11, secagg_roster(TASK2, 2, [(1,) + KEYS[1], (4097,) + KEYS[3]]),
     "SECAGG_ROSTER with a neighbour id 4097", "malformed_payload"),
    ("secagg_roster_self_neighbour", 0x11, secagg_roster(TASK2, 2, [(1,) + KEYS[1], (2,) + KEYS[2]]),
     "SECAGG_ROSTER listing the participant (2) as its own neighbour", "malformed_payload"),
    ("secagg_roster_unsorted", 0x11, secagg_roster(TASK2, 2, ROSTER2[::-1]),
     "SECAGG_ROSTER whose neighbours are not in ascending order (3, 1)", "malformed_payload"),
    ("secagg_roster_duplicate_neighbour", 0x11, secagg_roster(TASK2, 2, [(1,) + KEYS[1], (1,) + KEYS[3]]),
     "SECAGG_ROSTER naming neighbour 1 twice (ids strictly ascending)", "malformed_payload"),
    ("secagg_roster_too_many", 0x11, u64(TASK2) + u32(2) + u16(4097),
     "SECAGG_ROSTER announcing 4,097 neighbours (at most 4,096): refused before anything is allocated",
     "malformed_payload"),
    ("secagg_roster_truncated_key", 0x11, secagg_roster(TASK2, 2, ROSTER2)[:-5],
     "SECAGG_ROSTER cut inside its last neighbour's masking key", "malformed_payload"),
    ("secagg_shares_participant_zero", 0x12, secagg_bundles(TASK2, [(0, SEALED[(2, 1)])]),
     "SECAGG_SHARES with a bundle for participant 0", "malformed_payload"),
    ("secagg_shares_unsorted", 0x12, secagg_bundles(TASK2, SHARES2[::-1]),
     "SECAGG_SHARES whose recipients are not ascending (3, 1)", "malformed_payload"),
    ("secagg_shares_empty_bundle", 0x12, secagg_bundles(TASK2, [(1, b"")]),
     "SECAGG_SHARES with a sealed bundle of 0 bytes (1-1,024)", "malformed_payload"),
    ("secagg_shares_bundle_too_long", 0x12, secagg_bundles(TASK2, [(1, b"\xab" * 1025)]),
     "SECAGG_SHARES with a sealed bundle of 1,025 bytes (at most 1,024)", "malformed_payload"),
    ("secagg_shares_bundle_truncated", 0x12, secagg_bundles(TASK2, SHARES2)[:-1],
     "SECAGG_SHARES whose last bundle is one byte shorter than its length", "malformed_payload"),
    ("secagg_inbox_duplicate_sender", 0x13, secagg_bundles(TASK2, [INBOX2[0], INBOX2[0]]),
     "SECAGG_INBOX with two bundles from sender 1", "malformed_payload"),
    ("secagg_inbox_sender_too_large", 0x13, secagg_bundles(TASK2, [(4097, SEALED[(1, 2)])]),
     "SECAGG_INBOX with a bundle from sender 4097", "malformed_payload"),
    ("secagg_inbox_too_many", 0x13, u64(TASK2) + u16(0xFFFF),
     "SECAGG_INBOX announcing 65,535 bundles (at most 4,096)", "malformed_payload"),
    ("secagg_input_task_zero", 0x14, secagg_input(0, 4, [1, 2]), "SECAGG_INPUT of task id 0", "malformed_payload"),
    ("secagg_input_width_3", 0x14, secagg_input(TASK2, 3, [1, 2]),
     "SECAGG_INPUT with 3-byte elements (2 or 4)", "malformed_payload"),
    ("secagg_input_width_8", 0x14, secagg_input(TASK2, 8, [1, 2]),
     "SECAGG_INPUT with 8-byte elements (2 or 4)", "malformed_payload"),
    ("secagg_input_short", 0x14, secagg_input(TASK2, 4, [1, 2, 3, 4], count=5),
     "SECAGG_INPUT announcing 5 elements and carrying 4", "malformed_payload"),
    ("secagg_input_huge_count", 0x14, secagg_input(TASK2, 4, [1], count=0xFFFFFFFF),
     "SECAGG_INPUT announcing 4,294,967,295 elements with 4 bytes of them: refused before anything is allocated",
     "malformed_payload"),
    ("secagg_input_trailing_bytes", 0x14, secagg_input(TASK2, 2, [1, 2]) + b"\x00",
     "SECAGG_INPUT with an odd byte after its 2-byte elements", "trailing_bytes"),
    ("secagg_survivors_unsorted", 0x15, secagg_survivors(TASK2, 3, [3, 1]),
     "SECAGG_SURVIVORS whose ids are not ascending", "malformed_payload"),
    ("secagg_survivors_zero", 0x15, secagg_survivors(TASK2, 3, [0, 1]),
     "SECAGG_SURVIVORS naming participant 0", "malformed_payload"),
    ("secagg_survivors_truncated", 0x15, secagg_survivors(TASK2, 3, [1, 3])[:-2],
     "SECAGG_SURVIVORS cut inside its last id", "malformed_payload"),
    ("secagg_unmask_kind_0", 0x16, secagg_unmask(TASK2, [(1, 0, SEED_SHARE[(1, 2)])]),
     "SECAGG_UNMASK with a share of kind 0 (1 or 2)", "malformed_payload"),
    ("secagg_unmask_kind_3", 0x16, secagg_unmask(TASK2, [(1, 3, SEED_SHARE[(1, 2)])]),
     "SECAGG_UNMASK with a share of kind 3 (1 or 2)", "malformed_payload"),
    ("secagg_unmask_empty_share", 0x16, secagg_unmask(TASK2, [(1, 1, b"")]),
     "SECAGG_UNMASK with a share of 0 bytes (1-256)", "malformed_payload"),
    ("secagg_unmask_share_too_long", 0x16, secagg_unmask(TASK2, [(1, 1, b"\x01" * 257)]),
     "SECAGG_UNMASK with a share of 257 bytes (at most 256)", "malformed_payload"),
    ("secagg_unmask_duplicate_owner", 0x16, secagg_unmask(TASK2, [UNMASK2[0], (1, 2, KEY_SHARE[(1, 2)])]),
     "SECAGG_UNMASK with two shares of owner 1 (one share per owner, owners strictly ascending)",
     "malformed_payload"),
    ("secagg_unmask_owner_zero", 0x16, secagg_unmask(TASK2, [(0, 1, SEED_SHARE[(1, 2)])]),
     "SECAGG_UNMASK with a share of owner 0", "malformed_payload"),
]

# The consistency check (section 12.11, "Consistency check"): Ed25519 identities of clients 1-3 from fixed
# seeds, the cohort digest, and each signature (Ed25519 is deterministic, RFC 8032), in
# secagg_consistency.json; the messages below carry them.
def secagg_consistency():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    raw = serialization.Encoding.Raw
    names = {i: "client-%d" % i for i in SECAGG_IDS}
    session = fixed("session")
    text = b"swift-federated secagg cohort v1" + u64(SECAGG_ROUND) + session + u16(len(names))
    text += b"".join(u32(i) + string(names[i]) for i in sorted(names))
    digest = sha256(text)
    out = dict(round=SECAGG_ROUND, session=session, names=names, digest=digest, clients={}, contributors=SECAGG_IDS)
    u3 = b"swift-federated secagg consistency v1" + digest + u16(len(SECAGG_IDS)) + b"".join(u32(i) for i in SECAGG_IDS)
    out["contributors_statement"] = u3
    for i in SECAGG_IDS:
        seed = fixed("identity %d" % i)
        key = Ed25519PrivateKey.from_private_bytes(seed)
        c, s_ = KEYS[i]
        statement = b"swift-federated secagg keys v1" + digest + string(names[i]) + c + s_
        out["clients"][i] = dict(private_key=seed, public_key=key.public_key().public_bytes(raw, serialization.PublicFormat.Raw),
                                 keys_statement=statement, keys_signature=key.sign(statement),
                                 contributors_signature=key.sign(u3))
    return out


CS = secagg_consistency()
with open(os.path.join(HERE, "secagg_consistency.json"), "w") as fh:
    json.dump({
        "description": "The consistency check of secure aggregation (SPEC.md section 12.11) for clients 1-3 of "
                       "secagg_three_clients.json: Ed25519 identities from fixed seeds, the cohort digest, the "
                       "statements signed and their signatures (RFC 8032, deterministic).",
        "round": CS["round"], "session": CS["session"].hex(),
        "members": [dict(id=i, name=CS["names"][i]) for i in SECAGG_IDS],
        "digest": CS["digest"].hex(), "contributors": CS["contributors"],
        "contributors_statement": CS["contributors_statement"].hex(),
        "clients": [dict(id=i, encryption_key=KEYS[i][0].hex(), masking_key=KEYS[i][1].hex(),
                         **{k: v.hex() for k, v in CS["clients"][i].items()}) for i in SECAGG_IDS],
    }, fh, indent=1)
    fh.write("\n")


def secagg_signed_keys(task, c, s_, sig):
    return u64(task) + c + s_ + sig


def secagg_signed_roster(task, me, session, members, neighbours):
    return (u64(task) + u32(me) + session + u16(len(members)) + b"".join(u32(i) + string(n) for i, n in members)
            + u16(len(neighbours)) + b"".join(u32(i) + c + s_ + sig for i, c, s_, sig in neighbours))


def secagg_contributors(task, ids):
    return u64(task) + u16(len(ids)) + b"".join(u32(i) for i in ids)


def secagg_signatures(task, signed):
    return u64(task) + u16(len(signed)) + b"".join(u32(i) + sig for i, sig in signed)


CSIG = {i: CS["clients"][i]["keys_signature"] for i in SECAGG_IDS}
USIG = {i: CS["clients"][i]["contributors_signature"] for i in SECAGG_IDS}
MEMBERS = [(i, CS["names"][i]) for i in SECAGG_IDS]
SROSTER2 = [(1,) + KEYS[1] + (CSIG[1],), (3,) + KEYS[3] + (CSIG[3],)]
add("secagg_signed_keys", frame(0x17, 120, secagg_signed_keys(TASK2, *KEYS[2], CSIG[2]), version=4),
    "SECAGG_SIGNED_KEYS: client 2's keys and its Ed25519 signature of them, bound to the cohort of "
    "secagg_consistency.json",
    [msg("secagg_signed_keys", 120, task_id=TASK2, **keys_json(*KEYS[2]), signature=CSIG[2].hex())], canonical=True)
add("secagg_signed_roster", frame(0x18, 121, secagg_signed_roster(TASK2, 2, CS["session"], MEMBERS, SROSTER2),
                                  version=4),
    "SECAGG_SIGNED_ROSTER: participant 2, the session and cohort (client-1..3), neighbours 1 and 3 with their "
    "signed keys",
    [msg("secagg_signed_roster", 121, task_id=TASK2, participant=2, session=CS["session"].hex(),
         cohort=[dict(id=i, name=n) for i, n in MEMBERS],
         neighbours=[dict(id=i, **keys_json(c, s_), signature=sig.hex()) for i, c, s_, sig in SROSTER2])],
    canonical=True)
add("secagg_contributors", frame(0x19, 122, secagg_contributors(TASK2, SECAGG_IDS), version=4),
    "SECAGG_CONTRIBUTORS: U3 = {1, 2, 3}, the participants whose masked inputs are in the sum",
    [msg("secagg_contributors", 122, task_id=TASK2, contributors=SECAGG_IDS)], canonical=True)
add("secagg_consistency", frame(0x1A, 123, u64(TASK2) + USIG[2], version=4),
    "SECAGG_CONSISTENCY: client 2's signature of U3 = {1, 2, 3}",
    [msg("secagg_consistency", 123, task_id=TASK2, signature=USIG[2].hex())], canonical=True)
add("secagg_signatures", frame(0x1B, 124, secagg_signatures(TASK2, [(i, USIG[i]) for i in SECAGG_IDS]), version=4),
    "SECAGG_SIGNATURES: the signatures of U3 by clients 1, 2 and 3, signers ascending",
    [msg("secagg_signatures", 124, task_id=TASK2,
         signatures=[dict(signer=i, signature=USIG[i].hex()) for i in SECAGG_IDS])], canonical=True)
BAD += [
    ("secagg_signed_keys_short_signature", 0x17, secagg_signed_keys(TASK2, *KEYS[2], CSIG[2])[:-1],
     "SECAGG_SIGNED_KEYS whose signature has 63 bytes (64)", "malformed_payload"),
    ("secagg_signed_keys_task_zero", 0x17, secagg_signed_keys(0, *KEYS[2], CSIG[2]),
     "SECAGG_SIGNED_KEYS of task id 0", "malformed_payload"),
    ("secagg_signed_roster_empty_name", 0x18,
     secagg_signed_roster(TASK2, 2, CS["session"], [(1, "client-1"), (2, "")], SROSTER2),
     "SECAGG_SIGNED_ROSTER with a cohort member of empty name", "malformed_payload"),
    ("secagg_signed_roster_name_too_long", 0x18,
     secagg_signed_roster(TASK2, 2, CS["session"], [(1, "x" * 257)], SROSTER2),
     "SECAGG_SIGNED_ROSTER with a member name of 257 bytes (at most 256)", "invalid_string"),
    ("secagg_signed_roster_unsorted_members", 0x18,
     secagg_signed_roster(TASK2, 2, CS["session"], MEMBERS[::-1], SROSTER2),
     "SECAGG_SIGNED_ROSTER whose cohort ids are not ascending", "malformed_payload"),
    ("secagg_signed_roster_self_neighbour", 0x18,
     secagg_signed_roster(TASK2, 2, CS["session"], MEMBERS, [(2,) + KEYS[2] + (CSIG[2],)]),
     "SECAGG_SIGNED_ROSTER listing the participant (2) as its own neighbour", "malformed_payload"),
    ("secagg_signed_roster_short_session", 0x18, u64(TASK2) + u32(2) + CS["session"][:31],
     "SECAGG_SIGNED_ROSTER cut inside its 32-byte session", "malformed_payload"),
    ("secagg_signed_roster_too_many", 0x18, u64(TASK2) + u32(2) + CS["session"] + u16(4097),
     "SECAGG_SIGNED_ROSTER announcing 4,097 members (at most 4,096)", "malformed_payload"),
    ("secagg_contributors_unsorted", 0x19, secagg_contributors(TASK2, [3, 1]),
     "SECAGG_CONTRIBUTORS whose ids are not ascending", "malformed_payload"),
    ("secagg_contributors_zero", 0x19, secagg_contributors(TASK2, [0, 1]),
     "SECAGG_CONTRIBUTORS naming participant 0", "malformed_payload"),
    ("secagg_consistency_short_signature", 0x1A, u64(TASK2) + USIG[2][:63],
     "SECAGG_CONSISTENCY whose signature has 63 bytes (64)", "malformed_payload"),
    ("secagg_consistency_trailing_bytes", 0x1A, u64(TASK2) + USIG[2] + b"\x00",
     "SECAGG_CONSISTENCY with a byte after the signature", "trailing_bytes"),
    ("secagg_signatures_duplicate_signer", 0x1B, secagg_signatures(TASK2, [(1, USIG[1]), (1, USIG[2])]),
     "SECAGG_SIGNATURES with two signatures by signer 1", "malformed_payload"),
    ("secagg_signatures_too_many", 0x1B, u64(TASK2) + u16(0xFFFF),
     "SECAGG_SIGNATURES announcing 65,535 signatures (at most 4,096)", "malformed_payload"),
]
for rid, (name, type_, payload, description, code) in enumerate(BAD, 110):
    add(name, frame(type_, rid, payload, version=4), description, error=("message", code))
for type_, name in ((0x10, "SECAGG_KEYS"), (0x16, "SECAGG_UNMASK")):
    add(name.lower() + "_in_v3", frame(type_, 150, secagg_keys(TASK2, *KEYS[2]) if type_ == 0x10
                                       else secagg_unmask(TASK2, UNMASK2), version=3),
        "%s in a version-3 frame: type 0x%02x is not defined before version 4" % (name, type_),
        error=("frame", "unknown_message_type"))


manifest = {
    "protocol_versions": [1, 2, 3, 4],
    "generator": "Protocol/vectors/generate.py",
    "limits": {"max_payload": 16 << 20, "max_decompressed": 64 << 20, "max_tensors": 64, "max_rank": 8},
    "notes": [
        "kind 'stream': feed the file's bytes to a frame decoder, then declare end of stream; 'frames' are the "
        "frames (decoded messages) that must come out, in order, before 'error' if any.",
        "error.stage 'frame': the frame decoder fails; 'message': the frame is intact but its payload does not "
        "decode; 'checkpoint': reading the file as a checkpoint fails.",
        "tensors carry the CRC-32 of their little-endian Float32 bytes and, when short, each value's IEEE bits.",
        "values stored in a lossy dtype (PUSH 'encoding', MODEL_DELTA 'encoding': the dtype of every step) are "
        "listed decoded, as Float32.",
        "canonical: encoding the decoded messages must reproduce the file byte for byte (uncompressed only).",
        "version 4: CHECK_IN 'properties' and ASSIGNMENT 'parameters' are JSON objects (key order is not "
        "significant; a writer sorts the pairs by key); 'kind' and 'reason' are the numbers of SPEC.md section 12; "
        "REPORT lists 'delta' and 'encoding' as PUSH does.",
        "version 4, feature evaluation: EVALUATION_REPORT 'loss' is a number and 'metrics' a JSON object of numbers "
        "(binary64 values as written; name order is not significant, a writer sorts them).",
        "version 4, feature secure aggregation: SECAGG_* byte strings (public keys, sealed bundles, shares) are "
        "lowercase hex; SECAGG_INPUT 'values' are the elements as numbers; SECAGG_UNMASK 'kind' is 1 (self-mask "
        "seed share) or 2 (masking-key share). The keys, bundles, masked input and shares are client 2's of "
        "secagg_three_clients.json, the fixed-seed vector of the cryptography.",
        "version 4, secure aggregation's consistency check (0x17-0x1B): signatures and the session are lowercase "
        "hex, cohort names strings; identities, digest and signatures are those of secagg_consistency.json.",
    ],
    "vectors": vectors,
}
with open(os.path.join(HERE, "manifest.json"), "w") as fh:
    json.dump(manifest, fh, indent=1, sort_keys=False)
    fh.write("\n")
print("wrote %d vectors" % len(vectors))
