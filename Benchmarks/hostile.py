#!/usr/bin/env python3
"""Hostile clients against a real `fed server`: the bars of the hardening work.

Starts `fed server` (a child process on 127.0.0.1, a fresh checkpoint folder
per scenario), attacks it over loopback with Python standard-library sockets,
and prints one line per bar with the measured figures and PASS or FAIL:

  flood-http     1,024 connections each declaring a 33 MB HTTP body and sending
                 the first part of it, under a 3 GB address-space cap (ulimit -v)
  flood-binary   the same with a frame header declaring a 16 MB payload
  budget-*       the same floods with the size limits raised above the attack,
                 so that the memory budget is the only defence
  slow-reader    one HTTP client pipelining GET / and never reading, over 150 versions
  sigterm        SIGTERM while 8 clients push back to back
  bad-request    a 400 from the HTTP parser closes the connection
  dribble        headers dribbled a byte at a time, closed at --request-timeout
  half-close     PUSH then shutdown(SHUT_WR), 20 times
  retry          a version-2 push sent again after its ACK was lost
  silent         1,024 silent connections, then a new client
  bombs          8 clients pushing decompression bombs while one fetches
  http-token     HTTP with and without the bearer token when tokens are set
  log-forgery    a client id with a newline and a 100 KB HTTP id
  weak-etag      If-None-Match with W/"vN", a list, and *: 304 as RFC 9110 says
  version-urls   /v1/model/01, +1, 00, 1.0, %31: no second URL for a version (404)
  extreme-*      finite pushes of ±2e38 against --fetch-deltas int8/int4/int2, and
                 fedbuff/k=2's ±3e38 sequence: no crash, nothing beyond ±1e15
                 published, the same after a restart
  keys-flood     a keyed push, then 1,000 other ids send 10,000 keyed pushes, then
                 its retry: applied once
  slow-disk      every fsync delayed 1 s (strace fault injection) while a client pushes
                 back to back: p99 of a plain FETCH, a MODEL_DELTA FETCH, GET /metrics
                 and PING from other connections (each under 50 ms)
  staleness      --max-staleness 1000 on the MNIST model refused at start with the
                 limit named; the largest allowed, with 400 pushes, within
                 --memory-budget + 64 MB of resident memory
  edge-sigterm   SIGTERM to an edge whose upstream accepts and stays silent, and
                 one whose upstream sends a byte every 5 s (--shutdown-grace 2)
  tls-flood      one recorded ClientHello replayed from 127.0.0.2 at 570/s (each
                 connection left open 10 s) while a client on 127.0.0.1 times
                 TLS handshake + HELLO, without and with the handshake limits

Every request loop is bounded in count and time, and only loopback is used
(127.0.0.1, and 127.0.0.2 as a second host).
Usage: python3 Benchmarks/hostile.py [--fed .build/release/fed] [--only NAME ...]
Exit status 0 when every bar passes.
"""
import argparse
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Protocol", "conformance"))
import conformance as C  # noqa: E402  (the protocol's independent Python codec)

GB = 1 << 30
MB = 1 << 20
MLP = [(s, [((i * 7919) % 200 - 100) / 1000.0 for i in range(int(C.math.prod(s)))]) for s in C.MLP_SHAPES]
RESULTS = []


def bar(name, ok, figures):
    ok = bool(ok)
    RESULTS.append(ok)
    print("%-4s %-13s %s" % ("PASS" if ok else "FAIL", name, figures), flush=True)


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, fed, extra=(), address_space=None, checkpoint=None, prefix=()):
        self.dir = tempfile.mkdtemp(prefix="hostile-")
        self.checkpoint = checkpoint or os.path.join(self.dir, "model.fedk")
        self.log = open(os.path.join(self.dir, "server.log"), "w+")

        def limits():
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
            if address_space:
                resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

        self.p = subprocess.Popen(list(prefix) + [fed, "server", "--port", "0", "--checkpoint", self.checkpoint] + list(extra),
                                  stdout=subprocess.PIPE, stderr=self.log, preexec_fn=limits)
        line = self.p.stdout.readline().decode()
        if "listening on" not in line:
            raise SystemExit("fed server did not start: %r (log: %s)" % (line, self.log.name))
        self.port = int(line.rsplit(":", 1)[1])

    def status(self, key):
        try:
            with open("/proc/%d/status" % self.p.pid) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) * 1024
        except FileNotFoundError:
            return 0
        return 0

    def rss(self): return self.status("VmRSS")
    def peak(self): return self.status("VmHWM")
    def alive(self): return self.p.poll() is None

    def log_text(self):
        self.log.flush()
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Client:
    """A blocking binary-protocol client (request, then read its answer)."""

    def __init__(self, port, client="hostile", version=1, timeout=10):
        self.s = connect(port, timeout)
        self.stream = C.FrameStream(dict(C.LIMITS, max_payload=1 << 30))
        self.rid = 0
        self.version = 1
        t, _, m = self.request(C.T["hello"], C.hello(client, 1, version))
        if t != C.T["welcome"]:
            raise RuntimeError("no WELCOME: %r" % (m,))
        self.version = m["version"]

    def request(self, type_, payload):
        self.rid += 1
        self.s.sendall(C.frame(type_, self.rid, payload, version=self.version))
        return self.receive()

    def receive(self):
        while True:
            f = self.stream.next()
            if f is not None:
                return f[0], f[1], C.decode_message(f[0], f[2], dict(C.LIMITS, max_decompressed=GB), f[3])
            data = self.s.recv(1 << 20)
            if not data:
                return None, None, None
            self.stream.feed(data)

    def fetch(self):
        return self.request(C.T["fetch"], C.u64(0) + C.u8(0))

    def push(self, blob_bytes, datasets=10, push_id=None):
        body = C.sstr("hostile") + C.u64(datasets) + C.u64(0)
        if self.version >= 2:
            body += C.u64(push_id or 0)
        return self.request(C.T["push"], body + blob_bytes)


