#!/usr/bin/env bash
# Side-by-side proxy benchmark: the same origin read directly, through nginx,
# through HAProxy and through cutover, in one run, with the same core budget.
#
#   bench/peers.sh [BINARY]        (default: target/release/cutover; run from the repository root)
#
# Environment: DURATION (s, default 8), CONNS (default 64), ROUNDS (default 2),
# BODY_BYTES (origin response size, default 1024), RATE (fixed-rate pass in
# req/s for latency at equal load, default 2000; 0 skips it; needs `oha`,
# from `cargo install oha`), MODE (cutover route mode, default streaming).
#
# Layout on a 2-core machine: origin and load generator share CPU 0; each
# proxy gets CPU 1 alone (nginx 1 worker, HAProxy 1 thread, cutover with
# TOKIO_WORKER_THREADS=1). On 2 cores the load generator can saturate before
# the proxy does, so the figure that compares proxies best is CPU time per
# request (cpu_us/req, from /proc, the proxy's own processes only); req/s and
# latency are printed beside it. Medians over ROUNDS, then ratios
# cutover/peer: for req/s higher is better, for latency and CPU lower is better.
# Without a binary it measures the peers alone.
set -euo pipefail
# The nginx and HAProxy configurations overhead.sh shares (bench_nginx_proxy, bench_haproxy).
. "$(dirname "$0")/common.sh"

BIN=${1:-target/release/cutover}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
BODY_BYTES=${BODY_BYTES:-1024}
RATE=${RATE:-2000}
MODE=${MODE:-streaming}
BASE=${BASE_PORT:-18000}
ORIGIN=$BASE; P_NGINX=$((BASE+1)); P_HAPROXY=$((BASE+2)); P_CUTOVER=$((BASE+3)); P_ADMIN=$((BASE+4))

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need haproxy || ! need wrk; then
  echo "installing nginx, haproxy, wrk (Debian packages)..." >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light haproxy wrk >/dev/null
fi
HAVE_CUTOVER=1
if [ -x "$BIN" ]; then BIN=$(readlink -f "$BIN"); else
  echo "no binary at $BIN (cargo build --release): measuring the peers alone" >&2; HAVE_CUTOVER=0; fi

W=$(mktemp -d); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

python3 - "$W/body.json" "$BODY_BYTES" <<'EOF'
import json, sys
path, size = sys.argv[1], int(sys.argv[2])
# Linear: the length of json.dumps({"data": rows}) is kept as rows are added
# (the same rows and bytes as growing the list until it reaches `size`).
rows, total, i = [], len(json.dumps({"data": []})), 0
while total < size:
    row = {"id": i, "amount": round(i * 1.25, 2), "status": "settled"}
    total += len(json.dumps(row)) + (2 if rows else 0)
    rows.append(row); i += 1
open(path, "w").write(json.dumps({"data": rows}))
EOF

mkdir -p "$W/ngx-origin" "$W/ngx-proxy"
cat >"$W/ngx-origin/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/ngx-origin/pid; error_log $W/ngx-origin/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; root $W;
    location / { default_type application/json; add_header x-data-watermark "2026-01-01T00:00:00Z"; try_files /body.json =404; } } }
EOF
bench_nginx_proxy "$W/ngx-proxy" "$P_NGINX" "$ORIGIN"
bench_haproxy "$W/haproxy.cfg" "$P_HAPROXY" "$ORIGIN"
cat >"$W/cutover.yaml" <<EOF
version: 1
consumer: bench
risk: low
listen: 127.0.0.1:$P_CUTOVER
admin: 127.0.0.1:$P_ADMIN
routes:
  - name: all
    match: { path_prefix: / }
    batch: http://127.0.0.1:$ORIGIN/
    streaming: http://127.0.0.1:$ORIGIN/
    mode: $MODE
EOF

taskset -c 0 nginx -c "$W/ngx-origin/nginx.conf" -p "$W/ngx-origin" & PIDS+=($!)
taskset -c 1 nginx -c "$W/ngx-proxy/nginx.conf" -p "$W/ngx-proxy" & NGINX_PID=$!; PIDS+=($NGINX_PID)
taskset -c 1 haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
if [ $HAVE_CUTOVER = 1 ]; then
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$BIN" run -c "$W/cutover.yaml" >"$W/cutover.log" 2>&1 & CUTOVER_PID=$!; PIDS+=($CUTOVER_PID)
fi

