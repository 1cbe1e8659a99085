#!/usr/bin/env python3
"""What a comparison costs: `cutover diff` on two answers of 80,000 records
keyed by `id` (about 8.4 MB as JSON), in three cases (identical, one record
changed, every record in another order) and each format the comparator reads,
timed, with each run's peak memory from its rusage. Medians of --rounds runs.

    cargo build --release
    python3 bench/reconcile.py [--binary target/release/cutover] [--rounds 5]

Parquet needs pyarrow (`target/clients-venv/bin/python bench/reconcile.py`
after `.ci/run` made that venv); without it the Parquet rows are left out and
the script says so.
"""

import argparse
import csv
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

RECORDS = 80_000


def records(seed=7):
    rnd = random.Random(seed)
    out = []
    for i in range(RECORDS):
        out.append(
            {
                "id": i,
                "customer": f"c{rnd.randrange(10_000):05d}",
                "amount": round(rnd.uniform(1, 5000), 2),
                "currency": rnd.choice(["EUR", "USD", "GBP"]),
                "status": rnd.choice(["open", "paid", "refunded"]),
                "ts": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            }
        )
    return out


def write(path, fmt, rows):
    if fmt == "json":
        with open(path, "w") as f:
            json.dump({"data": rows}, f, separators=(",", ":"))
    elif fmt == "json.gz":
        with gzip.open(path, "wt") as f:
            json.dump({"data": rows}, f, separators=(",", ":"))
    elif fmt == "ndjson":
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=20_000)
    else:
        raise ValueError(fmt)


def have_pyarrow():
    try:
        import pyarrow  # noqa: F401

        return True
    except ImportError:
        return False


def measure(binary, batch, streaming, rounds):
    """Median wall seconds and peak RSS (MiB) of `cutover diff`, and its exit
    codes. The peak is /usr/bin/time's (a fork of this Python would start at
    this Python's size); the time is taken here, /usr/bin/time's resolution
    being 10 ms."""
    secs, kib, codes = [], [], set()
    for _ in range(rounds):
        t = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M", binary, "diff", batch, streaming,
             "--records", "/data", "--key", "id", "--show", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        secs.append(time.perf_counter() - t)
        codes.add(p.returncode)
        kib.append(int(p.stderr.strip().splitlines()[-1]))
    return statistics.median(secs), statistics.median(kib) / 1024, codes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cutover")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--formats", default="json,json.gz,ndjson,csv,parquet")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f != "parquet"]
    if "parquet" not in args.formats.split(","):
        pass
    elif have_pyarrow():
        formats.append("parquet")
    else:
        print("pyarrow not importable: Parquet left out", file=sys.stderr)
    base = records()
    changed = [dict(r) for r in base]
    changed[RECORDS // 2]["amount"] += 1
    reordered = list(base)
    random.Random(1).shuffle(reordered)
    cases = [("identical", base, 0), ("one changed", changed, 1), ("reordered", reordered, 0)]
    print(f"| format | case | exit | seconds | peak MiB | MB/s (both sides) | time / identical | memory / identical |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as d:
        for fmt in formats:
            b = os.path.join(d, f"batch.{fmt}")
            write(b, fmt, base)
            size = os.path.getsize(b)
            first = None
            for name, rows, want in cases:
                s = os.path.join(d, f"streaming-{name.replace(' ', '-')}.{fmt}")
                # Written anew, not copied: for gzip the bytes then differ
                # (its header carries a time), the data does not.
                write(s, fmt, rows)
                secs, mib, codes = measure(args.binary, b, s, args.rounds)
                if first is None:
                    first = (secs, mib)
                mbs = 2 * size / 1e6 / secs if secs > 0 else float("inf")
                ok = "ok" if codes == {want} else f"UNEXPECTED {sorted(codes)}"
                print(
                    f"| {fmt} ({size / 1e6:.1f} MB) | {name} | {ok} | {secs:.3f} | {mib:.0f} | {mbs:.0f} |"
                    f" {secs / first[0] if first[0] else 0:.2f} | {mib / first[1]:.2f} |"
                )


if __name__ == "__main__":
    main()
