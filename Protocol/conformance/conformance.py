#!/usr/bin/env python3
"""Conformance checker for swift-federated protocol versions 1 to 4.

An independent implementation of the client side of Protocol/SPEC.md in
Python 3 with the standard library only (socket, struct, zlib, json); the secure
aggregation scenario (--secagg) also needs the `cryptography` package.

    python3 conformance.py [--vectors DIR] [--server HOST:PORT [--rounds | --secagg | --secagg-identities DIR]]

With --vectors (default: ../vectors next to this file) it decodes every golden
vector and checks it against manifest.json. With --server it runs a list of
scenarios against a live server: handshake, version negotiation, fetch, fetch
of an unchanged model, push and ack, every error the spec defines sent on
purpose, pipelining, a frame written one byte at a time, the points the spec
decides about frame versions, request ids, dtypes, limits and fetch deltas,
version 4's messages (a server without rounds refuses CHECK_IN and REPORT;
with --rounds, against a server started with rounds: check-in, selection,
reports, deadlines, abandoned rounds; and, when the server hands out evaluate
tasks, section 12.10's evaluation reports; with --secagg, against a server
started with --rounds 3 --over-selection 1 --min-reports 3 --secagg t=2,
section 12.11's secure aggregation by a cohort of three clients whose
cryptography is written here with Python's `cryptography` package, the one
dependency beyond the standard library; with --secagg-identities DIR, against
a server started with --secagg consistency=on --secagg-identities
DIR/trusted.txt, the consistency check by three clients whose keys `fed
secagg-identities --out DIR` wrote), and, when the server serves HTTP,
section 10's. It prints one line
per check and ends with `N passed, N failed`; the exit status is 1 if any
check failed.
"""
import argparse
import json
import math
import os
import re
import socket
import struct
import sys
import time
import zlib
from urllib.parse import quote as urllib_quote

MAGIC = b"FEDW"
T = dict(hello=1, welcome=2, fetch=3, model=4, model_unchanged=5, push=6, ack=7, error=8, ping=9, pong=10,
         model_delta=11, check_in=12, assignment=13, report=14,
         evaluation_report=15, secagg_keys=0x10, secagg_roster=0x11, secagg_shares=0x12, secagg_inbox=0x13,
         secagg_input=0x14, secagg_survivors=0x15, secagg_unmask=0x16, secagg_signed_keys=0x17,
         secagg_signed_roster=0x18, secagg_contributors=0x19, secagg_consistency=0x1A, secagg_signatures=0x1B)
SINCE = {T["model_delta"]: 3, T["check_in"]: 4, T["assignment"]: 4, T["report"]: 4,
         T["evaluation_report"]: 4}  # types of later versions
SINCE.update({t: 4 for t in range(0x10, 0x1C)})  # section 12.11: the SECAGG_* messages (feature bit 2)
SECAGG_MAX_PARTICIPANTS, SECAGG_MAX_SEALED, SECAGG_MAX_SHARE = 4096, 1024, 256
VERSIONS = (1, 2, 3, 4)
TYPE_NAMES = {v: k for k, v in T.items()}
E = dict(bad_magic=1, unsupported_version=2, unknown_message_type=3, unsupported_flags=4, frame_too_large=5,
         checksum_mismatch=6, truncated=7, malformed_payload=8, trailing_bytes=9, invalid_string=10,
         unsupported_compression=11, unsupported_d_type=12, invalid_shape=13, size_mismatch=14,
         decompressed_too_large=15, corrupt_compressed_data=16, handshake_required=32, unexpected_message=33,
         shape_mismatch=34, non_finite_value=35, invalid_datasets=36, unauthorized=37, overloaded=38,
         internal_error=39, timeout=40, shutting_down=41, stale_base=42, unknown_base=43, unknown_task=44,
         round_closed=45)
MODES = {0: "none", 1: "zlib", 2: "shuffle-zlib"}
MLP_SHAPES = [[784, 200], [200], [200, 200], [200], [200, 10], [10]]
LIMITS = dict(max_payload=16 << 20, max_decompressed=64 << 20, max_tensors=64, max_rank=8)


class ProtocolError(Exception):
    def __init__(self, code, stage, text):
        super().__init__(text)
        self.code, self.stage = code, stage


# ---------------------------------------------------------------- encoding

def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def sstr(s): b = s.encode() if isinstance(s, str) else s; return u16(len(b)) + b


def frame(type_, rid, payload, version=1, flags=0, length=None, crc=None):
    head = MAGIC + u8(version) + u8(type_) + u16(flags) + u32(rid) + u32(len(payload) if length is None else length)
    return head + u32(zlib.crc32(head + payload) if crc is None else crc) + payload


def blob(tensors, mode=0, level=1):
    out = u8(mode) + u16(len(tensors))
    raw = b""
    for shape, values in tensors:
        out += u8(1) + u8(len(shape)) + b"".join(u32(d) for d in shape)
        raw += struct.pack("<%df" % len(values), *values)
    if mode == 0:
        stored = raw
    elif mode == 1:
        stored = zlib.compress(raw, level)
    else:
        stored = zlib.compress(b"".join(raw[j::4] for j in range(4)), level)
    return out + u32(len(raw)) + u32(len(stored)) + stored


def hello(client="conformance", lo=1, hi=1, comp=7, token=""):
    return u8(lo) + u8(hi) + u8(comp) + sstr(client) + sstr(token)


# ---------------------------------------------------------------- decoding

class Reader:
    def __init__(self, b, short_code=E["malformed_payload"], stage="message"):
        self.b, self.i, self.short, self.stage = b, 0, short_code, stage

    def take(self, n, what):
        if self.i + n > len(self.b):
            raise ProtocolError(self.short, self.stage, "%s runs past the end" % what)
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self, w): return self.take(1, w)[0]
    def u16(self, w): return struct.unpack(">H", self.take(2, w))[0]
    def u32(self, w): return struct.unpack(">I", self.take(4, w))[0]
    def u64(self, w): return struct.unpack(">Q", self.take(8, w))[0]

    def string(self, w, maxlen, nonempty=False):
        n = self.u16(w)
        if n > maxlen:
            raise ProtocolError(E["invalid_string"], self.stage, "%s too long" % w)
        raw = self.take(n, w)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(E["invalid_string"], self.stage, "%s not UTF-8" % w)
        if nonempty and not s:
            raise ProtocolError(E["invalid_string"], self.stage, "%s empty" % w)
        return s

    def end(self):
        if self.i != len(self.b):
            raise ProtocolError(E["trailing_bytes"], self.stage, "trailing bytes")


ENCODINGS = {1: "fp32", 2: "fp16", 3: "int8", 4: "int4", 5: "int2"}
CODE_BITS = {3: 8, 4: 4, 5: 2}
BLOCK = 256


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def encoded_size(dtype, n):
    """Bytes of data for n values stored as dtype (section 6.3)."""
    if dtype == 1:
        return 4 * n
    if dtype == 2:
        return 2 * n
    blocks = (n + BLOCK - 1) // BLOCK
    return 8 * blocks + (n * CODE_BITS[dtype] + 7) // 8


