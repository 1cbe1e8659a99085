#!/usr/bin/env bash
# User-space instructions per streaming read, under callgrind: deterministic
# where timings are not, so it compares two commits on a noisy machine.
#
#   cargo build --release && bench/callgrind.sh [BINARY]
#
# Starts an nginx origin (1 KiB JSON, keep-alive) and `cutover run` under
# `valgrind --tool=callgrind` with one worker thread, sends N1 and then, in a
# second run, N2 reads over one keep-alive connection (curl's URL globbing),
# and prints the difference in instructions divided by N2 - N1: start-up and
# shutdown cancel out. Environment: N1 (default 1000), N2 (default 4000),
# MODE (route mode, default streaming), FORMAT (the answer: json, ndjson, csv,
# or parquet, tests/data's file; default json; in shadow mode every read is
# compared, as records keyed by id where the format has one), KEEP (a directory to keep the
# callgrind.N files in, for callgrind_annotate).
set -euo pipefail

BIN=${1:-target/release/cutover}
N1=${N1:-1000}
N2=${N2:-4000}
MODE=${MODE:-streaming}
FORMAT=${FORMAT:-json}
BASE=${BASE_PORT:-19500}
ORIGIN=$BASE; LISTEN=$((BASE+1)); ADMIN=$((BASE+2))

. "$(dirname "$0")/common.sh"
bench_setup nginx-light:nginx valgrind:valgrind curl:curl
bench_body "$W/body.json" 1024
# The same records as the other formats (parquet: the fixture file), and
# the type nginx serves each with, which decides how shadow reads them.
case "$FORMAT" in
  json) ctype=application/json; reconcile='{ sample: 1.0, records: /data, key: id }' ;;
  ndjson | csv)
    python3 - "$W/body.json" "$W/body.$FORMAT" "$FORMAT" <<'PY'
import csv, json, sys
rows = json.load(open(sys.argv[1]))["data"]
with open(sys.argv[2], "w", newline="") as out:
    if sys.argv[3] == "ndjson":
        out.writelines(json.dumps(r) + "\n" for r in rows)
    else:
        w = csv.DictWriter(out, fieldnames=list(rows[0]))
        w.writeheader(); w.writerows(rows)
PY
    if [ "$FORMAT" = ndjson ]; then ctype=application/x-ndjson; else ctype=text/csv; fi
    reconcile='{ sample: 1.0, key: id }' ;;
  parquet) cp "$(dirname "$0")/../tests/data/pyarrow-snappy.parquet" "$W/body.parquet"
    ctype=application/vnd.apache.parquet; reconcile='{ sample: 1.0 }' ;;
  *) echo "FORMAT is json, ndjson, csv or parquet, not $FORMAT" >&2; exit 2 ;;
esac

mkdir -p "$W/ngx"
cat >"$W/ngx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/ngx/pid; error_log $W/ngx/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; root $W;
    location / { default_type $ctype; add_header x-data-watermark \$msec; try_files /body.$FORMAT =404; } } }
EOF
nginx -c "$W/ngx/nginx.conf" -p "$W/ngx" & PIDS+=($!)

cat >"$W/cutover.yaml" <<EOF
version: 1
consumer: bench
listen: 127.0.0.1:$LISTEN
admin: 127.0.0.1:$ADMIN
routes:
  - name: orders
    match: { path_prefix: /v1/orders }
    batch: http://127.0.0.1:$ORIGIN/tables/orders
    streaming: http://127.0.0.1:$ORIGIN/v1/orders
    mode: $MODE
    freshness: { probe_interval: off }
EOF
if [ "$MODE" = shadow ]; then echo "    reconcile: $reconcile" >>"$W/cutover.yaml"; fi

wait_port() {
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
  echo "nothing answers on port $1" >&2; exit 1
}
wait_port "$ORIGIN"

# Total instructions of one cutover run serving $1 reads.
instructions() {
  local n=$1 out="$W/callgrind.$1"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$BIN" run -c "$W/cutover.yaml" 2>"$W/valgrind.$n.log" &
  local pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/readyz" && break; sleep 0.1; done
  curl -s -o /dev/null --fail "http://127.0.0.1:$LISTEN/v1/orders/x?i=[1-$n]" \
    || { echo "reads through cutover failed" >&2; exit 1; }
  kill -INT "$pid"; wait "$pid" || true
  grep -E '^(summary|totals):' "$out" | head -n 1 | awk '{print $2}'
}

a=$(instructions "$N1")
b=$(instructions "$N2")
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$W/callgrind.$N1" "$W/callgrind.$N2" "$KEEP/"; fi
echo "mode $MODE, $FORMAT: $(( (b - a) / (N2 - N1) )) instructions per read ($N1 reads: $a, $N2 reads: $b)"
