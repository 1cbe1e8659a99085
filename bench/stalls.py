#!/usr/bin/env python3
"""How long cutover holds each kind of stalled connection, with the default
limits (issue 13's figures). All kinds run at once; about a minute.

    python3 bench/stalls.py [BINARY]          (default target/release/cutover)
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover"
H2_START = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
KINDS = [
    ("silent connection", "listen", b""),
    ("half an h2 preface", "listen", b"PRI * HTTP/2.0\r\n"),
    ("h2 peer that stops answering", "listen", H2_START),
    ("request head that never ends", "listen", b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow:"),
    ("idle HTTP/1 keep-alive after a read", "listen", b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("request body that stops (10 of 1000 bytes)", "listen",
     b"POST /v1/orders/q HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"),
    ("silent connection", "admin", b""),
    ("request head that never ends", "admin", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow:"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def held(port, data, out, i):
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    first = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            first = first or chunk
    except OSError:
        pass
    line = first.split(b"\r\n", 1)[0]
    if first[:1] == b"\x00":
        line = b"(h2 frames)"
    out[i] = (time.time() - t, line.decode(errors="replace"))


def main():
    origin = socket.socket()
    origin.bind(("127.0.0.1", 0))
    origin.listen(64)
    oport = origin.getsockname()[1]

    def serve_origin():
        while True:
            c, _ = origin.accept()
            threading.Thread(target=answer, args=(c,), daemon=True).start()

    def answer(c):
        buf = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b"\r\n\r\n" in buf:
                _, buf = buf.split(b"\r\n\r\n", 1)
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")

    threading.Thread(target=serve_origin, daemon=True).start()
    listen, admin = free_port(), free_port()
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "cutover.yaml")
    with open(cfg, "w") as f:
        f.write(f"""version: 1
consumer: bench
listen: 127.0.0.1:{listen}
admin: 127.0.0.1:{admin}
routes:
  - name: orders
    match: {{ path_prefix: /v1/orders, methods: [GET, POST] }}
    mode: batch
    batch: http://127.0.0.1:{oport}/
    streaming: http://127.0.0.1:{oport}/
    freshness: {{ probe_interval: off }}
""")
    proc = subprocess.Popen([BIN, "run", "--config", cfg, "--data-dir", work],
                            env=dict(os.environ, RUST_LOG="error"), stdout=subprocess.DEVNULL)
    try:
        end = time.time() + 20
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        out = [None] * len(KINDS)
        threads = [threading.Thread(target=held, args=(listen if l == "listen" else admin, d, out, i))
                   for i, (_, l, d) in enumerate(KINDS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        print("| stalled connection | listener | closed after | first answer line |")
        print("| --- | --- | --- | --- |")
        for (kind, l, _), r in zip(KINDS, out):
            took, line = r if r else (float("nan"), "still open after 180 s")
            print(f"| {kind} | {l} | {took:.1f} s | {line or '(none)'} |")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
