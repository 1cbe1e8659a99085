#!/usr/bin/env python3
"""How long cutover holds each kind of stalled connection, with the default
limits (issue 13's figures). All kinds run at once; about a minute.

    python3 bench/stalls.py [BINARY]          (default target/release/cutover)
"""
import socket
import sys
import threading
import time

from benchlib import Cutover

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
    with Cutover(BIN, oport, methods="GET, POST") as proc:
        listen, admin = proc.listen, proc.admin
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


if __name__ == "__main__":
    main()
