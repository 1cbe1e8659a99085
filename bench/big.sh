#!/usr/bin/env bash
# Large answers through cutover: CPU per read, resident memory under load and
# system calls per read, for one answer size and one mode.
#
#   cargo build --release && bench/big.sh [BINARY]
#
# Starts an nginx origin serving a JSON answer of BODY_BYTES and `cutover run`
# with one worker thread, records resident memory idle, then runs wrk with
# CONNS keep-alive consumers for DURATION seconds while sampling cutover's
# resident memory every 50 ms, and prints req/s, latency, CPU per read
# (user/kernel), idle / peak / after-load RSS. With STRACE=1 a second wrk
# pass runs under `strace -c -f` and prints system calls per read (strace
# slows the process: its req/s mean nothing, the counts per read do).
#
# Environment: BODY_BYTES (default 4194304), CONNS (16), DURATION (8),
# MODE (route mode, default streaming), SAMPLE (reconcile.sample, e.g. 1.0
# to compare every streaming read: the tee copy), STRACE (0), BASE_PORT.
# Layout as peers.sh: origin and wrk on CPU 0, cutover alone on CPU 1.
set -euo pipefail

BIN=${1:-target/release/cutover}
BODY_BYTES=${BODY_BYTES:-4194304}
CONNS=${CONNS:-16}
DURATION=${DURATION:-8}
MODE=${MODE:-streaming}
BASE=${BASE_PORT:-19700}
ORIGIN=$BASE; LISTEN=$((BASE+1)); ADMIN=$((BASE+2))

. "$(dirname "$0")/common.sh"
bench_setup nginx-light:nginx wrk:wrk strace:strace
bench_body "$W/body.json" "$BODY_BYTES"
mkdir -p "$W/ngx"
cat >"$W/ngx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/ngx/pid; error_log $W/ngx/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; root $W;
    location / { default_type application/json; add_header x-data-watermark "2026-01-01T00:00:00Z"; try_files /body.json =404; } } }
EOF
taskset -c 0 nginx -c "$W/ngx/nginx.conf" -p "$W/ngx" & PIDS+=($!)

cat >"$W/cutover.yaml" <<EOF
version: 1
consumer: bench
risk: low
listen: 127.0.0.1:$LISTEN
admin: 127.0.0.1:$ADMIN
routes:
  - name: all
    match: { path_prefix: / }
    batch: http://127.0.0.1:$ORIGIN/
    streaming: http://127.0.0.1:$ORIGIN/
    mode: $MODE
EOF
if [ -n "${SAMPLE:-}" ]; then echo "    reconcile: { sample: $SAMPLE }" >>"$W/cutover.yaml"; fi

wait_port() { for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$1/x" 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never answered" >&2; cat "$W"/*.log >&2 || true; exit 1; }
wait_port $ORIGIN
TOKIO_WORKER_THREADS=1 taskset -c 1 "$BIN" run -c "$W/cutover.yaml" >"$W/cutover.log" 2>&1 & PID=$!; PIDS+=($PID)
wait_port $LISTEN
got=$(curl -fsS -o /dev/null -w '%{size_download}' "http://127.0.0.1:$LISTEN/x")
[ "$got" = "$(stat -c %s "$W/body.json")" ] || { echo "cutover answered $got bytes, not the whole body" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
ticks() { awk '{print $14, $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
sleep 1
IDLE=$(rss_kib)

# Peak resident memory while the load runs, sampled every 50 ms.
sample_rss() { local peak=0 r; while [ -e "$W/sampling" ]; do r=$(rss_kib); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.05; done; echo "$peak" >"$W/peak"; }
touch "$W/sampling"; sample_rss & SAMPLER=$!
read -r u0 s0 < <(ticks)
out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$LISTEN/v1/orders" 2>&1)
read -r u1 s1 < <(ticks)
rm -f "$W/sampling"; wait $SAMPLER
AFTER=$(rss_kib)
reqs=$(awk '/requests in/ {print $1}' <<<"$out")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
python3 - <<EOF
u, s, n, hz = $u1 - $u0, $s1 - $s0, $reqs, $HZ
f = 1e6 / hz / n
print(f"body {$BODY_BYTES} B, {$CONNS} consumers, mode $MODE${SAMPLE:+ (sample $SAMPLE)}: {n} reads, {$rps:.0f} req/s, p50 $p50, p99 $p99 ${errs}")
print(f"cpu per read {(u + s) * f:.1f} us (user {u * f:.1f}, kernel {s * f:.1f})")
print(f"rss idle {$IDLE / 1024:.1f} MiB, peak under load {$(cat "$W/peak") / 1024:.1f} MiB, after {$AFTER / 1024:.1f} MiB")
EOF

if [ "${STRACE:-0}" = 1 ]; then
  strace -c -f -p "$PID" -o "$W/strace.txt" & ST=$!
  sleep 1
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$LISTEN/v1/orders" 2>&1)
  kill -INT $ST; wait $ST 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "system calls per read under strace ($reqs reads):"
  awk -v n="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { name=$NF; calls=$4; errs=(NF==6)?$5:0;
      if (calls/n >= 0.05) printf "  %-14s %8.2f  (errors %.2f)\n", name, calls/n, errs/n }' "$W/strace.txt"
  awk -v n="$reqs" '$NF=="total" {printf "  %-14s %8.2f\n", "total", $4/n}' "$W/strace.txt"
fi
