"""A fake upstream that serves Parquet files by byte range, as an object store does.

    GET|HEAD /{ok|fail}/{layout}/{validators}/{name}.parquet

serves the side's file for `layout` (parquet_pair.LAYOUTS) under any name,
so that every query can read an object of its own. `validators` says what
the side sends with it:
- `same`: the ETag and Last-Modified both sides send (after `aws s3 sync`
  or `rsync -t`, the copies carry the same ones);
- `none`: neither (a CDN or gateway that strips them);
- `different`: this side's own ETag and Last-Modified.

Ranges are served as RFC 9110 says: `bytes=a-b`, `bytes=a-`, `bytes=-n`
answer 206 with Content-Range; a range past the end answers 416; several
ranges answer 200 with the whole file (allowed, and no client here asks for
them); `If-Range` that does not match answers 200 with the whole file;
`If-None-Match` / `If-Modified-Since` that match answer 304.

Under `/fail/`, the upstream built with `fail_share` answers 503 to that
share of its range reads, drawn from a seeded RNG (the same seed fails the
same draws; which read gets which draw depends on thread timing).
"""
import random
import re
import sys
import threading
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VALIDATORS = ("same", "none", "different")

# Unix times of the Last-Modified each side sends.
SHARED_MTIME = 1_750_000_000
OWN_MTIME = {"batch": 1_750_000_000, "streaming": 1_760_000_000}

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def validators(side, mode):
    """(ETag, Last-Modified) a side sends under `mode`; None for absent."""
    if mode == "same":
        return ('"orders-v7"', formatdate(SHARED_MTIME, usegmt=True))
    if mode == "different":
        return (f'"{side}-v7"', formatdate(OWN_MTIME[side], usegmt=True))
    return (None, None)


def parse_range(value, size):
    """The (start, end inclusive) of a single `bytes=` range on a file of
    `size` bytes; "whole" for a header to ignore; None when unsatisfiable."""
    if "," in value:
        return "whole"
    m = _RANGE.match(value.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return "whole"
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0:
            return None
        return (max(0, size - n), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return None
    return (start, end)


class Counts:
    """What one upstream was asked, for the report."""

    def __init__(self):
        self.lock = threading.Lock()
        self.heads = 0
        self.gets = 0
        self.ranges = 0
        self.failed = 0

    def snapshot(self):
        with self.lock:
            return {"head": self.heads, "get": self.gets, "range": self.ranges, "503": self.failed}


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client closing a kept-alive connection is how readers end; any
        # other error in a handler is a bug of this fake, and is printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Upstream:
    """One side, listening on 127.0.0.1 on a port the OS picks, in threads."""

    def __init__(self, side, files, fail_share=0.0, seed=18):
        self.side = side
        self.files = files  # {layout: bytes}
        self.fail_share = fail_share
        self.rng = random.Random(seed)
        self.counts = Counts()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A handler thread never waits long on a client that went away.
            timeout = 30

            def do_HEAD(self):
                upstream.serve(self, head=True)

            def do_GET(self):
                upstream.serve(self, head=False)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def draw_failure(self):
        with self.counts.lock:
            fail = self.rng.random() < self.fail_share
            if fail:
                self.counts.failed += 1
            return fail

    def serve(self, h, head):
        parts = h.path.split("?", 1)[0].strip("/").split("/")
        if (
            len(parts) != 4
            or parts[0] not in ("ok", "fail")
            or parts[1] not in self.files
            or parts[2] not in VALIDATORS
            or not parts[3].endswith(".parquet")
        ):
            return self.answer(h, head, 404, {}, b"no such object\n")
        failing, layout, mode = parts[0] == "fail", parts[1], parts[2]
        data = self.files[layout]
        size = len(data)
        etag, last_modified = validators(self.side, mode)
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/vnd.apache.parquet"}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = last_modified

        with self.counts.lock:
            if head:
                self.counts.heads += 1
            else:
                self.counts.gets += 1
        if self.not_modified(h, etag, last_modified):
            return self.answer(h, head, 304, headers, b"", length_set=True)

        rng = h.headers.get("Range")
        if rng is not None and not head:
            if_range = h.headers.get("If-Range")
            if if_range is not None and if_range not in (etag, last_modified):
                rng = None  # a changed object: the whole new one, not a piece
        if rng is None or head:
            headers["Content-Length"] = str(size)
            return self.answer(h, head, 200, headers, data, length_set=True)
        with self.counts.lock:
            self.counts.ranges += 1
        if failing and self.draw_failure():
            return self.answer(h, head, 503, {}, b"injected failure\n")
        span = parse_range(rng, size)
        if span is None:
            headers["Content-Range"] = f"bytes */{size}"
            return self.answer(h, head, 416, headers, b"")
        if span == "whole":
            return self.answer(h, head, 200, headers, data)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return self.answer(h, head, 206, headers, data[start : end + 1])

    @staticmethod
    def not_modified(h, etag, last_modified):
        inm = h.headers.get("If-None-Match")
        if inm is not None:
            return etag is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")])
        ims = h.headers.get("If-Modified-Since")
        if ims is not None and last_modified is not None:
            try:
                return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                return False
        return False

    @staticmethod
    def answer(h, head, status, headers, body, length_set=False):
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            if not length_set:
                h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head and status != 304:
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
