"""A few-line proxy that follows SPEC 1.2's "one logical read, one side", to
prove the harness can pass (`range_readers.py --reference-proxy`).

Not cutover and never a stand-in for it in CI: it exists so that a run of
the harness that reports no WRONG and enough answers is known to be possible
with the rule the real binary must implement, and so that the probability
argument in range_readers.py's docstring is checked against real clients.

The rule, per object (the path is the sequence key):
- canary: the side is chosen by a hash of the path (50 %);
- streaming: streaming is chosen;
- a read without `Range`, or the first read of a path, starts the sequence:
  on a 5xx from the chosen side it falls back to the other side and the path
  is pinned there;
- a `Range` read of a path already seen continues it: it goes to the pinned
  or chosen side, and that side's error passes through.
"""
import hashlib
import http.client
import threading
from http.server import BaseHTTPRequestHandler

from upstream import QuietServer

FORWARDED = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "Accept-Encoding")


class ReferenceProxy:
    def __init__(self, routes, batch, streaming):
        """routes: {name: (prefix, base path on the upstreams, mode line)}."""
        self.routes = [(prefix, base, "canary" if "canary" in mode else "streaming") for prefix, base, mode in routes.values()]
        self.ports = {"batch": batch.port, "streaming": streaming.port}
        self.lock = threading.Lock()
        self.pins = {}  # path -> side that answered
        self.seen = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def do_GET(self):
                proxy.serve(self, "GET")

            def do_HEAD(self):
                proxy.serve(self, "HEAD")

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.listen = f"127.0.0.1:{self.server.server_address[1]}"
        self.admin = "(none)"

    def fallbacks(self):
        return {}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fetch(self, side, method, path, headers):
        c = http.client.HTTPConnection("127.0.0.1", self.ports[side], timeout=10)
        try:
            c.request(method, path, headers=headers)
            r = c.getresponse()
            return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in ("connection", "keep-alive")], r.read()
        finally:
            c.close()

    def serve(self, h, method):
        path = h.path.split("?", 1)[0]
        route = next((r for r in self.routes if path.startswith(r[0] + "/")), None)
        if route is None:
            return self.answer(h, method, 404, [], b"no route\n")
        prefix, base, mode = route
        upstream_path = base + path[len(prefix):]
        headers = {k: h.headers[k] for k in FORWARDED if h.headers.get(k) is not None}
        with self.lock:
            continuing = "Range" in headers and path in self.seen
            self.seen.add(path)
            pinned = self.pins.get(path)
        if pinned:
            side = pinned
        elif mode == "canary":
            side = "streaming" if hashlib.sha256(path.encode()).digest()[0] < 128 else "batch"
        else:
            side = "streaming"
        try:
            status, rheaders, body = self.fetch(side, method, upstream_path, headers)
        except OSError:
            status, rheaders, body = 502, [], b"upstream unreachable\n"
        if status >= 500 and not continuing and not pinned:
            other = "batch" if side == "streaming" else "streaming"
            try:
                status, rheaders, body = self.fetch(other, method, upstream_path, headers)
                with self.lock:
                    self.pins[path] = other
            except OSError:
                pass
        self.answer(h, method, status, rheaders, body)

    @staticmethod
    def answer(h, method, status, headers, body):
        try:
            h.send_response(status)
            has_length = False
            for k, v in headers:
                if k.lower() in ("transfer-encoding", "date", "server"):
                    continue
                has_length |= k.lower() == "content-length"
                h.send_header(k, v)
            if not has_length:
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