wait_port() { for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$1/x" 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never answered" >&2; cat "$W"/*.log >&2 || true; exit 1; }
for p in $ORIGIN $P_NGINX $P_HAPROXY; do wait_port "$p"; done
TARGETS="direct nginx haproxy"
if [ $HAVE_CUTOVER = 1 ]; then
  wait_port $P_CUTOVER; TARGETS="$TARGETS cutover"
  want=streaming; [ "$MODE" = batch ] || [ "$MODE" = shadow ] && want=batch
  curl -fsS -D - -o /dev/null "http://127.0.0.1:$P_CUTOVER/x" | grep -qi "^x-cutover-served-by: $want" \
    || { echo "cutover did not serve from $want" >&2; exit 1; }
fi

port_of() { case $1 in direct) echo $ORIGIN;; nginx) echo $P_NGINX;; haproxy) echo $P_HAPROXY;; cutover) echo $P_CUTOVER;; esac; }
pids_of() { case $1 in direct) echo "";; nginx) echo "$NGINX_PID $(pgrep -P $NGINX_PID | tr '\n' ' ')";;
  haproxy) echo "$HAPROXY_PID $(pgrep -P $HAPROXY_PID | tr '\n' ' ')";; cutover) echo "$CUTOVER_PID";; esac; }
cpu_ticks() { local t=0 p; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
HZ=$(getconf CLK_TCK)
# wrk prints latency with units; normalise to microseconds.
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000} else print v}'; }

RES="$W/results.tsv"; : >"$RES"
run_wrk() { # name
  local port pids c0 c1 out rps reqs p50 p99 errs cpu
  port=$(port_of "$1"); pids=$(pids_of "$1")
  c0=$(cpu_ticks $pids)
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/v1/orders" 2>&1)
  c1=$(cpu_ticks $pids)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_us)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_us)
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  if [ -n "$pids" ]; then cpu=$(python3 -c "print('%.2f' % (($c1-$c0)/$HZ*1e6/$reqs))"); else cpu=0; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$rps" "$p50" "$p99" "$cpu" "${errs:-}" | tee -a "$RES"
}
printf 'target\treq/s\tp50_us\tp99_us\tcpu_us/req\terrors\n'
for _ in $(seq "$ROUNDS"); do for t in $TARGETS; do run_wrk "$t"; done; done

python3 - "$RES" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
med = {}
for name in ("direct", "nginx", "haproxy", "cutover"):
    rs = [r for r in rows if r[0] == name]
    if rs:
        med[name] = [statistics.median(float(r[i]) for r in rs) for i in (1, 2, 3, 4)]
print("\nmedians\ttarget\treq/s\tp50_us\tp99_us\tcpu_us/req")
for k, (a, b, c, d) in med.items():
    print(f"\t{k}\t{a:.0f}\t{b:.0f}\t{c:.0f}\t{d:.2f}")
if "cutover" in med:
    for peer in ("nginx", "haproxy", "direct"):
        c, p = med["cutover"], med[peer]
        cpu = f"  cpu/req {c[3] / p[3]:.2f}" if p[3] else ""
        print(f"ratio cutover/{peer}: throughput {c[0] / p[0]:.2f}  p99 {c[2] / p[2]:.2f}{cpu}")
EOF

if [ "$RATE" != 0 ] && need oha; then
  echo; echo "fixed rate $RATE req/s, 16 connections, latency corrected (oha):"
  for t in $TARGETS; do
    taskset -c 0 oha --no-tui -z "${DURATION}s" -c 16 -q "$RATE" --latency-correction --output-format json \
      "http://127.0.0.1:$(port_of "$t")/v1/orders" 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); p=d['latencyPercentiles']; print('$t', 'p50_us=%.0f p99_us=%.0f p99.9_us=%.0f' % (p['p50']*1e6, p['p99']*1e6, p['p99.9']*1e6))"
  done
fi
if [ $HAVE_CUTOVER = 1 ]; then
  RSS=$(ps -o rss= -p "$CUTOVER_PID" | tr -d ' ')
  echo; echo "cutover resident memory after the run: $((RSS/1024)) MiB"
fi
