#!/usr/bin/env python3
"""A leaking pool against the connection cap (issue 23): does a new read get
in while a client holds thousands of idle keep-alive connections?

    python3 bench/idlecap.py [BINARY]        (default target/release/cutover)

Starts BINARY (`cutover run`) with the default max_connections (1024) and a
long head_timeout (so HTTP/1 keep-alive connections stay open while idle)
in front of a tiny local origin. One client opens CONNS keep-alive
connections in waves, one read on each, and keeps every one the proxy did
not close. Then a new connection sends one read. Prints how many of the
CONNS reads were answered, how many sockets the proxy closed, what the new
read got, and the RSS with the idle connections held.

Environment: CONNS (5000), WAVE (100), HEAD_TIMEOUT (300s).
"""
import os
import resource
import selectors
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from benchlib import Cutover, rss_kib
from conns import Origin

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover"
CONNS = int(os.environ.get("CONNS", 5000))
WAVE = int(os.environ.get("WAVE", 100))
HEAD_TIMEOUT = os.environ.get("HEAD_TIMEOUT", "300s")
REQ = b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"


def one_read_each(socks):
    """Sends a read on each socket and waits for its answer or its close:
    (answered, closed unanswered)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        try:
            s.sendall(REQ)
        except OSError:
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    answered = closed = 0
    end = time.time() + 60
    while sel.get_map() and time.time() < end:
        for key, _ in sel.select(timeout=1):
            buf = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except OSError:
                chunk = b""
            buf.extend(chunk)
            if not chunk:
                sel.unregister(key.fileobj)
                closed += 1
            elif b"\r\n\r\n" in buf and buf.endswith(b"]}"):
                sel.unregister(key.fileobj)
                answered += 1
    sel.close()
    return answered, closed


def still_open(socks):
    """Sockets the proxy has not closed (a closed one reads EOF)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        n += 1
    return n


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * CONNS + 1024), hard))
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    limits = f"{{ head_timeout: {HEAD_TIMEOUT} }}"
    with Cutover(BIN, origin.server_address[1], limits=limits, log="error") as proc:
        port = proc.listen
        warm = socket.create_connection(("127.0.0.1", port))
        one_read_each([warm])
        warm.close()
        time.sleep(1)
        base = rss_kib(proc.pid)
        pool, answered, closed = [], 0, 0
        started = time.time()
        for i in range(0, CONNS, WAVE):
            wave = [socket.create_connection(("127.0.0.1", port)) for _ in range(min(WAVE, CONNS - i))]
            a, c = one_read_each(wave)
            answered, closed = answered + a, closed + c
            pool.extend(wave)
        took = time.time() - started
        time.sleep(0.5)
        held = rss_kib(proc.pid)
        open_now = still_open(pool)
        fresh = socket.create_connection(("127.0.0.1", port))
        fresh_started = time.time()
        a, c = one_read_each([fresh])
        fresh_ms = (time.time() - fresh_started) * 1000
        verdict = "served (200)" if a else "refused (closed unanswered)" if c else "no answer"
        print(f"{CONNS} keep-alive connections, one read each, in {took:.1f} s: "
              f"{answered} answered, {closed} closed unanswered; "
              f"{open_now} of the client's sockets still open", flush=True)
        print(f"new read after them: {verdict} in {fresh_ms:.1f} ms", flush=True)
        print(f"RSS: baseline {base / 1024:.1f} MiB, with the pool held "
              f"{held / 1024:.1f} MiB", flush=True)
        for s in pool:
            s.close()
        fresh.close()
    origin.shutdown()


if __name__ == "__main__":
    main()