class Prober(threading.Thread):
    """A normal client fetching the whole model in a loop; records latencies."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.latencies, self.errors, self.stop = port, [], 0, False

    def run(self):
        c = None
        while not self.stop:
            try:
                c = c or Client(self.port, "prober")
                t0 = time.perf_counter()
                t, _, _ = c.fetch()
                if t != C.T["model"]:
                    raise RuntimeError("fetch answered %r" % t)
                self.latencies.append(time.perf_counter() - t0)
            except Exception:
                self.errors += 1
                c = None
                time.sleep(0.05)
            time.sleep(0.005)

    def p99_ms(self):
        if not self.latencies:
            return float("inf")
        xs = sorted(self.latencies)
        return 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


# ---------------------------------------------------------------- scenarios

def flood(fed, name, extra, opener, connections, budget_mb):
    srv = Server(fed, ["--max-connections", "1024", "--memory-budget", str(budget_mb)] + extra, address_space=3 * GB)
    base = srv.rss()
    prober = Prober(srv.port)
    prober.start()
    time.sleep(0.3)
    socks, refused = [], 0
    t0 = time.time()
    for i in range(connections):
        try:
            s = connect(srv.port, 2)
            opener(s)
            socks.append(s)
        except OSError:
            refused += 1
    time.sleep(1.0)
    answered = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(64):
                answered += 1
        except (BlockingIOError, OSError):
            pass
    took = time.time() - t0
    prober.stop = True
    prober.join(5)
    peak, alive = srv.peak(), srv.alive()
    for s in socks:
        s.close()
    srv.stop()
    ok = alive and peak <= budget_mb * MB + base and prober.p99_ms() < 50 and prober.latencies
    bar(name, ok, "%d connections in %.1f s, %d answered early, %d refused at connect; server alive %s, resident "
        "%.0f MB at start, peak %.0f MB (budget %d MB); fetch p99 %.1f ms over %d fetches, %d failed"
        % (connections, took, answered, refused, alive, base / MB, peak / MB, budget_mb, prober.p99_ms(),
           len(prober.latencies), prober.errors))


def http_opener(body_bytes):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 33000000\r\n\r\n"
    chunk = b"id=flood&send=True&datasets=1&weights=" + b"1" * max(0, body_bytes - 38)

    def open_(s):
        s.sendall(head + chunk)
    return open_


def binary_opener(payload_bytes):
    head = C.MAGIC + C.u8(1) + C.u8(C.T["push"]) + C.u16(0) + C.u32(1) + C.u32(16 << 20) + C.u32(0)

    def open_(s):
        s.sendall(C.frame(C.T["hello"], 1, C.hello("flood")) + head + b"\0" * payload_bytes)
    return open_


def slow_reader(fed):
    srv = Server(fed)
    reader = connect(srv.port)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.settimeout(0.5)
    pusher = Client(srv.port, "pusher")
    time.sleep(0.2)
    start = srv.rss()
    peak_rss = start
    for v in range(150):
        try:
            reader.sendall(b"GET /?id=slow HTTP/1.1\r\nHost: x\r\n\r\n")
        except OSError:
            pass
        t, _, m = pusher.push(C.blob(MLP, 2), 10)
        if t != C.T["ack"]:
            break
        peak_rss = max(peak_rss, srv.rss())
    time.sleep(0.5)
    end = srv.rss()
    versions = m.get("version", 0) if m else 0
    srv.stop()
    bar("slow-reader", versions == 150 and peak_rss - start < 50 * MB,
        "150 versions pushed (last ACK version %d); resident %.0f MB -> peak %.0f MB, end %.0f MB (growth %.0f MB, bar < 50)"
        % (versions, start / MB, peak_rss / MB, end / MB, (peak_rss - start) / MB))


def sigterm(fed):
    srv = Server(fed)
    acked = [0] * 8
    stop = threading.Event()
    blob = C.blob(MLP, 2)

    def pusher(i):
        try:
            c = Client(srv.port, "p%d" % i)
            while not stop.is_set():
                t, _, m = c.push(blob, 1)
                if t != C.T["ack"]:
                    return
                acked[i] = max(acked[i], m["version"])
        except Exception:
            return

    threads = [threading.Thread(target=pusher, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    t0 = time.time()
    srv.p.send_signal(signal.SIGTERM)
    try:
        code = srv.p.wait(20)
    except subprocess.TimeoutExpired:
        code = None
    took = time.time() - t0
    stop.set()
    for t in threads:
        t.join(5)
    try:
        with open(srv.checkpoint, "rb") as f:
            saved = C.decode_checkpoint(f.read())["message"]["version"]
    except Exception as e:
        saved = -1
    top = max(acked)
    bar("sigterm", code == 0 and took < 10 and saved >= top > 0 and "checkpoint written" in srv.log_text(),
        "exit code %s after %.2f s (bar 10 s); highest ACKed version %d, checkpoint version %d"
        % (code, took, top, saved))


def small_bars(fed):
    srv = Server(fed, ["--request-timeout", "5", "--idle-timeout", "10"])
    port = srv.port

    # A 400 closes.
    s = connect(port, 3)
    s.sendall(b"GET / HTTP/1.1\r\nnot a header\r\n\r\n")
    t0 = time.time()
    data = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except socket.timeout:
        pass
    took = time.time() - t0
    bar("bad-request", data.startswith(b"HTTP/1.1 400") and took < 1,
        "answered %r, closed after %.3f s (bar 1 s)" % (data[:12].decode(), took))

    # Header dribble.
    s = connect(port, 1)
    s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
    t0 = time.time()
    closed_at = None
    while time.time() - t0 < 20:
        try:
            s.sendall(b"a")
            s.setblocking(False)
            if s.recv(64) == b"":
                closed_at = time.time() - t0
                break
        except BlockingIOError:
            pass
        except OSError:
            closed_at = time.time() - t0
            break
        finally:
            s.setblocking(True)
        time.sleep(0.2)
    bar("dribble", closed_at is not None and closed_at < 6.5,
        "closed after %s s of dribbled headers (--request-timeout 5)" % ("%.1f" % closed_at if closed_at else "> 20"))

    # Half-close.
    acks = 0
    blob = C.blob(MLP, 2)
    for i in range(20):
        c = Client(port, "half%d" % i)
        c.rid += 1
        c.s.sendall(C.frame(C.T["push"], c.rid, C.sstr("half") + C.u64(1) + C.u64(0) + blob))
        c.s.shutdown(socket.SHUT_WR)
        t, _, _ = c.receive()
        acks += t == C.T["ack"]
        c.s.close()
    bar("half-close", acks == 20, "%d of 20 pushes followed by SHUT_WR got their ACK" % acks)

    # A push retried after a lost ACK.
    push_id = random.getrandbits(63) | 1
    c = Client(port, "retrier", version=2)
    c.rid += 1
    c.s.sendall(C.frame(C.T["push"], c.rid, C.sstr("retrier") + C.u64(10) + C.u64(0) + C.u64(push_id) + blob,
                        version=2))
    c.s.close()  # the ACK is lost with the connection
    time.sleep(0.3)
    c = Client(port, "retrier", version=2)
    before = c.request(C.T["fetch"], C.u64(0) + C.u8(0))[2]["version"]
    t, _, m = c.push(blob, 10, push_id)
    after = c.request(C.T["fetch"], C.u64(0) + C.u8(0))[2]["version"]
    bar("retry", t == C.T["ack"] and m["version"] == before and after == before,
        "retry answered %s version %s; model version %d before, %d after (applied once)"
        % (C.TYPE_NAMES.get(t), m and m.get("version"), before, after))
    srv.stop()

    # Silent connections.
    srv = Server(fed, ["--max-connections", "1024"])
    socks = []
    for _ in range(1024):
        try:
            socks.append(connect(srv.port, 2))
        except OSError:
            break
    time.sleep(0.3)
    t0 = time.time()
    late = connect(srv.port, 5)
    late.sendall(C.frame(C.T["hello"], 1, C.hello("late")))
    st = C.FrameStream()
    answer = None
    try:
        while answer is None:
            d = late.recv(4096)
            if not d:
                break
            st.feed(d)
            f = st.next()
            if f:
                answer = C.decode_message(f[0], f[2])
    except socket.timeout:
        pass
    told = time.time() - t0
    served_at = None
    while time.time() - t0 < 20:
        try:
            Client(srv.port, "later", timeout=2)
            served_at = time.time() - t0
            break
        except Exception:
            time.sleep(0.25)
    bar("silent", answer is not None and answer.get("code") == C.E["overloaded"] and told < 1 and served_at is not None
        and served_at < 15,
        "%d silent connections; a new client told %s after %.3f s, served after %s s (bar 15 s)"
        % (len(socks), answer and C.TYPE_NAMES.get(C.T["error"]) + " %d" % answer.get("code", 0), told,
           "%.1f" % served_at if served_at else "never"))
    for s in socks:
        s.close()
    srv.stop()

    # Decompression bombs.
    srv = Server(fed)
    prober = Prober(srv.port)
    prober.start()
    stop = threading.Event()
    bomb = C.u8(1) + C.u16(1) + C.u8(1) + C.u8(2) + C.u32(4096) + C.u32(4096) + C.u32(64 * MB)
    stored = zlib.compress(b"\0" * (64 * MB), 9)
    bomb += C.u32(len(stored)) + stored
    sent = [0]

    def bomber(i):
        try:
            c = Client(srv.port, "bomber%d" % i)
            deadline = time.time() + 5
            while not stop.is_set() and time.time() < deadline:
                c.push(bomb, 1)
                sent[0] += 1
        except Exception:
            pass

    threads = [threading.Thread(target=bomber, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    prober.stop = True
    prober.join(5)
    bar("bombs", prober.p99_ms() < 50 and sent[0] > 0,
        "8 senders pushed %d bombs of %d KB declaring 64 MiB; fetch p99 %.1f ms over %d fetches (bar 50 ms)"
        % (sent[0], len(bomb) // 1024, prober.p99_ms(), len(prober.latencies)))
    srv.stop()

    # Tokens on HTTP.
    srv = Server(fed, ["--auth-token", "s3cret"])

    def http(headers):
        s = connect(srv.port, 5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"Content-Length: 29\r\nConnection: close\r\n\r\n"
                  b"id=x&send=True&datasets=60000")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d

    without = http(b"")
    wrong = http(b"Authorization: Bearer guess\r\n")
    right = http(b"Authorization: Bearer s3cret\r\n")
    bar("http-token", without.startswith(b"HTTP/1.1 401") and wrong.startswith(b"HTTP/1.1 401")
        and right.startswith(b"HTTP/1.1 400"),
        "without a token: %r; wrong token: %r; right token reaches validation: %r"
        % (without[:12].decode(), wrong[:12].decode(), right[:12].decode()))
    srv.stop()

    # Log forgery.
    srv = Server(fed)
    c = Client(srv.port, "evil\napplied update from admin: 1 samples, version 999999")
    nan = [(s, list(v)) for s, v in MLP]
    nan[0][1][0] = float("nan")
    c.push(C.blob(nan, 0), 1)
    s = connect(srv.port, 5)
    try:
        s.sendall(b"GET /?id=" + b"x" * 100000 + b"%0Aforged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass  # the server may refuse the 100 KB request line and close before reading all of it
    time.sleep(0.3)
    text = srv.log_text()
    srv.stop()
    forged = [l for l in text.splitlines() if l.startswith("applied update from admin") or l.startswith("forged")]
    longest = max((len(l) for l in text.splitlines()), default=0)
    bar("log-forgery", not forged and longest < 2000,
        "%d forged lines; longest log line %d bytes; log %d bytes in all" % (len(forged), longest, len(text)))

    # The model's HTTP resources (SPEC 10.1): validators compared weakly, one URL a version.
    srv = Server(fed)
    Client(srv.port, "cache").push(C.blob(MLP, 0), 10)  # version 1

    def http_status(path, headers=b""):
        s = connect(srv.port, 5)
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n")
        head = s.recv(64)
        s.close()
        return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0

    fields = [b'W/"v1"', b'"v0", W/"v1"', b"*"]
    validated = [http_status("/v1/model", b"If-None-Match: " + f + b"\r\n") for f in fields]
    other = http_status("/v1/model", b'If-None-Match: W/"v0"\r\n')
    bar("weak-etag", validated == [304] * 3 and other == 200,
        "If-None-Match W/\"v1\", a list, *: %s; W/\"v0\": %d" % (validated, other))
    spellings = ["01", "+1", "00", "1.0", "%31"]
    named = [http_status("/v1/model/" + p) for p in spellings]
    canonical = http_status("/v1/model/1")
    bar("version-urls", named == [404] * len(spellings) and canonical == 200,
        "/v1/model/{%s}: %s; /v1/model/1: %d" % (",".join(spellings), named, canonical))
    srv.stop()


# ---------------------------------------------------------------- values, keys, retained versions

LIMIT = 1e15  # SPEC 4.2: max_magnitude


def tensors_of(value_at):
    return [(sh, [value_at(i) for i in range(int(C.math.prod(sh)))]) for sh in C.MLP_SHAPES]


def model_values(m):
    out = []
    for t in m["tensors"]:
        vals = t[1] if isinstance(t, (list, tuple)) else t.get("values", t)
        out.extend(vals)
    return out


def served(port):
    t, _, m = Client(port, "reader").fetch()
    if t != C.T["model"]:
        return None, False
    vals = model_values(m)
    return m["version"], all(v == v and abs(v) <= LIMIT for v in vals)


def extreme_values(fed):
    alternating = C.blob(tensors_of(lambda i: 2e38 if i % 2 == 0 else -2e38), 2)
    honest = C.blob(MLP, 2)
    for enc in ["int8", "int4", "int2"]:
        extra = ["--fetch-deltas", enc]
        srv = Server(fed, extra)
        c = Client(srv.port, "mallory", version=2)
        t, _, m = c.push(alternating, 10)
        refused = t == C.T["error"] and m.get("code") == C.E["non_finite_value"]
        t2, _, _ = c.push(honest, 10)
        version, finite = served(srv.port)
        alive = srv.alive()
        srv.stop()
        srv2 = Server(fed, extra, checkpoint=srv.checkpoint)
        t3, _, m3 = Client(srv2.port, "mallory", version=2).push(alternating, 10)
        version2, finite2 = served(srv2.port)
        alive2 = srv2.alive()
        srv2.stop()
        bar("extreme-" + enc, refused and t2 == C.T["ack"] and alive and finite and version == 1
            and t3 == C.T["error"] and alive2 and finite2 and version2 == 1,
            "±2e38 push answered %s; server alive %s, serves version %s, all within ±1e15: %s; after a restart: "
            "alive %s, version %s, within: %s"
            % (C.TYPE_NAMES.get(t), alive, version, finite, alive2, version2, finite2))

    extra = ["--strategy", "fedbuff/k=2"]
    srv = Server(fed, extra)
    c = Client(srv.port, "mallory", version=2)
    answers = []
    for v in [3e38, 3e38, -3e38, -3e38]:
        t, _, m = c.push(C.blob(tensors_of(lambda i, v=v: v), 2), 10)
        answers.append(m.get("code") if t == C.T["error"] else "ACK")
    for _ in range(2):
        c.push(honest, 10)
    version, finite = served(srv.port)
    srv.p.kill()
    srv.p.wait()
    srv2 = Server(fed, extra, checkpoint=srv.checkpoint)
    version2, finite2 = served(srv2.port)
    srv2.stop()
    bar("extreme-fedbuff", all(a == C.E["non_finite_value"] for a in answers) and finite and version == 1
        and finite2 and version2 == 1,
        "fedbuff/k=2, ±3e38 twice each from one id: answered %s; then two honest pushes: version %s within ±1e15: %s; "
        "after kill -9 and a restart: version %s within: %s" % (answers, version, finite, version2, finite2))


def tiny_checkpoint(path):
    """A model of 4 floats, so that 10,000 pushes cost the server little but their keys."""
    b = C.blob([([4], [0.0, 0.0, 0.0, 0.0])], 0)
    body = b"FEDK" + C.u16(1) + C.u16(0) + C.u64(0) + C.u64(0) + C.u32(len(b)) + b
    with open(path, "wb") as f:
        f.write(body + C.u32(zlib.crc32(body)))


def keys_flood(fed):
    d = tempfile.mkdtemp(prefix="hostile-init-")
    init = os.path.join(d, "tiny.fedk")
    tiny_checkpoint(init)
    srv = Server(fed, ["--init", init, "--max-datasets", "1000000"])
    blob = C.blob([([4], [1.0, 2.0, 3.0, 4.0])], 0)
    push_id = random.getrandbits(63) | 1
    c = Client(srv.port, "retrier", version=2)
    t, _, first = c.push(blob, 10, push_id)
    t0 = time.time()
    sent = [0] * 8
    failed = [0]

    def flooder(k):
        # Thread k sends ids k*125 .. k*125+124, ten pushes each, each push id new.
        try:
            for j in range(125):
                cid = "flood-%d" % (k * 125 + j)
                cl = Client(srv.port, cid, version=2)
                for r in range(10):
                    n = (k * 125 + j) * 10 + r + 1
                    tt, _, _ = cl.request(C.T["push"], C.sstr(cid) + C.u64(1) + C.u64(0) + C.u64(n) + blob)
                    if tt == C.T["ack"]:
                        sent[k] += 1
                    else:
                        failed[0] += 1
                cl.s.close()
                if time.time() - t0 > 300:
                    return
        except Exception:
            failed[0] += 1

    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(320)
    took = time.time() - t0
    time.sleep(max(0.0, 55 - (time.time() - t0)))  # the retry comes 55 s after its push
    before = c.request(C.T["fetch"], C.u64(0) + C.u8(0))[2]["version"]
    t2, _, again = c.push(blob, 10, push_id)
    after = c.request(C.T["fetch"], C.u64(0) + C.u8(0))[2]["version"]
    srv.stop()
    bar("keys-flood", t == C.T["ack"] and t2 == C.T["ack"] and again["version"] == first["version"]
        and after == before and sum(sent) == 10000 and took < 60,
        "%d keyed pushes under 1,000 ids acknowledged in %.1f s (%d failed); the retry %.0f s after its push answered "
        "version %s (first ACK %s), model %d before and %d after (applied once)"
        % (sum(sent), took, failed[0], time.time() - t0, again.get("version"), first.get("version"), before, after))


def staleness(fed):
    d = tempfile.mkdtemp(prefix="hostile-staleness-")
    ck = os.path.join(d, "m.fedk")
    r = subprocess.run([fed, "server", "--port", "0", "--checkpoint", ck, "--max-staleness", "1000"],
                       capture_output=True, text=True, timeout=60)
    named = "holds at most 168" in r.stderr + r.stdout
    bar("staleness-refused", r.returncode != 0 and named,
        "--max-staleness 1000: exit %d, %r" % (r.returncode, next(
            (l.strip() for l in (r.stderr + r.stdout).splitlines() if "holds at most" in l), "")[-160:]))
    srv = Server(fed, ["--max-staleness", "168", "--strategy", "fedbuff/k=1"])
    c = Client(srv.port, "pusher", version=2)
    start = srv.rss()
    for i in range(400):
        vals = tensors_of(lambda j, i=i: ((j * 7919 + i) % 200 - 100) / 1000.0)
        t, _, _ = c.push(C.blob(vals, 2), 10)
        if t != C.T["ack"]:
            break
    peak = srv.peak()
    log = srv.log_text()
    srv.stop()
    line = next((l for l in log.splitlines() if "retained versions" in l), "")
    bar("staleness-memory", i == 399 and peak <= (256 + 64) * MB,
        "--max-staleness 168 (the most the default 256 MiB budget holds), 400 pushes: resident %.0f MB -> peak %.0f MB "
        "(bar %d MB); start-up log: %s" % (start / MB, peak / MB, 256 + 64, line.split("retained versions: ")[-1][:160]))


# ---------------------------------------------------------------- edge shutdown and TLS handshakes

class StallingUpstream(threading.Thread):
    """A fake upstream on 127.0.0.1: accepts, reads and drops, and answers nothing
    (dribble=None) or one byte of a valid frame every `dribble` seconds. Stops at
    stop() or after 120 s."""

    def __init__(self, dribble=None):
        super().__init__(daemon=True)
        self.dribble, self.accepted, self.done = dribble, 0, threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.frame = C.frame(C.T["error"], 1, C.u16(C.E["overloaded"]) + C.u8(1) + C.sstr("slow"))
        self.start()

    def run(self):
        end = time.time() + 120
        while not self.done.is_set() and time.time() < end:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            threading.Thread(target=self.serve, args=(s, end), daemon=True).start()
        self.listener.close()

    def serve(self, s, end):
        s.settimeout(0.1)
        sent, due = 0, time.time()
        try:
            while not self.done.is_set() and time.time() < end:
                if self.dribble and sent < len(self.frame) and time.time() >= due:
                    s.sendall(self.frame[sent:sent + 1])
                    sent, due = sent + 1, time.time() + self.dribble
                try:
                    if not s.recv(65536):
                        return
                except socket.timeout:
                    pass
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.done.set()


def edge_sigterm(fed, grace=2):
    figures, ok = [], True
    for name, dribble in (("silent", None), ("a byte every 5 s", 5)):
        upstream = StallingUpstream(dribble)
        srv = Server(fed, ["--upstream", "127.0.0.1:%d" % upstream.port, "--upstream-id", "hostile-edge",
                           "--upstream-interval", "0.5", "--shutdown-grace", str(grace)])
        deadline = time.time() + 10
        while upstream.accepted == 0 and time.time() < deadline:
            time.sleep(0.05)
        acked = 0
        for i in range(3):
            c = Client(srv.port, "edge-client-%d" % i)
            t, _, _ = c.push(C.blob(MLP, 2), 100)
            acked += t == C.T["ack"]
            c.s.close()
        time.sleep(1.0)  # the edge's round is waiting for the upstream meanwhile
        t0 = time.time()
        srv.p.send_signal(signal.SIGTERM)
        try:
            code = srv.p.wait(120)
        except subprocess.TimeoutExpired:
            code = None
            srv.p.kill()
            srv.p.wait()
        took = time.time() - t0
        upstream.stop()
        try:
            with open(srv.checkpoint, "rb") as f:
                scalars = C.decode_checkpoint(f.read())["message"].get("strategy_state", {}).get("scalars", {})
            held = int(scalars.get("edge.pending.updates", 0) + scalars.get("edge.outbox.updates", 0))
        except Exception:
            held = -1
        # The round in flight ended because its upstream calls were cut off, not by the shutdown giving up on it.
        cut = "ended by the shutdown: cut off" in srv.log_text()
        ok = ok and code == 0 and took <= grace + 2 and acked == 3 and held == 3 and cut
        figures.append("%s upstream: exit %s %.2f s after SIGTERM (round cut off: %s), %d of %d acknowledged updates "
                       "in the checkpoint" % (name, code, took, "yes" if cut else "no", held, acked))
    bar("edge-sigterm", ok, "; ".join(figures) + " (--shutdown-grace %d, bar %d s)" % (grace, grace + 2))


def make_certificate(directory):
    """A self-signed P-256 certificate for the name localhost (the openssl command)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return cert, key


