#!/usr/bin/env python3
"""Backpressure: what consumers see when reads arrive faster than batch can
serve them, with and without `limits.max_inflight_reads` shedding.

    python3 bench/overload.py [BINARY]        (default target/release/cutover)

The origin (batch) serves at most ORIGIN_SLOTS reads at once, SERVICE_MS
each (so ORIGIN_SLOTS * 1000 / SERVICE_MS reads/s); more wait in its queue.
CLIENTS consumers read in a closed loop for SECONDS through cutover; a 503
with Retry-After makes that client wait as long as it says (a well-behaved
client). Run once per MAX_INFLIGHT value; prints served reads/s, latency of
the served reads, 503s and 504s, and the peak of cutover_reads_inflight.

Environment: CLIENTS (400), SECONDS (8), ORIGIN_SLOTS (20), SERVICE_MS (40),
MAX_INFLIGHT ("1024 50"), TIMEOUT (side timeout, 2s).
"""
import asyncio
import os
import sys
import time

from benchlib import Cutover

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover"
CLIENTS = int(os.environ.get("CLIENTS", 400))
SECONDS = float(os.environ.get("SECONDS", 8))
ORIGIN_SLOTS = int(os.environ.get("ORIGIN_SLOTS", 20))
SERVICE_MS = float(os.environ.get("SERVICE_MS", 40))
MAX_INFLIGHT = os.environ.get("MAX_INFLIGHT", "1024 50").split()
TIMEOUT = os.environ.get("TIMEOUT", "2s")
BODY = b'{"data": [1, 2, 3]}'


async def origin(reader, writer, slots):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            async with slots:
                await asyncio.sleep(SERVICE_MS / 1000)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(BODY), BODY))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def client(port, until, stats):
    reader = writer = None
    while time.time() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t = time.time()
            writer.write(b"GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, retry = 0, 0.0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
                elif k.strip().lower() == b"retry-after":
                    retry = float(v)
            await reader.readexactly(length)
            took = time.time() - t
            stats.setdefault(status, []).append(took)
            if retry:
                await asyncio.sleep(retry)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            stats.setdefault("error", []).append(0)
            writer = None
            await asyncio.sleep(0.05)


async def scrape_peak(admin, until, peak):
    while time.time() < until:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", admin)
            w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            text = (await r.read()).decode()
            w.close()
            for line in text.splitlines():
                if line.startswith("cutover_reads_inflight{"):
                    peak[0] = max(peak[0], float(line.rsplit(" ", 1)[1]))
        except OSError:
            pass
        await asyncio.sleep(0.2)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")


async def run_once(max_inflight):
    slots = asyncio.Semaphore(ORIGIN_SLOTS)
    server = await asyncio.start_server(lambda r, w: origin(r, w, slots), "127.0.0.1", 0, backlog=4096)
    oport = server.sockets[0].getsockname()[1]
    limits = f"{{ max_inflight_reads: {max_inflight}, max_connections: {CLIENTS * 2} }}"
    with Cutover(BIN, oport, limits=limits, batch_timeout=TIMEOUT) as proc:
        listen, admin = proc.listen, proc.admin
        stats, peak = {}, [0.0]
        until = time.time() + SECONDS
        await asyncio.gather(scrape_peak(admin, until, peak),
                             *(client(listen, until, stats) for _ in range(CLIENTS)))
        ok = stats.get(200, [])
        print(f"| {max_inflight} | {len(ok) / SECONDS:.0f} | {pct(ok, 0.5):.0f} | {pct(ok, 0.99):.0f} "
              f"| {len(stats.get(503, []))} | {len(stats.get(504, []))} | {len(stats.get('error', []))} "
              f"| {peak[0]:.0f} |", flush=True)
    server.close()
    for t in asyncio.all_tasks() - {asyncio.current_task()}:
        t.cancel()


async def main():
    cap = ORIGIN_SLOTS * 1000 / SERVICE_MS
    print(f"{CLIENTS} consumers in a closed loop for {SECONDS:.0f} s; batch serves at most "
          f"{cap:.0f} reads/s ({ORIGIN_SLOTS} at once, {SERVICE_MS:.0f} ms each); side timeout {TIMEOUT}")
    print("| max_inflight_reads | served/s | p50 ms | p99 ms | 503 shed | 504 timeout | errors | peak in flight |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in MAX_INFLIGHT:
        await run_once(m)


if __name__ == "__main__":
    asyncio.run(main())
