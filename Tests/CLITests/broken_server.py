#!/usr/bin/env python3
"""A deliberately broken peer for testing the conformance checker.

Listens on 127.0.0.1 (port printed on stdout), answers every frame it can find
with a PONG that echoes the wrong request id, never sends ERROR, and never
closes a connection on bad input. A conforming checker must fail against it.
"""
import socket
import struct
import sys
import threading
import zlib


def serve(conn):
    buf = b""
    conn.settimeout(5)
    try:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            buf += data
            while len(buf) >= 20:
                length = struct.unpack(">I", buf[12:16])[0]
                if length > 1 << 20:
                    buf = b""  # ignores oversized frames instead of refusing them
                    break
                if len(buf) < 20 + length:
                    break
                rid = struct.unpack(">I", buf[8:12])[0]
                buf = buf[20 + length:]
                payload = struct.pack(">Q", 0)
                head = b"FEDW" + bytes([1, 10]) + struct.pack(">HII", 0, rid + 1, len(payload))
                conn.sendall(head + struct.pack(">I", zlib.crc32(head + payload)) + payload)
    except OSError:
        pass
    finally:
        conn.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
s.settimeout(float(sys.argv[1]) if len(sys.argv) > 1 else 60)
try:
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
except socket.timeout:
    pass
