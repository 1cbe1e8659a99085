#!/usr/bin/env python3
"""What a route costs: resident memory and /metrics size by number of routes.

    python3 bench/routes.py [BINARY]          (default target/release/cutover)

For each N in ROUTES, writes a config of N routes (`/v1/t0000` ... each its
own dataset, mode `streaming`, both sides a tiny local origin that stamps a
watermark, the idle-side probe on as shipped), starts BINARY (`cutover
run`), waits until /readyz answers, and measures:

- RSS idle (nothing read yet);
- after READ: one read on every route (a route that has served reads has
  its histograms and counters; this is the steady state of a consumer that
  reads every table now and then);
- after SCRAPES scrapes of /metrics: RSS, the scrape's bytes, lines and
  series, and series per route.

Prints one table row per N. Environment: ROUTES ("1 100 300 1000 3000"),
SCRAPES (5), READ (1: read every route once before the scrapes; 0: idle),
MAX_RSS_MIB and AT (when set, exit 1 if RSS after the scrapes at AT routes is
above MAX_RSS_MIB), MAX_SERIES_PER_ROUTE (when set, the same for series per
route at AT routes).
"""
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchlib import free_port, rss_kib, wait_port

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover"
ROUTES = [int(n) for n in os.environ.get("ROUTES", "1 100 300 1000 3000").split()]
SCRAPES = int(os.environ.get("SCRAPES", 5))
READ = os.environ.get("READ", "1") == "1"
AT = int(os.environ.get("AT", 1000))
MAX_RSS_MIB = os.environ.get("MAX_RSS_MIB")
MAX_SERIES_PER_ROUTE = os.environ.get("MAX_SERIES_PER_ROUTE")
BODY = b'{"data": [{"id": 1}, {"id": 2}]}'


class Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, body):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-data-watermark", str(int(time.time()) - 60))
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        if body:
            self.wfile.write(BODY)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, *args):
        pass


def config(n, listen, admin, origin):
    routes = []
    for i in range(n):
        routes.append(f"""  - name: t{i:04d}
    match: {{ path_prefix: /v1/t{i:04d} }}
    mode: streaming
    batch: http://127.0.0.1:{origin}/batch/t{i:04d}
    streaming: http://127.0.0.1:{origin}/streaming/t{i:04d}
""")
    return f"""version: 1
consumer: bench
listen: 127.0.0.1:{listen}
admin: 127.0.0.1:{admin}
routes:
""" + "".join(routes)


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def wait_ready(admin, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if get(admin, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("cutover never became ready")


def measure(n, origin):
    listen, admin = free_port(), free_port()
    work = tempfile.mkdtemp()
    cfg = os.path.join(work, "cutover.yaml")
    with open(cfg, "w") as f:
        f.write(config(n, listen, admin, origin))
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "error"))
    proc = subprocess.Popen([BIN, "run", "--config", cfg, "--data-dir", work],
                            env=env, stdout=subprocess.DEVNULL)
    try:
        wait_port(listen)
        wait_ready(admin)
        time.sleep(1)
        idle = rss_kib(proc.pid)
        if READ:
            c = http.client.HTTPConnection("127.0.0.1", listen, timeout=30)
            for i in range(n):
                c.request("GET", f"/v1/t{i:04d}/x")
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise SystemExit(f"route t{i:04d}: {r.status}")
            c.close()
        body = b""
        for _ in range(SCRAPES):
            status, body = get(admin, "/metrics")
            if status != 200:
                raise SystemExit(f"/metrics: {status}")
        time.sleep(0.5)
        scraped = rss_kib(proc.pid)
        lines = body.count(b"\n")
        series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
        route_series = sum(1 for line in body.split(b"\n")
                           if line and not line.startswith(b"#") and b'route="' in line)
        return idle, scraped, len(body), lines, series, route_series / n
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    port = origin.server_address[1]
    print(f"{'routes':>7} {'RSS idle MiB':>13} {'RSS scraped MiB':>16} "
          f"{'/metrics bytes':>15} {'lines':>8} {'series':>8} {'series/route':>13}")
    failed = []
    for n in ROUTES:
        idle, scraped, size, lines, series, per_route = measure(n, port)
        print(f"{n:>7} {idle / 1024:>13.1f} {scraped / 1024:>16.1f} {size:>15,} "
              f"{lines:>8,} {series:>8,} {per_route:>13.1f}", flush=True)
        if n == AT and MAX_RSS_MIB and scraped / 1024 > float(MAX_RSS_MIB):
            failed.append(f"{n} routes: {scraped / 1024:.1f} MiB after scrapes > {MAX_RSS_MIB}")
        if n == AT and MAX_SERIES_PER_ROUTE and per_route > float(MAX_SERIES_PER_ROUTE):
            failed.append(f"{n} routes: {per_route:.1f} series per route > {MAX_SERIES_PER_ROUTE}")
    print(f"(mode streaming, read every route once: {READ}; {SCRAPES} scrapes; {BIN})")
    if failed:
        print("FAIL: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