def client_hello(context):
    """The bytes of one ClientHello, from a handshake that goes no further."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tls_handshake_p50(srv, context, seconds, flood=None):
    """Legitimate handshakes + HELLO/WELCOME from 127.0.0.1, one started every 0.2 s
    for `seconds` (while `flood`, a function, runs in other threads). An attempt
    that fails is tried again after 50 ms until it succeeds or 10 s have passed;
    its time runs from the first try. Returns the p50 in ms (attempts that never
    succeeded count as infinitely slow), the attempts, the retries, and the
    server's CPU seconds."""
    stop = threading.Event()
    latencies, retries = [], [0]

    def once():
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with context.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(C.frame(C.T["hello"], 1, C.hello("legitimate")))
                stream = C.FrameStream()
                f = None
                while f is None:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    stream.feed(data)
                    f = stream.next()
                if f[0] != C.T["welcome"]:
                    raise OSError("no WELCOME")

    def attempt():
        t0 = time.perf_counter()
        took = float("inf")
        while time.perf_counter() - t0 < 10:
            try:
                once()
                took = time.perf_counter() - t0
                break
            except (OSError, ssl.SSLError):
                retries[0] += 1
                time.sleep(0.05)
        latencies.append(took)

    def prober():
        attempts = []
        while not stop.wait(0.2):
            attempts.append(threading.Thread(target=attempt, daemon=True))
            attempts[-1].start()
        for a in attempts:
            a.join(15)

    threads = [threading.Thread(target=prober, daemon=True)]
    if flood:
        threads += flood(stop)
    cpu0 = cpu_seconds(srv.p.pid)
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    cpu = cpu_seconds(srv.p.pid) - cpu0
    xs = sorted(latencies)
    return (1000 * xs[len(xs) // 2] if xs else float("inf")), len(xs), retries[0], cpu


def replay_flood(port, hello, rate, seconds, counts, hold=10.0, threads=8):
    """`threads` threads replaying `hello` from 127.0.0.2 at `rate` connections a
    second in all (at most rate x seconds), each connection left open for `hold`
    seconds (as the cheapest sender would: it never answers) and then reset; all
    are closed when the measurement ends."""
    period = threads / float(rate)
    linger = struct.pack("ii", 1, 0)
    held, lock = [], threading.Lock()

    def make(stop):
        def run(i):
            start = time.time() + i * period / threads
            for k in range(int(rate * seconds / threads)):
                due = start + k * period
                if stop.wait(max(0.0, due - time.time())):
                    return
                s = socket.socket()
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    s.settimeout(1)
                    s.bind(("127.0.0.2", 0))
                    s.connect(("127.0.0.1", port))
                    s.sendall(hello)
                    counts["sent"] += 1
                    with lock:
                        held.append((time.time() + hold, s))
                except OSError:
                    counts["failed"] += 1
                    s.close()

        def reap():
            while True:
                done = stop.wait(0.05)
                with lock:
                    now = time.time()
                    expired = [s for t, s in held if done or t <= now]
                    held[:] = [(t, s) for t, s in held if not (done or t <= now)]
                counts["most held"] = max(counts.get("most held", 0), len(held) + len(expired))
                for s in expired:
                    s.close()
                if done:
                    return
        return [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)] + \
            [threading.Thread(target=reap, daemon=True)]
    return make


def metric(port, series):
    """One series of the server's /metrics, over clear-text HTTP."""
    s = connect(port, 5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def tls_flood(fed, rate=570, seconds=16):
    directory = tempfile.mkdtemp(prefix="hostile-tls-")
    cert, key = make_certificate(directory)
    context = ssl.create_default_context(cafile=cert)
    hello = client_hello(context)
    rows, p50s = [], {}
    for name, extra in (("no limits", ["--max-tls-handshakes", "0", "--tls-handshake-rate", "0"]),
                        ("default limits", [])):
        # Clear text is allowed only to read /metrics; every flood and probe connection is TLS.
        srv = Server(fed, ["--tls-cert", cert, "--tls-key", key, "--allow-plaintext"] + extra)
        quiet, _, _, _ = tls_handshake_p50(srv, context, 2)
        counts = dict(sent=0, failed=0)
        p50, n, retries, cpu = tls_handshake_p50(srv, context, seconds,
                                                 replay_flood(srv.port, hello, rate, seconds, counts))
        refused = [metric(srv.port, 'fed_tls_handshakes_refused_total{reason="%s"}' % r) for r in ("rate", "concurrency")]
        full = metric(srv.port, "fed_connections_refused_total")
        alive = srv.alive()
        srv.stop()
        p50s[name] = p50
        rows.append("%s: %d replayed ClientHellos in %d s (%.0f/s, each held open 10 s, at most %d at once; %d failed "
                    "to connect), %d/%d refused at the handshake limits (rate/cap), %d at the connection limit, "
                    "server CPU %.1f s; legitimate handshake + HELLO p50 %.1f ms during the flood (%d attempts, "
                    "%d retries), %.1f ms before it; server alive %s"
                    % (name, counts["sent"], seconds, counts["sent"] / seconds, counts.get("most held", 0),
                       counts["failed"], refused[0] or 0, refused[1] or 0, full or 0, cpu, p50, n, retries, quiet,
                       alive))
    bar("tls-flood", p50s["default limits"] < 50, "; ".join(rows) + " (bar: p50 < 50 ms with the default limits)")


def slow_disk(fed):
    strace = shutil.which("strace")
    if not strace:
        print("SKIP slow-disk     strace is not installed (apt-get install strace)", flush=True)
        return
    prefix = [strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync",
              "-e", "inject=fsync,fdatasync:delay_exit=1000000"]
    srv = Server(fed, ["--fetch-deltas", "int8"], prefix=prefix)
    blob = C.blob(MLP, 2)
    pusher = Client(srv.port, "pusher")
    for _ in range(2):
        pusher.push(blob, 10)
    stop = threading.Event()
    pushes = [0]

    def push_loop():
        c = Client(srv.port, "pusher2")
        while not stop.is_set():
            t, _, _ = c.push(blob, 10)
            pushes[0] += t == C.T["ack"]

    th = threading.Thread(target=push_loop, daemon=True)
    th.start()
    plain = Client(srv.port, "plain")
    v3 = Client(srv.port, "delta", version=3)
    times = {"fetch": [], "delta": [], "metrics": [], "ping": []}
    deltas = [0]
    t_end = time.time() + 15
    while time.time() < t_end:
        t0 = time.perf_counter()
        t, _, m = plain.fetch()
        times["fetch"].append(time.perf_counter() - t0)
        current = m["version"] if t == C.T["model"] else 2
        # Timed to the whole answer frame, not to its decoding here (pure Python, ~0.2 s a step).
        t0 = time.perf_counter()
        v3.rid += 1
        v3.s.sendall(C.frame(C.T["fetch"], v3.rid, C.u64(max(1, current - 1)) + C.u8(1) + C.u8(0b11111), version=3))
        f = None
        while f is None:
            f = v3.stream.next()
            if f is None:
                v3.stream.feed(v3.s.recv(1 << 20))
        times["delta"].append(time.perf_counter() - t0)
        t = f[0]
        deltas[0] += t == C.T["model_delta"]
        t0 = time.perf_counter()
        h = connect(srv.port, 10)
        h.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while h.recv(65536):
            pass
        h.close()
        times["metrics"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain.request(C.T["ping"], C.u64(7))
        times["ping"].append(time.perf_counter() - t0)
        time.sleep(0.05)
    stop.set()
    th.join(5)
    srv.stop()

    def p99(xs):
        xs = sorted(xs)
        return 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))] if xs else float("inf")

    figures = {k: p99(v) for k, v in times.items()}
    bar("slow-disk", all(v < 50 for v in figures.values()) and deltas[0] > 0 and pushes[0] > 0,
        "fsync delayed 1 s, %d pushes acknowledged in 15 s; p99 over %d rounds: FETCH %.1f ms, MODEL_DELTA FETCH %.1f ms "
        "(%d answered with a step), GET /metrics %.1f ms, PING %.1f ms (bar 50 ms each)"
        % (pushes[0], len(times["fetch"]), figures["fetch"], figures["delta"], deltas[0], figures["metrics"],
           figures["ping"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fed", default=os.path.join(HERE, "..", ".build", "release", "fed"))
    ap.add_argument("--connections", type=int, default=1024)
    ap.add_argument("--only", nargs="*", default=None, help="flood, slow-reader, sigterm, small, values, keys, staleness, slow-disk, edge-sigterm, tls-flood")
    a = ap.parse_args()
    if not os.path.exists(a.fed):
        raise SystemExit("no %s: build it with `swift build -c release` first" % a.fed)
    raise_fd_limit()
    want = lambda n: a.only is None or n in a.only  # noqa: E731
    if want("flood"):
        flood(a.fed, "flood-http", [], http_opener(64 << 10), a.connections, 512)
        flood(a.fed, "flood-binary", [], binary_opener(64 << 10), a.connections, 512)
        flood(a.fed, "budget-http", ["--max-body", "40000000"], http_opener(1 << 20), a.connections, 512)
        flood(a.fed, "budget-binary", ["--max-payload", "17000000", "--max-decompressed", "70000000"],
              binary_opener(1 << 20), a.connections, 512)
    if want("slow-reader"):
        slow_reader(a.fed)
    if want("sigterm"):
        sigterm(a.fed)
    if want("small"):
        small_bars(a.fed)
    if want("values"):
        extreme_values(a.fed)
    if want("keys"):
        keys_flood(a.fed)
    if want("staleness"):
        staleness(a.fed)
    if want("slow-disk"):
        slow_disk(a.fed)
    if want("edge-sigterm"):
        edge_sigterm(a.fed)
    if want("tls-flood"):
        tls_flood(a.fed)
    print("%d passed, %d failed" % (sum(RESULTS), len(RESULTS) - sum(RESULTS)))
    sys.exit(0 if all(RESULTS) else 1)


if __name__ == "__main__":
    main()
