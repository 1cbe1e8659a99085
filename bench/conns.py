#!/usr/bin/env python3
"""Memory per connection and after connection bursts, for issue 13's figures.

    python3 bench/conns.py [BINARY]          (default target/release/cutover)

Starts BINARY (`cutover run`) with max_connections 10,000 in front of a
tiny local origin, then ROUNDS times: opens CONNS keep-alive connections,
sends one read on each and reads its answer, measures RSS with all of them
open, closes them all and measures RSS again AFTER seconds later. Prints
baseline RSS, RSS per idle connection and RSS after each burst closed.

Environment: CONNS (5000), ROUNDS (4), AFTER (10), MAX_AFTER_MIB (when set,
exit 1 if RSS after any burst stays above baseline + this; .ci/run sets 32),
and anything the binary reads (GLIBC_TUNABLES, _RJEM_MALLOC_CONF, ...).
"""
import os
import resource
import selectors
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchlib import Cutover, rss_kib

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover"
CONNS = int(os.environ.get("CONNS", 5000))
ROUNDS = int(os.environ.get("ROUNDS", 4))
AFTER = float(os.environ.get("AFTER", 10))
MAX_AFTER_MIB = os.environ.get("MAX_AFTER_MIB")
BODY = b'{"data": [' + b",".join(b'{"id": %d}' % i for i in range(60)) + b"]}"


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def burst(port, n, wave=100):
    """n connections, one read each (sent in waves, so the origin is not
    flooded), answers read; returns the open sockets."""
    req = b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for i in range(0, n, wave):
        sel = selectors.DefaultSelector()
        for s in socks[i:i + wave]:
            s.sendall(req)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, bytearray())
        pending = len(socks[i:i + wave])
        end = time.time() + 60
        while pending and time.time() < end:
            for key, _ in sel.select(timeout=1):
                buf = key.data
                chunk = key.fileobj.recv(65536)
                buf.extend(chunk)
                if not chunk or (b"\r\n\r\n" in buf and buf.endswith(b"]}")):
                    sel.unregister(key.fileobj)
                    if not buf.startswith(b"HTTP/1.1 200"):
                        raise SystemExit(f"bad answer: {bytes(buf[:200])!r}")
                    pending -= 1
        sel.close()
        if pending:
            raise SystemExit(f"{pending} reads unanswered")
    return socks


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * CONNS + 1024), hard))
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    oport = origin.server_address[1]
    limits = f"{{ max_connections: {2 * CONNS}, handshake_timeout: 300s }}"
    with Cutover(BIN, oport, limits=limits, log="warn") as proc:
        listen = proc.listen
        # One read first: the pools and the route's state exist.
        burst(listen, 1)[0].close()
        time.sleep(1)
        base = rss_kib(proc.pid)
        print(f"baseline RSS: {base / 1024:.1f} MiB", flush=True)
        for r in range(1, ROUNDS + 1):
            socks = burst(listen, CONNS)
            time.sleep(0.5)
            held = rss_kib(proc.pid)
            for s in socks:
                s.close()
            time.sleep(AFTER)
            after = rss_kib(proc.pid)
            print(f"burst {r}: {CONNS} open: {held / 1024:.1f} MiB "
                  f"({(held - base) / CONNS:.1f} KiB per connection); "
                  f"{AFTER:.0f} s after they closed: {after / 1024:.1f} MiB "
                  f"(baseline + {(after - base) / 1024:.1f} MiB)", flush=True)
            if MAX_AFTER_MIB and (after - base) / 1024 > float(MAX_AFTER_MIB):
                raise SystemExit(f"FAIL: RSS stayed {(after - base) / 1024:.1f} MiB above baseline "
                                 f"{AFTER:.0f} s after the burst closed (bound {MAX_AFTER_MIB} MiB)")
    origin.shutdown()


if __name__ == "__main__":
    main()
