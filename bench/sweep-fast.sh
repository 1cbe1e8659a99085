#!/usr/bin/env bash
# ../shared/bench/sweep.sh, runnable at 4 MiB: the stock peers.sh builds its
# answer body with a quadratic loop (json.dumps of the whole list per row),
# which takes tens of minutes at 4 MiB. This makes temporary copies of both
# scripts with a running-length body generator (the same rows, the same
# bytes) and runs the sweep with them. Everything else is unchanged.
#
#   cargo build --release --features jemalloc && bench/sweep-fast.sh [BINARY]
#
# Environment: as sweep.sh (SIZES, DURATION, ROUNDS, MODE, CONNS).
set -euo pipefail
SHARED=$(cd "$(dirname "$0")/../../shared/bench" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$SHARED/peers.sh" "$tmp/peers.sh" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
old = '''rows, i = [], 0
while len(json.dumps({"data": rows})) < size:
    rows.append({"id": i, "amount": round(i * 1.25, 2), "status": "settled"}); i += 1
'''
new = '''rows, total, i = [], len(json.dumps({"data": []})), 0
while total < size:
    row = {"id": i, "amount": round(i * 1.25, 2), "status": "settled"}
    total += len(json.dumps(row)) + (2 if rows else 0)
    rows.append(row); i += 1
'''
if old not in text:
    sys.exit("peers.sh's body generator changed: run ../shared/bench/sweep.sh itself")
open(dst, "w").write(text.replace(old, new))
PY
sed 's|bash "$HERE/peers.sh"|bash "'"$tmp"'/peers.sh"|' "$SHARED/sweep.sh" >"$tmp/sweep.sh"
grep -q "$tmp/peers.sh" "$tmp/sweep.sh" || { echo "sweep.sh changed: run it itself" >&2; exit 1; }
bash "$tmp/sweep.sh" "$@"