def decode_values(dtype, data, n):
    """A tensor's data as little-endian Float32 bytes: lo + Float32(q) * step, two Float32 roundings."""
    if dtype == 1:
        return bytes(data)
    if dtype == 2:
        return struct.pack("<%df" % n, *struct.unpack("<%de" % n, data))
    bits = CODE_BITS[dtype]
    per, mask = 8 // bits, (1 << bits) - 1
    blocks = (n + BLOCK - 1) // BLOCK
    codes = data[8 * blocks:]
    out = []
    for b in range(blocks):
        lo, step = struct.unpack("<ff", data[8 * b:8 * b + 8])
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            q = (codes[i // per] >> ((i % per) * bits)) & mask
            out.append(f32(lo + f32(q * step)))
    return struct.pack("<%df" % n, *out)


def decode_blob(r, limits=LIMITS, version=1):
    mode = r.u8("compression")
    if mode not in MODES:
        raise ProtocolError(E["unsupported_compression"], r.stage, "compression %d" % mode)
    count = r.u16("tensor count")
    if count > limits["max_tensors"]:
        raise ProtocolError(E["invalid_shape"], r.stage, "too many tensors")
    shapes, dtypes, total, encoded, cap = [], [], 0, 0, limits["max_decompressed"] // 4
    for _ in range(count):
        dtype = r.u8("dtype")
        if dtype != 1 and not (version >= 3 and dtype in ENCODINGS):
            raise ProtocolError(E["unsupported_d_type"], r.stage, "dtype")
        dtypes.append(dtype)
        rank = r.u8("rank")
        if rank > limits["max_rank"]:
            raise ProtocolError(E["invalid_shape"], r.stage, "rank")
        shape = [r.u32("dim") for _ in range(rank)]
        n = 1
        for d in shape:
            n = min(n * d, cap + 1)
        total = min(total + n, cap + 1)
        if total <= cap:
            encoded += encoded_size(dtype, n)
        shapes.append(shape)
    if total > cap:
        raise ProtocolError(E["decompressed_too_large"], r.stage, "declared data over the limit")
    raw_size = r.u32("raw size")
    if raw_size != encoded:
        raise ProtocolError(E["size_mismatch"], r.stage, "raw size")
    width = {1: 4, 2: 2}.get(dtypes[0]) if dtypes else 4
    if mode == 2 and dtypes and (width is None or any(d != dtypes[0] for d in dtypes)):
        raise ProtocolError(E["unsupported_compression"], r.stage, "shuffle-zlib needs one float width")
    stored_size = r.u32("stored size")
    left = len(r.b) - r.i
    if stored_size > left:
        raise ProtocolError(E["malformed_payload"], r.stage, "stored size past the end")
    if stored_size < left:
        raise ProtocolError(E["trailing_bytes"], r.stage, "bytes after the blob")
    stored = r.take(stored_size, "data")
    if mode == 0:
        if stored_size != raw_size:
            raise ProtocolError(E["size_mismatch"], r.stage, "stored != raw")
        raw = stored
    else:
        d = zlib.decompressobj()
        try:
            out = d.decompress(stored, raw_size + 1)
        except zlib.error as e:
            raise ProtocolError(E["corrupt_compressed_data"], r.stage, str(e))
        if len(out) > raw_size:
            raise ProtocolError(E["size_mismatch"], r.stage, "inflates past the declared size")
        if not d.eof:
            if d.unconsumed_tail or len(out) == raw_size:
                # Output full but stream not ended: more data would follow.
                try:
                    more = d.decompress(d.unconsumed_tail, 1)
                except zlib.error as e:
                    raise ProtocolError(E["corrupt_compressed_data"], r.stage, str(e))
                if more:
                    raise ProtocolError(E["size_mismatch"], r.stage, "inflates past the declared size")
            if not d.eof:
                raise ProtocolError(E["corrupt_compressed_data"], r.stage, "zlib stream cut off")
        if len(out) != raw_size:
            raise ProtocolError(E["size_mismatch"], r.stage, "inflates short")
        if d.unused_data:
            raise ProtocolError(E["trailing_bytes"], r.stage, "bytes after the zlib stream")
        raw = out
        if mode == 2:
            raw = unshuffle(raw, raw_size // width, width)
    tensors, off = [], 0
    for shape, dtype in zip(shapes, dtypes):
        n = 1
        for d in shape:
            n *= d
        size = encoded_size(dtype, n)
        tensors.append((shape, decode_values(dtype, raw[off:off + size], n)))
        off += size
    return MODES[mode], tensors, (ENCODINGS[dtypes[0]] if dtypes else "fp32")


def blob_int8(tensors, mode=1):
    """A blob of int8 blocks (section 6.3), nearest rounding, from (shape, float list) pairs."""
    head, data = u8(mode) + u16(len(tensors)), b""
    for shape, vals in tensors:
        head += u8(3) + u8(len(shape)) + b"".join(u32(d) for d in shape)
        heads, codes = b"", bytearray(len(vals))
        for b0 in range(0, len(vals), BLOCK):
            block = [f32(v) for v in vals[b0:b0 + BLOCK]]
            lo, hi = min(block), max(block)
            step = f32(f32(hi - lo) / 255) if hi > lo else 0.0
            heads += struct.pack("<ff", lo, step)
            for i, v in enumerate(block, b0):
                codes[i] = min(max(int(math.floor(f32(f32(v - lo) / step) + 0.5)), 0), 255) if step else 0
        data += heads + bytes(codes)
    stored = zlib.compress(data, 6) if mode == 1 else data
    return head + u32(len(data)) + u32(len(stored)) + stored


def blob_lossy(tensors, dtype, mode=0, dirty=False):
    """A blob of (shape, float list) pairs stored as dtype 2-5 (section 6.3), nearest rounding, modes 0 or 1.
    dirty: the unused high bits of each tensor's last code byte are set (a receiver ignores them)."""
    head, data = u8(mode) + u16(len(tensors)), b""
    for shape, vals in tensors:
        head += u8(dtype) + u8(len(shape)) + b"".join(u32(d) for d in shape)
        vals = [f32(v) for v in vals]
        if dtype == 2:
            data += struct.pack("<%de" % len(vals), *vals)
            continue
        bits = CODE_BITS[dtype]
        top, per = (1 << bits) - 1, 8 // bits
        heads, codes = b"", bytearray((len(vals) * bits + 7) // 8)
        for b0 in range(0, len(vals), BLOCK):
            block = vals[b0:b0 + BLOCK]
            lo, hi = min(block), max(block)
            step = f32(f32(hi - lo) / top) if hi > lo else 0.0
            heads += struct.pack("<ff", lo, step)
            for i, v in enumerate(block, b0):
                q = min(max(int(math.floor(f32(f32(v - lo) / step) + 0.5)), 0), top) if step else 0
                codes[i // per] |= q << ((i % per) * bits)
        used = (len(vals) * bits) % 8
        if dirty and used:
            codes[-1] |= (0xFF << used) & 0xFF
        data += heads + bytes(codes)
    stored = zlib.compress(data, 6) if mode == 1 else data
    return head + u32(len(data)) + u32(len(stored)) + stored


def unshuffle(raw, n, width=4):
    out = bytearray(width * n)
    for j in range(width):
        out[j::width] = raw[j * n:(j + 1) * n]
    return bytes(out)


def decode_message(type_, payload, limits=LIMITS, version=1):
    r = Reader(payload)
    if type_ == T["hello"]:
        lo, hi = r.u8("min"), r.u8("max")
        if lo < 1 or lo > hi:
            raise ProtocolError(E["malformed_payload"], "message", "version range")
        m = dict(min_version=lo, max_version=hi, compressions=r.u8("compressions"),
                 client_id=r.string("client id", 256, True), auth_token=r.string("token", 1024))
    elif type_ == T["welcome"]:
        m = dict(version=r.u8("version"), compressions=r.u8("compressions"), server_id=r.string("server id", 256),
                 model_version=r.u64("mv"), datasets=r.u64("datasets"), max_payload=r.u32("max"))
        if m["version"] >= 2:  # section 4: version 2 announces two more limits
            m["max_decompressed"], m["max_datasets"] = r.u64("max decompressed"), r.u64("max datasets")
        if m["version"] >= 3:  # and version 3 the value encodings
            m["encodings"], m["delta_encoding"] = r.u8("encodings"), r.u8("delta encoding")
            if bin(m["delta_encoding"]).count("1") > 1:  # section 3.2: one dtype for every step, or none
                raise ProtocolError(E["malformed_payload"], "message", "delta_encoding names several dtypes")
    elif type_ == T["fetch"]:
        held, c = r.u64("held"), r.u8("compression")
        if c not in MODES:
            raise ProtocolError(E["unsupported_compression"], "message", "compression")
        m = dict(held_version=held, compression=MODES[c])
        if version >= 3:
            d = r.u8("delta encodings")
            if d:
                m["delta_encodings"] = d
    elif type_ == T["model_delta"]:
        m = dict(version=r.u64("version"), datasets=r.u64("datasets"), from_version=r.u64("from version"))
        count = r.u16("steps")
        if count > 64:
            raise ProtocolError(E["malformed_payload"], "message", "more than 64 steps")
        m["steps"], m["encoding"], m["step_compressions"] = [], "fp32", []
        for _ in range(count):
            sub = Reader(r.take(r.u32("step length"), "step"))
            mode, tensors, m["encoding"] = decode_blob(sub, limits, version)
            m["steps"].append(tensors)
            m["step_compressions"].append(mode)
    elif type_ in (T["model"], T["push"]):
        m = {}
        if type_ == T["push"]:
            m["client_id"] = r.string("client id", 256, True)
            m["datasets"], m["base_version"] = r.u64("datasets"), r.u64("base")
            if version >= 2:
                m["push_id"] = r.u64("push id")
                if m["push_id"] == 0:
                    del m["push_id"]
            if version >= 3:
                flags = r.u8("push flags")
                if flags & ~1:
                    raise ProtocolError(E["malformed_payload"], "message", "push flags")
                if flags:
                    m["delta"] = True
        else:
            m["version"], m["datasets"] = r.u64("version"), r.u64("datasets")
        m["compression"], m["tensors"], encoding = decode_blob(r, limits, version)
        if type_ == T["push"] and encoding != "fp32":
            m["encoding"] = encoding
    elif type_ in (T["model_unchanged"], T["ack"]):
        m = dict(version=r.u64("version"), datasets=r.u64("datasets"))
    elif type_ == T["error"]:
        code, retry = r.u16("code"), r.u8("retryable")
        if retry > 1:
            raise ProtocolError(E["malformed_payload"], "message", "retryable")
        m = dict(code=code, retryable=bool(retry), min_version=r.u8("min"), max_version=r.u8("max"),
                 message=r.string("message", 4096))
    elif type_ == T["check_in"]:
        m = dict(features=r.u64("features"), abilities=r.u8("abilities") & 0b11, wait_ms=r.u32("wait"))
        m["properties"] = key_values(r, "properties")
    elif type_ == T["assignment"]:
        m = dict(kind=r.u8("kind"), features=r.u64("features"), task_id=r.u64("task id"), round=r.u64("round"),
                 model_version=r.u64("model version"), deadline_ms=r.u32("deadline"),
                 retry_after_ms=r.u32("retry after"), reason=r.u8("reason"))
        if m["kind"] in (1, 2, 3) and m["task_id"] == 0:
            raise ProtocolError(E["malformed_payload"], "message", "a task with task id 0")
        m["parameters"] = key_values(r, "parameters")
    elif type_ == T["report"]:
        m = dict(task_id=r.u64("task id"), samples=r.u64("samples"))
        flags = r.u8("report flags")
        if flags & ~1:
            raise ProtocolError(E["malformed_payload"], "message", "report flags")
        if m["task_id"] == 0:
            raise ProtocolError(E["malformed_payload"], "message", "task id 0")
        if flags:
            m["delta"] = True
        m["compression"], m["tensors"], encoding = decode_blob(r, limits, version)
        if encoding != "fp32":
            m["encoding"] = encoding
    elif type_ == T["evaluation_report"]:
        m = dict(task_id=r.u64("task id"))
        if m["task_id"] == 0:
            raise ProtocolError(E["malformed_payload"], "message", "task id 0")
        m["model_version"], m["examples"] = r.u64("model version"), r.u64("examples")
        m["loss"] = struct.unpack(">d", r.take(8, "loss"))[0]
        count = r.u16("metric count")
        if count > 64:
            raise ProtocolError(E["malformed_payload"], "message", "%d metrics, more than 64" % count)
        m["metrics"] = {}
        for _ in range(count):
            name = r.string("metric name", 64, True)
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ProtocolError(E["invalid_string"], "message", "metric name %r" % name)
            if name == "loss":
                raise ProtocolError(E["malformed_payload"], "message", "a metric named loss")
            value = struct.unpack(">d", r.take(8, "metric value"))[0]
            if name in m["metrics"]:
                raise ProtocolError(E["malformed_payload"], "message", "metric %r given twice" % name)
            m["metrics"][name] = value
    elif T["secagg_keys"] <= type_ <= T["secagg_signatures"]:
        m = decode_secagg(type_, r)
    else:
        m = dict(nonce=r.u64("nonce"))
    r.end()
    return m


def decode_secagg(type_, r):
    """Section 12.11: the SECAGG_* payloads; byte strings as lowercase hex (the manifest's form)."""
    def bad(text):
        raise ProtocolError(E["malformed_payload"], "message", text)

    def task():
        t = r.u64("task id")
        if t == 0:
            bad("task id 0")
        return t

    def pid(what):
        i = r.u32(what)
        if not 1 <= i <= SECAGG_MAX_PARTICIPANTS:
            bad("%s id %d" % (what, i))
        return i

    def count(what):
        n = r.u16(what)
        if n > SECAGG_MAX_PARTICIPANTS:
            bad("%d %s" % (n, what))
        return n

    def ascending(ids, what):
        if len(ids) > 1 and ids[-2] >= ids[-1]:
            bad("%s not strictly ascending" % what)

    m = dict(task_id=task())
    if type_ == T["secagg_keys"] or type_ == T["secagg_signed_keys"]:
        m["encryption_key"], m["masking_key"] = r.take(32, "c").hex(), r.take(32, "s").hex()
        if type_ == T["secagg_signed_keys"]:
            m["signature"] = r.take(64, "signature").hex()
    elif type_ == T["secagg_signed_roster"]:
        # The consistency check: the session, the cohort, neighbours with their signed keys.
        m["participant"] = me = pid("participant")
        m["session"], m["cohort"], m["neighbours"] = r.take(32, "session").hex(), [], []
        for _ in range(count("members")):
            i = pid("member")
            name = r.string("member name", 256)
            if not name:
                bad("an empty member name")
            m["cohort"].append(dict(id=i, name=name))
            ascending([x["id"] for x in m["cohort"]], "members")
        for _ in range(count("neighbours")):
            i = pid("neighbour")
            if i == me:
                bad("the participant is its own neighbour")
            m["neighbours"].append(dict(id=i, encryption_key=r.take(32, "c").hex(), masking_key=r.take(32, "s").hex(),
                                        signature=r.take(64, "signature").hex()))
            ascending([n["id"] for n in m["neighbours"]], "neighbours")
    elif type_ == T["secagg_contributors"]:
        m["contributors"] = []
        for _ in range(count("contributors")):
            m["contributors"].append(pid("contributor"))
            ascending(m["contributors"], "contributors")
    elif type_ == T["secagg_consistency"]:
        m["signature"] = r.take(64, "signature").hex()
    elif type_ == T["secagg_signatures"]:
        m["signatures"] = []
        for _ in range(count("signatures")):
            m["signatures"].append(dict(signer=pid("signer"), signature=r.take(64, "signature").hex()))
            ascending([x["signer"] for x in m["signatures"]], "signers")
    elif type_ == T["secagg_roster"]:
        m["participant"] = me = pid("participant")
        m["neighbours"] = []
        for _ in range(count("neighbours")):
            i = pid("neighbour")
            if i == me:
                bad("the participant is its own neighbour")
            m["neighbours"].append(dict(id=i, encryption_key=r.take(32, "c").hex(), masking_key=r.take(32, "s").hex()))
            ascending([n["id"] for n in m["neighbours"]], "neighbours")
    elif type_ in (T["secagg_shares"], T["secagg_inbox"]):
        m["bundles"] = []
        for _ in range(count("bundles")):
            i = pid("bundle participant")
            m["bundles"].append(dict(participant=i))
            ascending([b["participant"] for b in m["bundles"]], "bundles")
            n = r.u16("sealed length")
            if not 1 <= n <= SECAGG_MAX_SEALED:
                bad("a sealed bundle of %d bytes" % n)
            m["bundles"][-1]["sealed"] = r.take(n, "sealed").hex()
    elif type_ == T["secagg_input"]:
        w = r.u8("element bytes")
        if w not in (2, 4):
            bad("element bytes %d" % w)
        n = r.u32("element count")
        raw = r.take(n * w, "masked input")
        m["element_bytes"], m["values"] = w, list(struct.unpack("<%d%s" % (n, "H" if w == 2 else "I"), raw))
    elif type_ == T["secagg_survivors"]:
        m["contributors"], m["survivors"] = r.u32("contributors"), []
        for _ in range(count("survivors")):
            m["survivors"].append(pid("survivor"))
            ascending(m["survivors"], "survivors")
    else:
        m["shares"] = []
        for _ in range(count("shares")):
            o = pid("owner")
            m["shares"].append(dict(owner=o))
            ascending([x["owner"] for x in m["shares"]], "owners")
            k = r.u8("kind")
            if k not in (1, 2):
                bad("share kind %d" % k)
            n = r.u16("share length")
            if not 1 <= n <= SECAGG_MAX_SHARE:
                bad("a share of %d bytes" % n)
            m["shares"][-1].update(kind=k, share=r.take(n, "share").hex())
    return m


def key_values(r, what):
    """Section 4: u16 count (<= 64), then count (str key 1-64 bytes, str value <= 256 bytes), keys unique."""
    count = r.u16(what + " count")
    if count > 64:
        raise ProtocolError(E["malformed_payload"], "message", "%d %s, more than 64" % (count, what))
    out = {}
    for _ in range(count):
        key = r.string(what + " key", 64, True)
        value = r.string(what + " value", 256)
        if key in out:
            raise ProtocolError(E["malformed_payload"], "message", "%s key %r given twice" % (what, key))
        out[key] = value
    return out


def key_values_bytes(pairs):
    """The pairs as a writer sends them: sorted by key."""
    items = sorted(pairs.items(), key=lambda kv: kv[0].encode())
    return u16(len(items)) + b"".join(sstr(k) + sstr(v) for k, v in items)


class FrameStream:
    """Incremental frame decoder (section 2.1)."""

    def __init__(self, limits=LIMITS):
        self.buf, self.limits = b"", limits

    def feed(self, data):
        self.buf += data

    def next(self):
        b = self.buf
        k = min(len(b), 4)
        if b[:k] != MAGIC[:k]:
            raise ProtocolError(E["bad_magic"], "frame", "bad magic")
        if len(b) < 20:
            return None
        if b[4] not in VERSIONS:
            raise ProtocolError(E["unsupported_version"], "frame", "version %d" % b[4])
        if b[5] not in TYPE_NAMES or b[4] < SINCE.get(b[5], 1):
            raise ProtocolError(E["unknown_message_type"], "frame", "type %d" % b[5])
        flags, rid, length, crc = struct.unpack(">HIII", b[6:20])
        if flags:
            raise ProtocolError(E["unsupported_flags"], "frame", "flags")
        if length > self.limits["max_payload"]:
            raise ProtocolError(E["frame_too_large"], "frame", "length")
        if len(b) < 20 + length:
            return None
        payload = b[20:20 + length]
        if zlib.crc32(b[:16] + payload) != crc:
            raise ProtocolError(E["checksum_mismatch"], "frame", "crc")
        self.buf = b[20 + length:]
        return b[5], rid, payload, b[4]

    def finish(self):
        if self.buf:
            raise ProtocolError(E["truncated"], "frame", "stream ended inside a frame")


def tensor_form(shape, raw):
    n = len(raw) // 4
    t = {"shape": shape, "count": n, "crc32": zlib.crc32(raw)}
    if n <= 32:
        t["values_hex"] = [raw[i:i + 4][::-1].hex() for i in range(0, len(raw), 4)]
    return t


def manifest_form(type_, rid, m):
    m = dict(m)
    m.pop("step_compressions", None)  # checked live, not listed in the manifest
    if "tensors" in m:
        m["tensors"] = [tensor_form(s, raw) for s, raw in m["tensors"]]
    if "steps" in m:
        m["steps"] = [[tensor_form(s, raw) for s, raw in step] for step in m["steps"]]
    return {"type": TYPE_NAMES[type_], "request_id": rid, "message": m}


def decode_checkpoint(b):
    r = Reader(b, E["truncated"], "checkpoint")
    if r.take(4, "magic") != b"FEDK":
        raise ProtocolError(E["bad_magic"], "checkpoint", "magic")
    fmt = r.u16("format")
    if fmt not in (1, 2):
        raise ProtocolError(E["unsupported_version"], "checkpoint", "format")
    if r.u16("reserved") != 0:
        raise ProtocolError(E["unsupported_version"], "checkpoint", "reserved")
    version, datasets, n = r.u64("version"), r.u64("datasets"), r.u32("blob length")
    left = len(b) - r.i
    if n + 4 > left:
        raise ProtocolError(E["truncated"], "checkpoint", "short")
    if fmt == 1 and n + 4 < left:
        raise ProtocolError(E["trailing_bytes"], "checkpoint", "trailing")
    end = 28 + n if fmt == 1 else len(b) - 4  # format 2: the CRC is the last four bytes
    if zlib.crc32(b[:end]) != struct.unpack(">I", b[end:end + 4])[0]:
        raise ProtocolError(E["checksum_mismatch"], "checkpoint", "crc")
    br = Reader(b[28:28 + n], stage="checkpoint")
    _, tensors, _ = decode_blob(br)
    m = {"version": version, "datasets": datasets, "tensors": [tensor_form(s, raw) for s, raw in tensors]}
    if fmt == 2:
        sr = Reader(b[28 + n:end], E["truncated"], "checkpoint")
        for _ in range(sr.u16("section count")):
            tag, length = sr.u16("tag"), sr.u32("length")
            body = Reader(sr.take(length, "section"), stage="checkpoint")
            if tag == 1:
                m["recent_pushes"] = [dict(client_id=body.string("client id", 256, True), push_id=body.u64("id"),
                                           version=body.u64("version"), datasets=body.u64("datasets"))
                                      for _ in range(body.u32("count"))]
                body.end()
            elif tag == 2:  # strategy state (section 8)
                def sblob():
                    n = body.u32("blob length")
                    return [tensor_form(sh, raw) for sh, raw in decode_blob(Reader(body.take(n, "blob"), stage="checkpoint"))[1]]
                buffered = []
                for _ in range(body.u16("buffered count")):
                    buffered.append(dict(client_id=body.string("client id", 256), samples=body.u64("samples"),
                                         staleness=body.u64("staleness"),
                                         weight=struct.unpack(">d", body.take(8, "weight"))[0],
                                         norm=struct.unpack(">d", body.take(8, "norm"))[0], delta=sblob()))
                named = {}
                for _ in range(body.u16("tensor lists")):
                    name = body.string("name", 256)
                    named[name] = sblob()
                scalars = {}
                for _ in range(body.u16("scalars")):
                    name = body.string("name", 256)
                    scalars[name] = struct.unpack(">d", body.take(8, "scalar"))[0]
                body.end()
                m["strategy_state"] = dict(buffer=buffered, tensors=named, scalars=scalars)
            elif not tag & 0x8000:
                raise ProtocolError(E["unsupported_version"], "checkpoint", "section %d" % tag)
        sr.end()
    return {"type": "checkpoint", "message": m}


# ---------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("PASS  %s" % name)
        else:
            self.failed += 1
            print("FAIL  %s%s" % (name, ": " + detail if detail else ""))
        sys.stdout.flush()


def canon(x):
    return json.dumps(x, sort_keys=True)


def check_vectors(directory, report):
    manifest = json.load(open(os.path.join(directory, "manifest.json")))
    report.check("manifest: protocol_versions names 1, 2, 3 and 4", manifest.get("protocol_versions") == [1, 2, 3, 4],
                 str(manifest.get("protocol_versions")))
    for v in manifest["vectors"]:
        data = open(os.path.join(directory, v["file"]), "rb").read()
        frames, err = [], None
        if v["kind"] == "checkpoint":
            try:
                frames.append(decode_checkpoint(data))
            except ProtocolError as e:
                err = e
        else:
            s = FrameStream()
            s.feed(data)
            try:
                while True:
                    f = s.next()
                    if f is None:
                        s.finish()
                        break
                    try:
                        frames.append(manifest_form(f[0], f[1], decode_message(f[0], f[2], version=f[3])))
                    except ProtocolError as e:
                        err = e
                        break
            except ProtocolError as e:
                err = e
        want = v.get("error")
        ok = [canon(f) for f in frames] == [canon(f) for f in v["frames"]]
        if want:
            ok = ok and err is not None and err.code == want["code"] and err.stage == want["stage"]
        else:
            ok = ok and err is None
        report.check("vector %s" % v["name"], ok, "" if ok else "got %s, error %s" % (
            [f.get("type") for f in frames], err and (err.code, err.stage, str(err))))


# ---------------------------------------------------------------- live server

class Conn:
    timeout = 10.0  # seconds a receive may wait (--timeout)

    def __init__(self, host, port, timeout=None):
        timeout = timeout or Conn.timeout
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.settimeout(timeout)
        self.stream = FrameStream(dict(LIMITS, max_payload=1 << 30))
        self.rid = 0
        self.last_version = self.last_length = None  # frame version and payload length of the last answer

    def send(self, data, bytewise=False):
        if bytewise:
            for i in range(len(data)):
                self.s.sendall(data[i:i + 1])
        else:
            self.s.sendall(data)

    def request(self, type_, payload, version=1):
        self.rid += 1
        self.send(frame(type_, self.rid, payload, version=version))
        return self.rid

    def receive(self):
        """(type, request id, message), or None when the server closed."""
        while True:
            f = self.stream.next()
            if f is not None:
                self.last_version, self.last_length = f[3], len(f[2])
                return f[0], f[1], decode_message(f[0], f[2], dict(LIMITS, max_decompressed=1 << 30), f[3])
            data = self.s.recv(1 << 16)
            if not data:
                return None
            self.stream.feed(data)

    def closed(self):
        try:
            while True:
                data = self.s.recv(1 << 16)
                if not data:
                    return True
        except (socket.timeout, ConnectionResetError):
            return isinstance(sys.exc_info()[1], ConnectionResetError)

    def close(self):
        self.s.close()


# ---------------------------------------------------------------- secure aggregation (section 12.11)

SECAGG_SALT = b"swift-federated secagg v1"
SECAGG_AD_LABEL = b"swift-federated secagg share v1"
P127 = (1 << 127) - 1


class SecAggClient:
    """A client's side of SecAgg+ (section 12.11) with Python's `cryptography` package: X25519 keys c (shares)
    and s (masks), HKDF-SHA256 pairwise keys, Shamir over GF(2^127 - 1) in 15-byte chunks, ChaCha20-Poly1305
    share bundles, ChaCha20 mask expansion. Fresh keys, self-mask seed, coefficients and nonces from os.urandom."""

    def __init__(self, round_, threshold, bits):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        self.round, self.t, self.bits = round_, threshold, bits
        raw = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.c, self.s = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        self.c_public, self.s_public = self.c.public_key().public_bytes(*raw), self.s.public_key().public_bytes(*raw)
        self.s_raw = self.s.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
        self.b = os.urandom(32)
        self.me, self.roster, self.held = None, {}, {}

    def derive(self, private, peer_public, purpose, j):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        info = purpose + u64(self.round) + u32(min(self.me, j)) + u32(max(self.me, j))
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=SECAGG_SALT, info=info).derive(shared)

    def prg(self, seed, count):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
        stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor().update(b"\0" * (4 * count))
        mask = (1 << self.bits) - 1
        return [v & mask for v in struct.unpack("<%dI" % count, stream)]

    @staticmethod
    def split(secret, threshold, xs):
        """Shamir shares of `secret` at `xs`, each as its encoding: x u32, length u16, 16 bytes per 15-byte chunk."""
        import secrets
        polys = [[int.from_bytes(secret[k:k + 15], "big")] + [secrets.randbelow(P127) for _ in range(threshold - 1)]
                 for k in range(0, len(secret), 15)]
        out = {}
        for x in xs:
            vals = [sum(c * pow(x, d, P127) for d, c in enumerate(p)) % P127 for p in polys]
            out[x] = u32(x) + u16(len(secret)) + b"".join(v.to_bytes(16, "big") for v in vals)
        return out

    @staticmethod
    def ad(round_, sender, recipient):
        return SECAGG_AD_LABEL + u64(round_) + u32(sender) + u32(recipient)

    def shares(self, roster):
        """The sealed bundles (recipient, bytes) for SECAGG_SHARES."""
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        self.me = roster["participant"]
        self.roster = {n["id"]: (bytes.fromhex(n["encryption_key"]), bytes.fromhex(n["masking_key"]))
                       for n in roster["neighbours"]}
        ids = sorted(self.roster)
        key_shares, seed_shares = self.split(self.s_raw, self.t, ids), self.split(self.b, self.t, ids)
        out = []
        for j in ids:
            key = self.derive(self.c, self.roster[j][0], b"share key", j)
            nonce = os.urandom(12)
            out.append((j, nonce + ChaCha20Poly1305(key).encrypt(nonce, key_shares[j] + seed_shares[j],
                                                                 self.ad(self.round, self.me, j))))
        return out

    def open(self, inbox):
        """Opens each bundle sealed to this client; raises on any that does not authenticate."""
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        for b in inbox["bundles"]:
            j, sealed = b["participant"], bytes.fromhex(b["sealed"])
            key = self.derive(self.c, self.roster[j][0], b"share key", j)
            plain = ChaCha20Poly1305(key).decrypt(sealed[:12], sealed[12:], self.ad(self.round, j, self.me))
            first = 6 + 16 * ((struct.unpack(">H", plain[4:6])[0] + 14) // 15)
            key_share, seed_share = plain[:first], plain[first:]
            if struct.unpack(">I", key_share[:4])[0] != self.me or struct.unpack(">I", seed_share[:4])[0] != self.me:
                raise ValueError("a bundle from %d holds shares for another x" % j)
            self.held[j] = (key_share, seed_share)

    def mask(self, values):
        m = (1 << self.bits) - 1
        y = [(v + r) & m for v, r in zip(values, self.prg(self.b, len(values)))]
        for j in sorted(self.held):
            pair = self.prg(self.derive(self.s, self.roster[j][1], b"mask seed", j), len(values))
            y = [(a + r) & m for a, r in zip(y, pair)] if j > self.me else [(a - r) & m for a, r in zip(y, pair)]
        return y

    def unmask(self, survivors):
        """(owner, kind, share): the self-mask seed share of each survivor, the masking-key share of the others."""
        return [(j, 1, self.held[j][1]) if j in survivors else (j, 2, self.held[j][0]) for j in sorted(self.held)]


def fixed_point(update, weight, bits, clip, summands, max_weight):
    """Section 12.11's encoding: clip to L2 norm `clip`, scale by weight / W · M / C (M = floor((2^(b-1) - 1) / n)),
    round (to nearest here; a client may round stochastically), two's complement mod 2^b; then the weight in
    base-2^h digits, h = b - bit_length(n). Returns (elements, scale)."""
    unit = ((1 << (bits - 1)) - 1) // summands
    scale = unit / clip
    factor = weight / max_weight * scale
    norm = math.sqrt(sum(x * x for x in update))
    if norm > clip:
        factor *= clip / norm
    mask = (1 << bits) - 1
    out = [min(max(int(math.floor(x * factor + 0.5)), -unit), unit) & mask for x in update]
    h = bits - summands.bit_length()
    out += [(weight >> (k * h)) & ((1 << h) - 1) for k in range((max_weight.bit_length() + h - 1) // h)]
    return out, scale


def floats(tensors):
    return [(s, list(struct.unpack("<%df" % (len(raw) // 4), raw))) for s, raw in tensors]


def run_server(host, port, report, rounds=False, secagg=False, identities=None):
    def scenario(name, fn):
        try:
            fn()
        except Exception as e:  # a scenario that crashes is a failure, not an abort
            report.check(name, False, "%s: %s" % (type(e).__name__, e))

    def handshake(c, lo=1, hi=1):
        rid = c.request(T["hello"], hello(lo=lo, hi=hi))
        return rid, c.receive()

    state = {}

    def s_handshake():
        c = Conn(host, port)
        rid, (t, got, m) = handshake(c)
        report.check("handshake: HELLO 1..1 answered by WELCOME version 1", t == T["welcome"] and got == rid and m["version"] == 1)
        report.check("handshake: WELCOME offers compression none", m["compressions"] & 1 == 1)
        state["welcome"] = m
        c.close()

    def s_versions():
        c = Conn(host, port)
        rid, (t, got, m) = handshake(c, 1, 9)
        report.check("version negotiation: HELLO 1..9 gets WELCOME version 4", t == T["welcome"] and m["version"] == 4,
                     str(m))
        report.check("version negotiation: WELCOME version 4 announces max_decompressed, max_datasets and encodings "
                     "(version 3's fields)",
                     m.get("max_decompressed", 0) > 0 and m.get("max_datasets", 0) > 0 and m.get("encodings", 0) & 1)
        c.close()
        c = Conn(host, port)
        rid, (t, got, m) = handshake(c, 1, 3)
        report.check("version negotiation: HELLO 1..3 gets WELCOME version 3", t == T["welcome"] and m["version"] == 3,
                     str(m))
        c.close()
        c = Conn(host, port)
        rid, ans = handshake(c, 5, 9)
        ok = ans and ans[0] == T["error"] and ans[2]["code"] == E["unsupported_version"]
        report.check("version negotiation: HELLO 5..9 gets ERROR unsupported_version", bool(ok), str(ans))
        if ok:
            report.check("version negotiation: the ERROR names versions 1..4",
                         ans[2]["min_version"] == 1 and ans[2]["max_version"] == 4, str(ans[2]))
            report.check("version negotiation: the ERROR travels in a version-1 frame with the HELLO's request id (2.1)",
                         c.last_version == 1 and ans[1] == rid, "version %s, id %s" % (c.last_version, ans[1]))
        report.check("version negotiation: then the connection is closed", c.closed())
        c.close()

    def s_fetch_push():
        c = Conn(host, port)
        handshake(c)
        for mode in (0, 1, 2):
            rid = c.request(T["fetch"], u64(0) + u8(mode))
            t, got, m = c.receive()
            ok = t == T["model"] and got == rid and [s for s, _ in m["tensors"]] == MLP_SHAPES
            report.check("fetch (held 0, %s): MODEL with the MLP's six tensors" % MODES[mode], ok, str((TYPE_NAMES.get(t), m.get("compression"))))
        version, datasets, tensors = m["version"], m["datasets"], floats(m["tensors"])
        rid = c.request(T["push"], sstr("conformance") + u64(100) + u64(version) + blob(tensors, 2))
        t, got, m = c.receive()
        ok = t == T["ack"] and got == rid and m["version"] == version + 1 and m["datasets"] == datasets + 100
        report.check("push: ACK with version + 1 and datasets + 100", ok, str((TYPE_NAMES.get(t), m)))
        new = m["version"]
        rid = c.request(T["fetch"], u64(new) + u8(0))
        t, got, m = c.receive()
        report.check("fetch of an unchanged model: MODEL_UNCHANGED, no weights", t == T["model_unchanged"] and m["version"] == new, str(TYPE_NAMES.get(t)))
        rid = c.request(T["ping"], u64(0xFEEDFACE))
        t, got, m = c.receive()
        report.check("ping: PONG echoes the nonce", t == T["pong"] and m["nonce"] == 0xFEEDFACE and got == rid)
        state["tensors"] = tensors
        c.close()

    def s_idempotent_push():
        c = Conn(host, port)
        handshake(c, 1, 2)
        tensors = state.get("tensors") or [(s, [0.0] * int(math.prod(s))) for s in MLP_SHAPES]
        push_id = 0x5EED0000 + (os.getpid() & 0xFFFF)
        body = sstr("conformance-v2") + u64(10) + u64(0) + u64(push_id) + blob(tensors, 2)
        rid = c.request(T["push"], body, version=2)
        first = c.receive()
        ok = first is not None and first[0] == T["ack"]
        report.check("version 2 push with a push id: ACK", ok, str(first and (TYPE_NAMES.get(first[0]), first[2])))
        c.close()
        c = Conn(host, port)  # the same push again, as after a lost ACK, on a new connection
        handshake(c, 1, 2)
        rid = c.request(T["push"], body, version=2)
        again = c.receive()
        report.check("the same push id again: the original ACK, applied once",
                     ok and again is not None and again[0] == T["ack"] and again[2] == first[2], str(again and again[2]))
        rid = c.request(T["fetch"], u64(first[2]["version"] if ok else 0) + u8(0), version=2)
        t, got, m = c.receive()
        report.check("the model version did not move for the repeat", t == T["model_unchanged"], str(TYPE_NAMES.get(t)))
        c.close()

    def s_encodings():
        c = Conn(host, port)
        rid, (t, got, w) = handshake(c, 1, 3)
        if w.get("version") != 3:
            report.check("version 3: WELCOME version 3", False, str(w))
            return
        if not w.get("encodings", 0) & (1 << 2):  # int8 not announced: refused, whatever the rest of the push
            shapes = [s for s in MLP_SHAPES]
            body = sstr("conformance-v3") + u64(10) + u64(0) + u64(0) + u8(0) + blob_int8(
                [(s, [0.0] * int(math.prod(s))) for s in shapes], 1)
            c.request(T["push"], body, version=3)
            t, got, m = c.receive()
            report.check("version 3: an int8 push to a server that does not announce int8 gets unsupported_d_type (12)",
                         t == T["error"] and m["code"] == E["unsupported_d_type"], str((TYPE_NAMES.get(t), m)))
            return
        c.request(T["fetch"], u64(0) + u8(0) + u8(0), version=3)
        t, got, m = c.receive()
        report.check("version 3: FETCH held 0 gets a full MODEL", t == T["model"], str(TYPE_NAMES.get(t)))
        base = m["version"]
        shapes = [s for s, _ in m["tensors"]]
        delta = [(s, [((i * 7919) % 200 - 100) * 1e-5 for i in range(int(math.prod(s)))]) for s in shapes]
        body = sstr("conformance-v3") + u64(10) + u64(base) + u64(0) + u8(1) + blob_int8(delta, 1)
        c.request(T["push"], body, version=3)
        t, got, m = c.receive()
        if base == 0:  # version 0 cannot be named as a base: the server answers unknown_base
            report.check("version 3: a delta on base 0 gets unknown_base", t == T["error"] and m["code"] == 43, str(m))
        else:
            report.check("version 3: an int8 delta push is acknowledged", t == T["ack"], str((TYPE_NAMES.get(t), m)))
        body = sstr("conformance-v3") + u64(10) + u64(1 << 40) + u64(0) + u8(1) + blob_int8(delta, 1)
        c.request(T["push"], body, version=3)
        t, got, m = c.receive()
        report.check("version 3: a delta against a version the server never had gets unknown_base (43)",
                     t == T["error"] and m["code"] == 43 and not m["retryable"], str((TYPE_NAMES.get(t), m)))
        c.close()

    def expect_error(name, payload_frames, code, handshake_first=True, fatal=False):
        c = Conn(host, port)
        if handshake_first:
            handshake(c)
        c.send(payload_frames)
        ans = c.receive()
        ok = ans is not None and ans[0] == T["error"] and ans[2]["code"] == code
        report.check("error %s (%d): %s" % ([k for k, v in E.items() if v == code][0], code, name), ok, str(ans and (TYPE_NAMES.get(ans[0]), ans[2])))
        if fatal:
            report.check("error %d closes the connection" % code, c.closed())
        c.close()

    def s_errors():
        t = state.get("tensors") or [(s, [0.0] * int(math.prod(s))) for s in MLP_SHAPES]
        head = sstr("conformance") + u64(10) + u64(0)
        nan = [(s, list(v)) for s, v in t]
        nan[0][1][5] = float("nan")
        expect_error("FETCH before HELLO", frame(T["fetch"], 1, u64(0) + u8(0)), E["handshake_required"], handshake_first=False)
        expect_error("a client sending MODEL", frame(T["model"], 2, u64(1) + u64(1) + blob([])), E["unexpected_message"])
        expect_error("PUSH with NaN", frame(T["push"], 3, head + blob(nan, 0)), E["non_finite_value"])
        big = [(s, list(v)) for s, v in t]
        big[2][1][7] = 1.5e15  # finite, beyond max_magnitude (1e15, section 4.2)
        expect_error("PUSH with a value beyond max_magnitude", frame(T["push"], 3, head + blob(big, 0)),
                     E["non_finite_value"])
        expect_error("PUSH with wrong shapes", frame(T["push"], 4, head + blob(t[:5], 0)), E["shape_mismatch"])
        expect_error("PUSH with datasets 0", frame(T["push"], 5, sstr("c") + u64(0) + u64(0) + blob(t, 1)), E["invalid_datasets"])
        expect_error("bad magic after the handshake", b"XXXX" + b"\0" * 16, E["bad_magic"], fatal=True)
        expect_error("a frame of version 7", frame(T["ping"], 6, u64(1), version=7), E["unsupported_version"], fatal=True)
        expect_error("message type 0x42", frame(0x42, 7, u64(1)), E["unknown_message_type"], fatal=True)
        expect_error("flag bit 3", frame(T["ping"], 8, u64(1), flags=8), E["unsupported_flags"], fatal=True)
        expect_error("payload length 2 GiB", frame(T["push"], 9, b"", length=1 << 31), E["frame_too_large"], fatal=True)
        expect_error("wrong CRC", frame(T["ping"], 10, u64(1), crc=1), E["checksum_mismatch"], fatal=True)
        expect_error("PING payload cut short", frame(T["ping"], 11, u32(1)), E["malformed_payload"])
        expect_error("PING payload with a trailing byte", frame(T["ping"], 12, u64(1) + b"!"), E["trailing_bytes"])
        expect_error("client id not UTF-8", frame(T["push"], 13, sstr(b"\xff") + u64(1) + u64(0) + blob(t, 0)), E["invalid_string"])
        expect_error("blob compression 7", frame(T["push"], 14, head + u8(7) + u16(0) + u32(0) + u32(0)), E["unsupported_compression"])
        expect_error("dtype 3", frame(T["push"], 15, head + u8(0) + u16(1) + u8(3) + u8(1) + u32(1) + u32(4) + u32(4) + b"\0" * 4), E["unsupported_d_type"])
        expect_error("rank 9", frame(T["push"], 16, head + u8(0) + u16(1) + u8(1) + u8(9) + u32(1) * 9 + u32(4) + u32(4) + b"\0" * 4), E["invalid_shape"])
        expect_error("raw size wrong", frame(T["push"], 17, head + u8(0) + u16(1) + u8(1) + u8(1) + u32(2) + u32(4) + u32(4) + b"\0" * 4), E["size_mismatch"])
        expect_error("declared 4 GB of floats", frame(T["push"], 18, head + u8(1) + u16(1) + u8(1) + u8(2) + u32(60000) + u32(20000) + u32(0) + u32(8) + zlib.compress(b"")), E["decompressed_too_large"])
        # The model's shapes, so the server gets past its shape check (done on the blob header, section 4.2).
        mlp_header = u8(1) + u16(len(MLP_SHAPES)) + b"".join(u8(1) + u8(len(s)) + b"".join(u32(d) for d in s) for s in MLP_SHAPES)
        raw = 4 * sum(math.prod(s) for s in MLP_SHAPES)
        expect_error("corrupt zlib data", frame(T["push"], 19, head + mlp_header + u32(raw) + u32(6) + b"\x78\x9c\xff\xff\xff\xff"), E["corrupt_compressed_data"])
        expect_error("wrong shapes are refused from the blob header, before its data is inflated",
                     frame(T["push"], 20, head + u8(1) + u16(1) + u8(1) + u8(1) + u32(2) + u32(8) + u32(6) + b"\x78\x9c\xff\xff\xff\xff"), E["shape_mismatch"])

    def s_pipelining():
        c = Conn(host, port)
        data = frame(T["hello"], 1, hello()) + frame(T["ping"], 2, u64(2)) + frame(T["fetch"], 3, u64(0) + u8(1)) + frame(T["ping"], 4, u64(4))
        c.send(data)
        got = [c.receive() for _ in range(4)]
        ok = [(a[0], a[1]) for a in got if a] == [(T["welcome"], 1), (T["pong"], 2), (T["model"], 3), (T["pong"], 4)]
        report.check("pipelining: four requests in one write answered in order", ok, str([(a and (TYPE_NAMES.get(a[0]), a[1])) for a in got]))
        c.close()

    def s_bytewise():
        c = Conn(host, port)
        c.send(frame(T["hello"], 1, hello()) + frame(T["ping"], 2, u64(77)), bytewise=True)
        a, b = c.receive(), c.receive()
        report.check("a frame written one byte at a time is reassembled", a and b and a[0] == T["welcome"] and b[0] == T["pong"] and b[2]["nonce"] == 77)
        c.close()

    def s_spec_points():
        """The points SPEC.md decides about frame versions, request ids, HELLO, dtypes and limits."""
        c = Conn(host, port)
        c.send(frame(T["ping"], 41, u64(1), version=3))
        ans = c.receive()
        report.check("before HELLO: a version-3 PING gets handshake_required in a version-1 frame, its id echoed (2.1)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["handshake_required"]
                     and c.last_version == 1 and ans[1] == 41, str((ans, c.last_version)))
        c.close()
        c = Conn(host, port)
        c.send(frame(T["ping"], 42, u64(1), version=7))
        ans = c.receive()
        report.check("before HELLO: a version-7 frame gets unsupported_version in a version-1 frame, request id 0, "
                     "naming 1..4 (2.1)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unsupported_version"]
                     and c.last_version == 1 and ans[1] == 0 and (ans[2]["min_version"], ans[2]["max_version"]) == (1, 4),
                     str((ans, c.last_version)))
        report.check("before HELLO: then the connection is closed", c.closed())
        c.close()

        # A second HELLO in a version-3 session (section 3, items 3 and 4).
        c = Conn(host, port)
        handshake(c, 1, 3)
        c.send(frame(T["hello"], 43, hello(lo=1, hi=3), version=3))
        ans = c.receive()
        report.check("a second HELLO in the agreed version (3) gets unexpected_message (33), its id, in version 3",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"]
                     and ans[1] == 43 and c.last_version == 3, str((ans, c.last_version)))
        c.send(frame(T["ping"], 44, u64(44), version=3))
        ans = c.receive()
        report.check("after it the connection goes on: PING gets PONG", ans is not None and ans[0] == T["pong"], str(ans))
        c.send(frame(T["hello"], 45, hello(lo=1, hi=3), version=1))
        ans = c.receive()
        report.check("a HELLO in a version-1 frame inside a version-3 session gets unsupported_version, its id, "
                     "in version 3",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unsupported_version"]
                     and ans[1] == 45 and c.last_version == 3, str((ans, c.last_version)))
        report.check("and the connection is closed (fatal)", c.closed())
        c.close()

        # A fatal error inside a session: request id 0 (the header is not trusted), agreed version.
        c = Conn(host, port)
        handshake(c, 1, 3)
        c.send(frame(T["ping"], 46, u64(1), version=3, crc=1))
        ans = c.receive()
        report.check("a CRC mismatch in a version-3 session gets checksum_mismatch with request id 0, in version 3",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["checksum_mismatch"]
                     and ans[1] == 0 and c.last_version == 3, str((ans, c.last_version)))
        c.close()

        # Limits announced in WELCOME (section 4) and dtypes (sections 3.2 and 6).
        c = Conn(host, port)
        _, (t, _, w) = handshake(c, 1, 3)
        raw = max(4 * sum(math.prod(s) for s in MLP_SHAPES), 1024)
        if w["max_decompressed"] == raw:
            report.check("WELCOME: max_payload is R + floor(R / 64) + 65536 for R = max_decompressed (section 4)",
                         w["max_payload"] == raw + raw // 64 + 65536, str(w))
        report.check("WELCOME: delta_encoding names at most one dtype (3.2)",
                     bin(w["delta_encoding"]).count("1") <= 1, str(w))
        head = sstr("conformance-spec") + u64(10) + u64(0) + u64(0) + u8(0)
        c.request(T["push"], head + u8(0) + u16(1) + u8(6) + u8(1) + u32(1) + u32(4) + u32(4) + b"\0" * 4, version=3)
        t, _, m = c.receive()
        report.check("version 3: dtype 6 (undefined) gets unsupported_d_type (12)",
                     t == T["error"] and m["code"] == E["unsupported_d_type"], str(m))
        refused = [d for d in (2, 3, 4, 5) if not w["encodings"] & (1 << (d - 1))]
        if refused:
            d = refused[0]
            # The first tensor in float32, the others in a dtype the server does not announce.
            model = [(s, [0.0] * int(math.prod(s))) for s in MLP_SHAPES]
            mixed = blob_lossy(model, d)
            first = bytearray(mixed)
            first[3] = 1  # tensor 0's dtype byte: float32 (its data size changes: raw size no longer matches)
            c.request(T["push"], head + bytes(first), version=3)
            t, _, m = c.receive()
            report.check("version 3: a PUSH whose second tensor is in dtype %d, not in WELCOME.encodings, gets "
                         "unsupported_d_type (12)" % d, t == T["error"] and m["code"] == E["unsupported_d_type"], str(m))
        lossy = [d for d in (5, 4, 3, 2) if w["encodings"] & (1 << (d - 1))]
        if lossy:
            d = lossy[0]
            n = w["max_decompressed"] // 4 + 1
            per = {2: 2 * n, 3: 8 * ((n + 255) // 256) + n, 4: 8 * ((n + 255) // 256) + (n + 1) // 2,
                   5: 8 * ((n + 255) // 256) + (n + 3) // 4}[d]
            data = zlib.compress(b"\0" * per, 9)
            c.request(T["push"], head + u8(1) + u16(1) + u8(d) + u8(1) + u32(n) + u32(per) + u32(len(data)) + data,
                      version=3)
            t, _, m = c.receive()
            report.check("version 3: %s values whose raw size (%d B) fits max_decompressed but 4 bytes a value do not "
                         "get decompressed_too_large (15)" % (ENCODINGS[d], per),
                         t == T["error"] and m["code"] == E["decompressed_too_large"], str(m))
        if w["encodings"] & (1 << 4):
            c.request(T["fetch"], u64(0) + u8(0) + u8(0), version=3)
            t, _, m = c.receive()
            weights = floats(m["tensors"])
            c.request(T["push"], head + blob_lossy(weights, 5, dirty=True), version=3)
            t, _, m = c.receive()
            report.check("version 3: int2 weights whose unused high code bits are set are accepted (6.3)",
                         t == T["ack"], str((TYPE_NAMES.get(t), m)))
        c.close()

    def s_fetch_deltas():
        """Section 4.5: when MODEL_DELTA is sent, and how it compares with the MODEL it replaces."""
        c = Conn(host, port)
        _, (t, _, w) = handshake(c, 1, 3)
        c.request(T["fetch"], u64(0) + u8(0) + u8(0), version=3)
        t, _, m = c.receive()
        weights = floats(m["tensors"])
        for k in range(2):  # two more versions, so that the previous one is held as a base
            moved = [(s, [v + 0.001 * ((i * 31 + k) % 7 - 3) for i, v in enumerate(vals)]) for s, vals in weights]
            c.request(T["push"], sstr("conformance-deltas") + u64(10) + u64(0) + u64(0) + u8(0) + blob(moved, 1),
                      version=3)
            t, _, m = c.receive()
            if t != T["ack"]:
                report.check("fetch deltas: pushes to make versions", False, str(m))
                return
        current = m["version"]
        c.close()

        def fetch(compressions, mode, held, deltas=0b11111):
            conn = Conn(host, port)
            conn.request(T["hello"], hello(lo=1, hi=3, comp=compressions))
            conn.receive()
            conn.request(T["fetch"], u64(held) + u8(mode) + u8(deltas), version=3)
            ans = conn.receive()
            conn.close()
            return ans[0], ans[2], conn.last_length

        model_none, model_sz = fetch(0b111, 0, 0)[2], fetch(0b111, 2, 0)[2]
        t, m, size = fetch(0b111, 0, current - 1)
        if not w["delta_encoding"]:
            report.check("fetch deltas: a server whose delta_encoding is 0 answers a FETCH accepting deltas with MODEL",
                         t == T["model"], str(TYPE_NAMES.get(t)))
            return
        report.check("fetch deltas: held = current - 1, mode none: MODEL_DELTA, its payload smaller than MODEL's (4.5)",
                     t == T["model_delta"] and size < model_none and m["from_version"] == current - 1,
                     "%s of %s B against %s B" % (TYPE_NAMES.get(t), size, model_none))
        if t != T["model_delta"]:
            return
        delta_size, modes = size, set(m["step_compressions"])
        report.check("fetch deltas: every step's dtype is delta_encoding (4.5)",
                     w["delta_encoding"] == 1 << ({v: k for k, v in ENCODINGS.items()}[m["encoding"]] - 1), str(m["encoding"]))
        t, m, size = fetch(0b111, 2, current - 1)
        want = T["model_delta"] if delta_size < model_sz else T["model"]
        report.check("fetch deltas: asking for shuffle-zlib, the MODEL_DELTA (%d B) is sent only if smaller than the "
                     "shuffle-zlib MODEL (%d B)" % (delta_size, model_sz), t == want, str(TYPE_NAMES.get(t)))
        agreed_none_only = 0b001
        t, m, size = fetch(agreed_none_only, 0, current - 1)
        ok = t == T["model"] or (t == T["model_delta"] and set(m["step_compressions"]) <= {"none"})
        report.check("fetch deltas: with only mode none agreed, no step arrives compressed (%s steps): %s"
                     % ("/".join(sorted(modes)), TYPE_NAMES.get(t)), ok)

    def s_http():
        """Section 10: the HTTP layer's decided points, when the server serves HTTP."""
        import http.client

        def get(path, headers=None, method="GET", body=None):
            h = http.client.HTTPConnection(host, port, timeout=Conn.timeout)
            h.request(method, path, body=body, headers=headers or {})
            r = h.getresponse()
            data = r.read()
            h.close()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

        status, headers, _ = get("/v1/model")
        if status != 200 or "x-fed-model-version" not in headers:
            print("note  HTTP /v1/model not served (%d): section 10 checks skipped" % status)
            return
        v = int(headers["x-fed-model-version"])
        for field in ('W/"v%d"' % v, '"v%d", W/"v%d"' % (v + 1, v), '*'):
            status, _, _ = get("/v1/model", {"If-None-Match": field})
            report.check("HTTP: If-None-Match %s gets 304 (weak comparison, lists, *; 10.1)" % field, status == 304,
                         str(status))
        status, _, _ = get("/v1/model", {"If-None-Match": 'W/"v%d"' % (v + 1)})
        report.check("HTTP: If-None-Match naming another version gets 200", status == 200, str(status))
        status, _, _ = get("/v1/model/%d" % v)
        report.check("HTTP: /v1/model/%d gets 200" % v, status == 200, str(status))
        for spelling in ("0%d" % v, "+%d" % v, "%d.0" % v, "%%3%d" % (v % 10) if v < 10 else "0x%x" % v):
            status, _, _ = get("/v1/model/" + spelling)
            report.check("HTTP: /v1/model/%s (not canonical decimal) gets 404 (10.1)" % spelling, status == 404,
                         str(status))
        for number in ("01", "1.", ".5", "+1"):
            body = "id=conformance-json&send=True&datasets=10&weights=" + urllib_quote("[[%s]]" % number)
            status, _, data = get("/", {"Content-Type": "application/x-www-form-urlencoded"}, "POST", body)
            try:
                code = json.loads(data)["code"]
            except ValueError:
                code = None
            report.check("HTTP: a weight written %s is refused with 400 malformed_payload (8; 10)" % number,
                         status == 400 and code == E["malformed_payload"], "%d %r" % (status, data[:120]))
        body = "id=conformance-json&send=True&datasets=10&weights=" + urllib_quote("[[1.5]]")
        status, _, data = get("/", {"Content-Type": "application/x-www-form-urlencoded"}, "POST", body)
        report.check("HTTP: a valid JSON number gets past parsing (400 shape_mismatch, 34)",
                     status == 400 and b'"code": 34' in data, "%d %r" % (status, data[:120]))

    def check_in_payload(wait_ms, features=0, abilities=1, properties=None):
        return u64(features) + u8(abilities) + u32(wait_ms) + key_values_bytes(properties or {})

    def report_payload(task, samples, tensors, flags=0, mode=2):
        return u64(task) + u64(samples) + u8(flags) + blob(tensors, mode)

    def v4_session(client):
        c = Conn(host, port)
        c.request(T["hello"], hello(client=client, lo=1, hi=4))
        ans = c.receive()
        if not ans or ans[0] != T["welcome"] or ans[2]["version"] != 4:
            raise AssertionError("HELLO 1..4 as %s: %s" % (client, ans))
        return c, ans[2]

    def s_version4():
        """Version 4 on any server (section 12): the version, and the rounds' types gated on it."""
        c, w = v4_session("conformance-v4")
        report.check("version 4: HELLO 1..4 gets WELCOME version 4 with version 3's fields",
                     w.get("encodings", 0) & 1 and w.get("max_datasets", 0) > 0, str(w))
        c.request(T["ping"], u64(4), version=4)
        ans = c.receive()
        report.check("version 4: PING in a version-4 frame gets PONG in version 4",
                     ans is not None and ans[0] == T["pong"] and c.last_version == 4, str(ans))
        c.request(T["assignment"], u8(0) + u64(0) * 4 + u32(0) + u32(0) + u8(1) + u16(0), version=4)
        ans = c.receive()
        report.check("version 4: a client sending ASSIGNMENT gets unexpected_message (33)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"], str(ans))
        c.request(T["check_in"], u64(0) + u8(1) + u32(0) + u16(2) + sstr("os") + sstr("a") + sstr("os") + sstr("b"),
                  version=4)
        ans = c.receive()
        report.check("version 4: a CHECK_IN naming a property twice gets malformed_payload (8), not fatal",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["malformed_payload"], str(ans))
        c.request(T["report"], report_payload(0, 10, [([1], [0.0])]), version=4)
        ans = c.receive()
        report.check("version 4: a REPORT of task id 0 gets malformed_payload (8)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["malformed_payload"], str(ans))
        c.request(T["evaluation_report"], u64(0xE7A1) + u64(0) + u64(10) + struct.pack(">d", 0.5) + u16(0), version=4)
        ans = c.receive()
        report.check("version 4: an EVALUATION_REPORT of a task the server never gave gets unknown_task (44) "
                     "(section 12.10)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"], str(ans))
        c.request(T["evaluation_report"], u64(7) + u64(0) + u64(10) + struct.pack(">d", 0.5) + u16(1)
                  + sstr("loss") + struct.pack(">d", 0.5), version=4)
        ans = c.receive()
        report.check("version 4: an EVALUATION_REPORT with a metric named loss gets malformed_payload (8), not fatal",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["malformed_payload"], str(ans))
        c.close()
        c = Conn(host, port)
        c.send(frame(T["check_in"], 51, check_in_payload(0), version=4))
        ans = c.receive()
        report.check("before HELLO: a version-4 CHECK_IN gets handshake_required (32) in a version-1 frame",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["handshake_required"]
                     and c.last_version == 1 and ans[1] == 51, str((ans, c.last_version)))
        c.close()
        for name, type_, payload in (("CHECK_IN", T["check_in"], check_in_payload(0)),
                                     ("REPORT", T["report"], report_payload(7, 10, [([1], [0.0])])),
                                     ("EVALUATION_REPORT", T["evaluation_report"],
                                      u64(7) + u64(0) + u64(10) + struct.pack(">d", 0.5) + u16(0))):
            c = Conn(host, port)
            handshake(c, 1, 3)
            c.send(frame(type_, 52, payload, version=3))
            ans = c.receive()
            report.check("version 4: a %s in a version-3 session gets unknown_message_type (3), request id 0" % name,
                         ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_message_type"]
                         and ans[1] == 0, str(ans))
            report.check("version 4: and the connection is closed (fatal)", c.closed())
            c.close()
        c, w = v4_session("conformance-v4-push")
        c.request(T["fetch"], u64(0) + u8(2) + u8(0), version=4)
        t, _, m = c.receive()
        tensors = floats(m["tensors"])
        c.request(T["push"], sstr("conformance-v4-push") + u64(100) + u64(m["version"]) + u64(0) + u8(0)
                  + blob(tensors, 2), version=4)
        t, _, a = c.receive()
        report.check("version 4: a PUSH (version 3's layout) is acknowledged with datasets + 100",
                     t == T["ack"] and a["version"] == m["version"] + 1 and a["datasets"] == m["datasets"] + 100,
                     str((TYPE_NAMES.get(t), a)))
        c.close()

    def evaluation_payload(task, version, examples, loss, metrics=()):
        return (u64(task) + u64(version) + u64(examples) + struct.pack(">d", loss) + u16(len(metrics))
                + b"".join(sstr(n) + struct.pack(">d", v) for n, v in sorted(metrics)))

    def s_evaluation():
        """Section 12.10 against a server with rounds that hands out evaluate tasks (fed server
        --evaluate-fraction F): a client that can only evaluate gets one at once, and its report is checked."""
        c, w = v4_session("conformance-eval")
        c.request(T["check_in"], check_in_payload(0, features=2, abilities=2), version=4)
        ans = c.receive()
        if ans is None or ans[0] != T["assignment"] or ans[2]["kind"] != 2:
            print("note  no evaluate task for an evaluate-only client (%s): section 12.10 checks skipped (start the "
                  "server with --evaluate-fraction)" % (ans,))
            c.close()
            return
        task = ans[2]
        report.check("evaluation: an evaluate-only client speaking feature 1 gets an evaluate ASSIGNMENT (kind 2) at "
                     "once, the feature agreed, a task id and a deadline",
                     task["features"] & 2 and task["task_id"] != 0 and task["deadline_ms"] > 0, str(task))
        version = task["model_version"]
        other, _ = v4_session("conformance-eval-other")
        other.request(T["evaluation_report"], evaluation_payload(task["task_id"], version, 10, 0.5), version=4)
        ans = other.receive()
        report.check("evaluation: another client's EVALUATION_REPORT of the task gets unknown_task (44)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"], str(ans))
        other.close()
        for name, payload, code in (
                ("0 examples", evaluation_payload(task["task_id"], version, 0, 0.5), "invalid_datasets"),
                ("a NaN loss", evaluation_payload(task["task_id"], version, 10, float("nan")), "non_finite_value"),
                ("an infinite metric", evaluation_payload(task["task_id"], version, 10, 0.5, [("accuracy", float("inf"))]),
                 "non_finite_value"),
                ("a version not yet published", evaluation_payload(task["task_id"], version + 1, 10, 0.5),
                 "malformed_payload")):
            c.request(T["evaluation_report"], payload, version=4)
            ans = c.receive()
            report.check("evaluation: an EVALUATION_REPORT with %s gets %s (%d)" % (name, code, E[code]),
                         ans is not None and ans[0] == T["error"] and ans[2]["code"] == E[code], str(ans))
        for attempt in ("", " again (it replaces the first)"):
            c.request(T["evaluation_report"], evaluation_payload(task["task_id"], version, 40, 0.25,
                                                                 [("accuracy", 0.75)]), version=4)
            ans = c.receive()
            report.check("evaluation: the EVALUATION_REPORT is acknowledged at once with the current version%s"
                         % attempt, ans is not None and ans[0] == T["ack"] and ans[2]["version"] >= version, str(ans))
        c.request(T["check_in"], check_in_payload(0, features=2, abilities=2), version=4)
        ans = c.receive()
        report.check("evaluation: no second evaluate task of the same version for the same client",
                     ans is not None and ans[0] == T["assignment"] and ans[2]["kind"] != 2, str(ans))
        c.close()

    def s_no_rounds():
        """A server started without rounds answers the rounds' requests with unexpected_message (33)."""
        c, w = v4_session("conformance-norounds")
        c.request(T["check_in"], check_in_payload(0), version=4)
        ans = c.receive()
        report.check("no rounds: CHECK_IN gets unexpected_message (33), not fatal (run with --rounds against a "
                     "server with rounds)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"]
                     and not ans[2]["retryable"], str(ans))
        c.request(T["report"], report_payload(7, 10, [([1], [0.0])]), version=4)
        ans = c.receive()
        report.check("no rounds: REPORT gets unexpected_message (33)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"], str(ans))
        c.request(T["ping"], u64(5), version=4)
        ans = c.receive()
        report.check("no rounds: the connection goes on (PING gets PONG)", ans is not None and ans[0] == T["pong"],
                     str(ans))
        c.close()

    def s_rounds():
        """Section 12 against a fresh server started with --rounds 2 --min-reports 1 --round-deadline 2
        --selection-window 0.2 (any cohort of at least 2, a minimum of 1, a deadline of a few seconds)."""
        tag = os.getpid()
        a, wa = v4_session("conformance-a-%d" % tag)
        b, wb = v4_session("conformance-b-%d" % tag)
        a.request(T["fetch"], u64(0) + u8(2) + u8(0), version=4)
        t, _, m = a.receive()
        base_version, base_datasets, model = m["version"], m["datasets"], floats(m["tensors"])
        unknown_bits = (1 << 63) | (1 << 40)
        started = time.monotonic()
        a.request(T["check_in"], check_in_payload(5000, features=unknown_bits, properties={"os": "conformance"}),
                  version=4)
        b.request(T["check_in"], check_in_payload(5000), version=4)
        ta, _, ga = a.receive()
        tb, _, gb = b.receive()
        waited = time.monotonic() - started
        ok = ta == tb == T["assignment"] and ga["kind"] == gb["kind"] == 1
        report.check("rounds: two clients checking in (wait 5 s) each get a train ASSIGNMENT (kind 1) after %.2f s"
                     % waited, ok and waited < 5, str((ga, gb)))
        if not ok:
            return
        report.check("rounds: both tasks belong to one round (>= 1), from the current model version, with distinct "
                     "non-zero task ids",
                     ga["round"] == gb["round"] >= 1 and ga["model_version"] == gb["model_version"] == base_version
                     and ga["task_id"] != gb["task_id"] and 0 not in (ga["task_id"], gb["task_id"]), str((ga, gb)))
        report.check("rounds: the ASSIGNMENT's features are within the check-in's (unknown bits 40 and 63 stated)",
                     ga["features"] & ~unknown_bits == 0 and gb["features"] == 0, str((ga["features"], gb["features"])))
        report.check("rounds: a train ASSIGNMENT names a deadline", ga["deadline_ms"] > 0, str(ga))
        deadline = ga["deadline_ms"] / 1000.0
        assigned = time.monotonic()

        c, _ = v4_session("conformance-c-%d" % tag)
        c.request(T["report"], report_payload(0x0123456789ABCDEF ^ ga["task_id"] ^ gb["task_id"], 10, model),
                  version=4)
        ans = c.receive()
        report.check("rounds: a REPORT of a task the server never gave gets unknown_task (44), not retryable",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"]
                     and not ans[2]["retryable"], str(ans))
        c.request(T["report"], report_payload(gb["task_id"], 10, model), version=4)
        ans = c.receive()
        report.check("rounds: a REPORT of another client's task gets unknown_task (44)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"], str(ans))
        c.request(T["check_in"], check_in_payload(300), version=4)
        ans = c.receive()
        report.check("rounds: a CHECK_IN (wait 0.3 s) while the round runs with its cohort gets come back (kind 0), "
                     "reason round full (2), task id 0",
                     ans is not None and ans[0] == T["assignment"] and ans[2]["kind"] == 0 and ans[2]["reason"] == 2
                     and ans[2]["task_id"] == 0, str(ans))
        c.close()

        a.request(T["report"], report_payload(ga["task_id"], 100, model[:-1]), version=4)
        ans = a.receive()
        report.check("rounds: a REPORT with the wrong shapes gets shape_mismatch (34) at once",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["shape_mismatch"], str(ans))
        a.request(T["report"], report_payload(ga["task_id"], 0, model), version=4)
        ans = a.receive()
        report.check("rounds: a REPORT of 0 samples gets invalid_datasets (36) at once",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["invalid_datasets"], str(ans))
        trained = [(s, [f32(v + 0.001 * ((i % 13) - 6)) for i, v in enumerate(vals)]) for s, vals in model]
        a.request(T["report"], report_payload(ga["task_id"], 100, trained), version=4)
        a2, _ = v4_session("conformance-a-%d" % tag)  # the same report again, as after a lost answer
        a2.request(T["report"], report_payload(ga["task_id"], 100, trained), version=4)
        first, again = a.receive(), a2.receive()
        closed = time.monotonic() - assigned
        ok = first is not None and first[0] == T["ack"]
        report.check("rounds: the REPORT is acknowledged when the round closes at its deadline (%.1f s), one of two "
                     "reports in: ACK version + 1 (%.2f s after the ASSIGNMENT)" % (deadline, closed),
                     ok and first[2]["version"] == base_version + 1 and closed >= deadline - 0.5,
                     str(first))
        report.check("rounds: the same task reported twice counts once: the same ACK, datasets + 100",
                     ok and again is not None and again[2] == first[2] and first[2]["datasets"] == base_datasets + 100,
                     str((first, again)))
        a2.close()
        b.request(T["report"], report_payload(gb["task_id"], 100, trained), version=4)
        ans = b.receive()
        report.check("rounds: a REPORT after its round closed without it gets round_closed (45), not retryable",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["round_closed"]
                     and not ans[2]["retryable"], str(ans))
        b.close()
        a.request(T["fetch"], u64(0) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        report.check("rounds: the round applied the sample-weighted mean of its reports (one report: its weights)",
                     t == T["model"] and m["version"] == base_version + 1 and floats(m["tensors"]) == trained,
                     str((TYPE_NAMES.get(t), m.get("version"))))
        a.request(T["report"], report_payload(ga["task_id"], 100, trained), version=4)
        ans = a.receive()
        if not (ans and ans[0] == T["ack"] and ans[2] == first[2]):
            print("note  a REPORT repeated after its round closed got %s (section 12.5: the same ACK)"
                  % str(ans and (TYPE_NAMES.get(ans[0]), ans[2])))

        a.request(T["check_in"], check_in_payload(5000), version=4)
        t, _, g2 = a.receive()
        report.check("rounds: the next CHECK_IN gets a task of the next round, from the version the last one produced",
                     t == T["assignment"] and g2["kind"] == 1 and g2["round"] == ga["round"] + 1
                     and g2["model_version"] == base_version + 1, str(g2))
        if t != T["assignment"] or g2["kind"] != 1:
            return
        time.sleep(g2["deadline_ms"] / 1000.0 + 0.5)
        a.request(T["report"], report_payload(g2["task_id"], 100, trained), version=4)
        ans = a.receive()
        report.check("rounds: a round with no report by its deadline is abandoned: its late REPORT gets "
                     "round_closed (45)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["round_closed"], str(ans))
        a.request(T["fetch"], u64(base_version + 1) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        report.check("rounds: nothing of the abandoned round was applied (MODEL_UNCHANGED)",
                     t == T["model_unchanged"], str(TYPE_NAMES.get(t)))
        a.request(T["check_in"], check_in_payload(0), version=4)
        t, _, g3 = a.receive()
        report.check("rounds: a CHECK_IN with wait 0 and no round to open gets come back, reason no task (1)",
                     t == T["assignment"] and g3["kind"] == 0 and g3["reason"] == 1 and g3["task_id"] == 0, str(g3))
        a.close()

    def s_secagg():
        """Section 12.11 against a fresh server started with --rounds 3 --over-selection 1 --min-reports 3
        --secagg t=2: three clients written here (Python's cryptography package) take part in one secure round."""
        try:
            import cryptography  # noqa: F401
        except ImportError:
            report.check("secagg: Python's cryptography package is installed (pip install cryptography)", False)
            return
        tag = os.getpid()
        names = ["conformance-sa%d-%d" % (i, tag) for i in range(3)]
        conns = [v4_session(n)[0] for n in names]
        a = conns[0]
        a.request(T["fetch"], u64(0) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        base_version, base_datasets, model = m["version"], m["datasets"], floats(m["tensors"])
        dimension = sum(len(v) for _, v in model)
        a.request(T["secagg_keys"], u64(0x5EC0FFEE ^ tag) + os.urandom(64), version=4)
        ans = a.receive()
        report.check("secagg: SECAGG_KEYS of a task the server never gave gets unknown_task (44)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"], str(ans))
        for c in conns:
            c.request(T["check_in"], check_in_payload(10000, features=4), version=4)
        tasks = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["assignment"] and x[2]["kind"] == 3 for x in tasks)
        report.check("secagg: three clients checking in with feature bit 2 each get a secure-train ASSIGNMENT (kind 3)",
                     ok, str(tasks))
        if not ok:
            return
        tasks = [x[2] for x in tasks]
        p = tasks[0]["parameters"]
        report.check("secagg: the tasks share a round and a model version, agree feature bit 2 and state n = 3, "
                     "k = 2, t = 2, bits, clip and w",
                     len({(x["round"], x["model_version"]) for x in tasks}) == 1 and all(x["features"] & 4 for x in tasks)
                     and len({x["task_id"] for x in tasks}) == 3 and all(x["parameters"] == p for x in tasks)
                     and (p.get("secagg.n"), p.get("secagg.k"), p.get("secagg.t")) == ("3", "2", "2")
                     and all(k in p for k in ("secagg.bits", "secagg.clip", "secagg.w")), str(p))
        round_, t_, bits = tasks[0]["round"], int(p["secagg.t"]), int(p["secagg.bits"])
        clip, n, w = float(p["secagg.clip"]), int(p["secagg.n"]), int(p["secagg.w"])
        a.request(T["report"], report_payload(tasks[0]["task_id"], 100, model), version=4)
        ans = a.receive()
        report.check("secagg: a REPORT of a secure-train task gets unexpected_message (33): its update travels masked",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"], str(ans))
        a.request(T["secagg_keys"], u64(tasks[1]["task_id"]) + os.urandom(64), version=4)
        ans = a.receive()
        report.check("secagg: SECAGG_KEYS naming another client's task gets unknown_task (44)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unknown_task"], str(ans))

        clients = [SecAggClient(round_, t_, bits) for _ in conns]
        for c, task, sc in zip(conns, tasks, clients):
            c.request(T["secagg_keys"], u64(task["task_id"]) + sc.c_public + sc.s_public, version=4)
        rosters = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_roster"] for x in rosters)
        report.check("secagg: each SECAGG_KEYS is answered by a SECAGG_ROSTER once all three advertised", ok,
                     str(rosters))
        if not ok:
            return
        rosters = [x[2] for x in rosters]
        ids = [r["participant"] for r in rosters]
        advertised = {r["participant"]: (sc.c_public.hex(), sc.s_public.hex()) for r, sc in zip(rosters, clients)}
        report.check("secagg: the rosters give ids 1, 2, 3, each the other two as neighbours (k = 2) with the keys "
                     "they advertised",
                     sorted(ids) == [1, 2, 3] and all(
                         [nb["id"] for nb in r["neighbours"]] == sorted(set(ids) - {r["participant"]})
                         and all((nb["encryption_key"], nb["masking_key"]) == advertised[nb["id"]]
                                 for nb in r["neighbours"]) for r in rosters), str(rosters))
        for c, task, sc, r in zip(conns, tasks, clients, rosters):
            c.request(T["secagg_shares"], u64(task["task_id"]) + u16(2) + b"".join(
                u32(j) + u16(len(b)) + b for j, b in sc.shares(r)), version=4)
        inboxes = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_inbox"] for x in inboxes)
        report.check("secagg: each SECAGG_SHARES is answered by a SECAGG_INBOX once all three shared", ok, str(inboxes))
        if not ok:
            return
        opened = True
        for sc, x in zip(clients, inboxes):
            try:
                sc.open(x[2])
            except Exception as e:  # InvalidTag or a share for another x
                opened = False
                print("note  %s" % e)
        report.check("secagg: every inbox holds one bundle from each neighbour, and each opens (ChaCha20-Poly1305 "
                     "under the HKDF share key, associated data round + sender + recipient)",
                     opened and all(sorted(sc.held) == sorted(set(ids) - {sc.me}) for sc in clients))

        weights = [100, 200, 300]
        updates = [[0.001 * (((i * (k + 2)) % 7) - 3) for i in range(dimension)] for k in range(3)]
        length = dimension + (w.bit_length() + bits - n.bit_length() - 1) // (bits - n.bit_length())
        width = 2 if bits <= 16 else 4
        code = "H" if width == 2 else "I"
        a.request(T["secagg_input"], u64(tasks[0]["task_id"]) + u8(width) + u32(length - 1)
                  + struct.pack("<%d%s" % (length - 1, code), *([0] * (length - 1))), version=4)
        ans = a.receive()
        report.check("secagg: a SECAGG_INPUT one element short gets shape_mismatch (34), and the client may send again",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["shape_mismatch"], str(ans))
        scale = None
        for c, task, sc, update, weight in zip(conns, tasks, clients, updates, weights):
            values, scale = fixed_point(update, weight, bits, clip, n, w)
            masked = sc.mask(values)
            c.request(T["secagg_input"], u64(task["task_id"]) + u8(width) + u32(len(masked))
                      + struct.pack("<%d%s" % (len(masked), code), *masked), version=4)
        survivors = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_survivors"] for x in survivors)
        report.check("secagg: each masked SECAGG_INPUT (%d elements of %d bytes) is answered by SECAGG_SURVIVORS"
                     % (length, width), ok, str(survivors))
        if not ok:
            return
        report.check("secagg: SECAGG_SURVIVORS counts 3 inputs and lists both neighbours of each client",
                     all(x[2]["contributors"] == 3 and x[2]["survivors"] == sorted(set(ids) - {sc.me})
                         for x, sc in zip(survivors, clients)), str(survivors))
        unmasks = []
        for c, task, sc, x in zip(conns, tasks, clients, survivors):
            shares = sc.unmask(set(x[2]["survivors"]))
            unmasks.append(u64(task["task_id"]) + u16(len(shares)) + b"".join(
                u32(o) + u8(k) + u16(len(s)) + s for o, k, s in shares))
            c.request(T["secagg_unmask"], unmasks[-1], version=4)
        acks = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["ack"] for x in acks)
        report.check("secagg: each SECAGG_UNMASK (self-mask seed shares, kind 1) is answered by the round's ACK: "
                     "version + 1, datasets + the sum of the weights",
                     ok and all(x[2]["version"] == base_version + 1 and x[2]["datasets"] == base_datasets + sum(weights)
                                for x in acks), str(acks))
        a.request(T["fetch"], u64(0) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        got = [v for _, vals in floats(m["tensors"]) for v in vals] if t == T["model"] else []
        base = [v for _, vals in model for v in vals]
        total = sum(weights)
        bound = len(weights) * 0.5 * w / (total * scale) + 1e-6  # rounding to nearest, plus Float32's rounding
        err = max((abs(g - b0 - sum(wt * u[i] for wt, u in zip(weights, updates)) / total)
                   for i, (g, b0) in enumerate(zip(got, base))), default=float("inf"))
        report.check("secagg: the new model is the base plus the weighted mean of the three updates, within the "
                     "quantization bound (max error %.2e, bound %.2e)" % (err, bound),
                     t == T["model"] and m["version"] == base_version + 1 and len(got) == len(base) and err <= bound,
                     str((TYPE_NAMES.get(t), m.get("version"))))
        a.request(T["secagg_unmask"], unmasks[0], version=4)
        ans = a.receive()
        report.check("secagg: a SECAGG_UNMASK repeated after the round closed gets the same ACK",
                     ans is not None and ans[0] == T["ack"] and ans[2] == acks[0][2], str(ans))
        a.request(T["secagg_keys"], u64(tasks[0]["task_id"]) + clients[0].c_public + clients[0].s_public, version=4)
        ans = a.receive()
        report.check("secagg: SECAGG_KEYS of a task whose round has closed gets round_closed (45)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["round_closed"], str(ans))
        for c in conns:
            c.close()

    def s_secagg_consistency():
        """Section 12.11's consistency check against a fresh server started with --rounds 3 --over-selection 1
        --min-reports 3 --secagg consistency=on --secagg-identities DIR/trusted.txt, DIR written by
        `fed secagg-identities --out DIR` for three clients: they take part here with their keys."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
        from cryptography.exceptions import InvalidSignature
        import hashlib
        keys = {}
        for f in sorted(os.listdir(identities)):
            if f.endswith(".key"):
                name, hexkey = open(os.path.join(identities, f)).read().split()
                keys[name] = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(hexkey))
        trusted = {}
        for line in open(os.path.join(identities, "trusted.txt")):
            if line.strip() and not line.startswith("#"):
                name, hexkey = line.split()
                trusted[name] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(hexkey))
        names = sorted(keys)[:3]

        def valid(name, sig, text):
            try:
                trusted[name].verify(sig, text)
                return True
            except InvalidSignature:
                return False

        conns = [v4_session(n)[0] for n in names]
        for c in conns:
            c.request(T["check_in"], check_in_payload(10000, features=4), version=4)
        tasks = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["assignment"] and x[2]["kind"] == 3 for x in tasks)
        report.check("consistency: three clients with identities get secure-train tasks", ok, str(tasks))
        if not ok:
            return
        tasks = [x[2] for x in tasks]
        p = tasks[0]["parameters"]
        report.check("consistency: the tasks state secagg.consistency = on and one 64-hex-digit cohort digest",
                     all(x["parameters"] == p for x in tasks) and p.get("secagg.consistency") == "on"
                     and len(p.get("secagg.cohort", "")) == 64, str(p))
        digest = bytes.fromhex(p["secagg.cohort"])
        round_, t_, bits = tasks[0]["round"], int(p["secagg.t"]), int(p["secagg.bits"])
        clip, n, w = float(p["secagg.clip"]), int(p["secagg.n"]), int(p["secagg.w"])
        clients = [SecAggClient(round_, t_, bits) for _ in conns]

        def keys_statement(name, c, s_):
            return b"swift-federated secagg keys v1" + digest + sstr(name) + c + s_

        a = conns[0]
        a.request(T["secagg_keys"], u64(tasks[0]["task_id"]) + clients[0].c_public + clients[0].s_public, version=4)
        ans = a.receive()
        report.check("consistency: unsigned SECAGG_KEYS get unexpected_message (33)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unexpected_message"], str(ans))
        forged = Ed25519PrivateKey.generate().sign(keys_statement(names[0], clients[0].c_public, clients[0].s_public))
        a.request(T["secagg_signed_keys"], u64(tasks[0]["task_id"]) + clients[0].c_public + clients[0].s_public
                  + forged, version=4)
        ans = a.receive()
        report.check("consistency: SECAGG_SIGNED_KEYS signed by a key not trusted for the client get unauthorized (37)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unauthorized"], str(ans))
        for c, task, sc, name in zip(conns, tasks, clients, names):
            sig = keys[name].sign(keys_statement(name, sc.c_public, sc.s_public))
            c.request(T["secagg_signed_keys"], u64(task["task_id"]) + sc.c_public + sc.s_public + sig, version=4)
        rosters = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_signed_roster"] for x in rosters)
        report.check("consistency: each SECAGG_SIGNED_KEYS is answered by a SECAGG_SIGNED_ROSTER", ok, str(rosters))
        if not ok:
            return
        rosters = [x[2] for x in rosters]
        r0 = rosters[0]
        text = b"swift-federated secagg cohort v1" + u64(round_) + bytes.fromhex(r0["session"]) + u16(len(r0["cohort"]))
        text += b"".join(u32(m["id"]) + sstr(m["name"]) for m in r0["cohort"])
        members = {m["id"]: m["name"] for m in r0["cohort"]}
        report.check("consistency: the cohort relayed hashes to secagg.cohort, names each client at its id, and "
                     "every neighbour's keys carry its member's signature",
                     hashlib.sha256(text).digest() == digest and all(r["cohort"] == r0["cohort"] and r["session"] == r0["session"]
                                                   and members[r["participant"]] == name
                                                   for r, name in zip(rosters, names))
                     and all(valid(members[nb["id"]], bytes.fromhex(nb["signature"]),
                                   keys_statement(members[nb["id"]], bytes.fromhex(nb["encryption_key"]),
                                                  bytes.fromhex(nb["masking_key"])))
                             for r in rosters for nb in r["neighbours"]), str(r0["cohort"]))
        for c, task, sc, r in zip(conns, tasks, clients, rosters):
            c.request(T["secagg_shares"], u64(task["task_id"]) + u16(len(r["neighbours"])) + b"".join(
                u32(j) + u16(len(b)) + b for j, b in sc.shares(r)), version=4)
        inboxes = [c.receive() for c in conns]
        if not all(x is not None and x[0] == T["secagg_inbox"] for x in inboxes):
            report.check("consistency: each SECAGG_SHARES is answered by a SECAGG_INBOX", False, str(inboxes))
            return
        for sc, x in zip(clients, inboxes):
            sc.open(x[2])
        a.request(T["fetch"], u64(0) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        model = floats(m["tensors"])
        dimension = sum(len(v) for _, v in model)
        weights = [100, 200, 300]
        updates = [[0.001 * (((i * (k + 3)) % 5) - 2) for i in range(dimension)] for k in range(3)]
        width = 2 if bits <= 16 else 4
        scale = None
        for c, task, sc, update, weight in zip(conns, tasks, clients, updates, weights):
            values, scale = fixed_point(update, weight, bits, clip, n, w)
            masked = sc.mask(values)
            c.request(T["secagg_input"], u64(task["task_id"]) + u8(width) + u32(len(masked))
                      + struct.pack("<%d%s" % (len(masked), "H" if width == 2 else "I"), *masked), version=4)
        u3s = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_contributors"] and x[2]["contributors"] == [1, 2, 3] for x in u3s)
        report.check("consistency: each masked SECAGG_INPUT is answered by SECAGG_CONTRIBUTORS, U3 = {1, 2, 3}", ok,
                     str(u3s))
        if not ok:
            return
        u3 = b"swift-federated secagg consistency v1" + digest + u16(3) + u32(1) + u32(2) + u32(3)
        a.request(T["secagg_consistency"], u64(tasks[0]["task_id"]) + keys[names[0]].sign(u3[:-4] + u32(4)), version=4)
        ans = a.receive()
        report.check("consistency: a signature of another U3 gets unauthorized (37)",
                     ans is not None and ans[0] == T["error"] and ans[2]["code"] == E["unauthorized"], str(ans))
        for c, task, name in zip(conns, tasks, names):
            c.request(T["secagg_consistency"], u64(task["task_id"]) + keys[name].sign(u3), version=4)
        sigs = [c.receive() for c in conns]
        ok = all(x is not None and x[0] == T["secagg_signatures"] for x in sigs)
        report.check("consistency: each SECAGG_CONSISTENCY is answered by SECAGG_SIGNATURES, and all three "
                     "signatures verify on U3",
                     ok and all([s_["signer"] for s_ in x[2]["signatures"]] == [1, 2, 3]
                                and all(valid(members[s_["signer"]], bytes.fromhex(s_["signature"]), u3)
                                        for s_ in x[2]["signatures"]) for x in sigs), str(sigs))
        if not ok:
            return
        for c, task, sc in zip(conns, tasks, clients):
            shares = sc.unmask({1, 2, 3})
            c.request(T["secagg_unmask"], u64(task["task_id"]) + u16(len(shares)) + b"".join(
                u32(o) + u8(k) + u16(len(s_)) + s_ for o, k, s_ in shares), version=4)
        acks = [c.receive() for c in conns]
        a.request(T["fetch"], u64(0) + u8(0) + u8(0), version=4)
        t, _, m = a.receive()
        got = [v for _, vals in floats(m["tensors"]) for v in vals] if t == T["model"] else []
        base = [v for _, vals in model for v in vals]
        total = sum(weights)
        bound = len(weights) * 0.5 * w / (total * scale) + 1e-6
        err = max((abs(g - b0 - sum(wt * u[i] for wt, u in zip(weights, updates)) / total)
                   for i, (g, b0) in enumerate(zip(got, base))), default=float("inf"))
        report.check("consistency: every SECAGG_UNMASK gets the round's ACK, and the model is the weighted mean "
                     "within the quantization bound (max error %.2e, bound %.2e)" % (err, bound),
                     all(x is not None and x[0] == T["ack"] for x in acks) and err <= bound, str(acks))
        for c in conns:
            c.close()

    if identities:
        scenario("secure aggregation, consistency check", s_secagg_consistency)
        return

    if secagg:
        scenario("secure aggregation", s_secagg)
        return
    scenario("handshake", s_handshake)
    scenario("versions", s_versions)
    scenario("fetch/push", s_fetch_push)
    scenario("idempotent push", s_idempotent_push)
    scenario("encodings", s_encodings)
    scenario("errors", s_errors)
    scenario("pipelining", s_pipelining)
    scenario("bytewise", s_bytewise)
    scenario("spec points", s_spec_points)
    scenario("fetch deltas", s_fetch_deltas)
    scenario("http", s_http)
    scenario("version 4", s_version4)
    if rounds:
        scenario("rounds", s_rounds)
        scenario("evaluation", s_evaluation)
    else:
        scenario("no rounds", s_no_rounds)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vectors", default=os.path.join(here, "..", "vectors"), help="golden vector folder ('' to skip)")
    p.add_argument("--server", help="HOST:PORT of a live server to check")
    p.add_argument("--rounds", action="store_true",
                   help="run the rounds scenarios (section 12) instead of checking that the server runs no rounds; "
                        "the server must be fresh and started with --rounds 2 --min-reports 1 --round-deadline 2 "
                        "--selection-window 0.2 (they take about 6 s)")
    p.add_argument("--secagg", action="store_true",
                   help="run only the secure aggregation scenario (section 12.11): three clients written here take "
                        "part in one secure round; the server must be fresh and started with --rounds 3 "
                        "--over-selection 1 --min-reports 3 --secagg t=2. Needs Python's cryptography package")
    p.add_argument("--secagg-identities", metavar="DIR",
                   help="run only the consistency check's scenario (section 12.11): three clients whose keys "
                        "`fed secagg-identities --out DIR` wrote take part; the server must be fresh and started "
                        "with --rounds 3 --over-selection 1 --min-reports 3 --secagg consistency=on "
                        "--secagg-identities DIR/trusted.txt. Needs Python's cryptography package")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for each answer of the server (default 10)")
    a = p.parse_args()
    Conn.timeout = a.timeout
    report = Report()
    if a.vectors:
        check_vectors(a.vectors, report)
    if a.server:
        host, port = a.server.rsplit(":", 1)
        try:
            run_server(host, int(port), report, a.rounds, a.secagg, a.secagg_identities)
        except OSError as e:
            report.check("connect to %s" % a.server, False, str(e))
    print("%d passed, %d failed" % (report.passed, report.failed))
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
