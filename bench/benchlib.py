"""What the Python benches share: a `cutover run` in front of a local origin."""
import os
import socket
import subprocess
import tempfile
import time


def rss_kib(pid):
    """Resident memory of process `pid`, KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


class Cutover:
    """`cutover run` (BINARY) with one route, `/v1/orders` in batch mode to
    the origin on `origin_port`; `limits` is the YAML flow map of the
    `limits:` block, `batch_timeout` the batch side's `timeout`. A context
    manager: stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, binary, origin_port, limits="{}", methods="GET, HEAD",
                 batch_timeout="2s", log="error"):
        self.listen, self.admin = free_port(), free_port()
        work = tempfile.mkdtemp()
        cfg = os.path.join(work, "cutover.yaml")
        with open(cfg, "w") as f:
            f.write(f"""version: 1
consumer: bench
listen: 127.0.0.1:{self.listen}
admin: 127.0.0.1:{self.admin}
limits: {limits}
routes:
  - name: orders
    match: {{ path_prefix: /v1/orders, methods: [{methods}] }}
    mode: batch
    batch: {{ url: "http://127.0.0.1:{origin_port}/", timeout: {batch_timeout} }}
    streaming: http://127.0.0.1:{origin_port}/
    freshness: {{ probe_interval: off }}
""")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", log))
        self.proc = subprocess.Popen([binary, "run", "--config", cfg, "--data-dir", work],
                                     env=env, stdout=subprocess.DEVNULL)
        wait_port(self.listen)

    @property
    def pid(self):
        return self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
