#!/usr/bin/env bash
# Load benchmark: the same 1 KiB JSON read directly from the origin and through
# cutover in each mode, one after the other, in one run.
#
#   cargo build --release && bench/load.sh [BINARY]
#
# Modes: batch, streaming, shadow (streaming healthy), shadow-slow (streaming
# answers after 200 ms: the consumer's latency must not move), fallback
# (streaming refuses, circuit disabled: every read falls back), circuit
# (streaming refuses, circuit opens: reads skip streaming), access-log
# (streaming with every read in the access log, sample 1.0, to a file), gated (streaming
# with a gate evaluated every second: not in the default list), and the
# contract modes (not in the default list): streaming with a contract
# (`unique`, `sorted_by`, `not_null` on the records at /data) checked after
# serving (contract-record) or held and checked before (contract-fallback),
# and held with a JSON Schema besides (contract-schema). The contract cost
# of a 64 KiB answer:
#   BODY_BYTES=65536 MODES="streaming contract-record contract-fallback contract-schema" bench/load.sh
#
# Environment: DURATION (s, default 6), CONNS (default 64), BODY_BYTES (1024),
# MODES (which modes, in order; default all six, a mode may repeat).
# Layout on 2 cores: origin and wrk on CPU 0, cutover alone on CPU 1 with one
# worker thread. Prints req/s, latency percentiles (wrk), CPU time per request
# of the cutover process (from /proc; in all, in user space and in the kernel)
# and its resident memory after the run. The nginx-proxy row is nginx as the
# same reverse proxy on the same core, for the user/kernel comparison.
# For nginx and HAProxy side by side, use bench/peers.sh.
set -euo pipefail

BIN=${1:-target/release/cutover}
DURATION=${DURATION:-6}
CONNS=${CONNS:-64}
BODY_BYTES=${BODY_BYTES:-1024}
BASE=${BASE_PORT:-19000}
ORIGIN=$BASE; SLOW=$((BASE+1)); REFUSED=$((BASE+2)); LISTEN=$((BASE+3)); ADMIN=$((BASE+4)); NGX_PROXY=$((BASE+5))

. "$(dirname "$0")/common.sh"
bench_setup nginx-light:nginx wrk:wrk
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
# A slow streaming side: answers every read after 200 ms.
taskset -c 0 python3 - "$SLOW" "$W/body.json" <<'EOF' & PIDS+=($!)
import http.server, socketserver, sys, time
port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(0.2)
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", port), H).serve_forever()
EOF

config() { # mode streaming_port route_extra top_extra
  cat >"$W/cutover.yaml" <<EOF
version: 1
consumer: bench
listen: 127.0.0.1:$LISTEN
admin: 127.0.0.1:$ADMIN
routes:
  - name: all
    match: { path_prefix: / }
    batch: http://127.0.0.1:$ORIGIN/
    streaming: { url: "http://127.0.0.1:$2/", timeout: 2s }
    mode: $1
$3
${4:-}
EOF
}
wait_port() { for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$1/x" 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never answered" >&2; exit 1; }
wait_port $ORIGIN

# utime and stime ticks of a process and its children (nginx's worker).
cpu_ticks() { local u=0 s=0 p a b
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] && read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat") && u=$((u+a)) && s=$((s+b))
  done; echo "$u $s"; }
HZ=$(getconf CLK_TCK)
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v+0} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1000000} else print v}'; }

printf '%-12s %9s %8s %8s %8s %10s %8s %8s %7s %s\n' target req/s p50_us p90_us p99_us cpu_us/req user_us sys_us rss_MiB notes
run() { # name port pid
  local c0 c1 out rps reqs p50 p90 p99 cpu usr sys rss errs
  c0=$(cpu_ticks "${3:-0}")
  out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/v1/orders" 2>&1)
  c1=$(cpu_ticks "${3:-0}")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_us); p90=$(awk '$1=="90%" {print $2}' <<<"$out" | to_us)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_us)
  errs=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
  if [ -n "${3:-}" ]; then
    read -r cpu usr sys < <(python3 -c "u0,s0,u1,s1=map(int,'$c0 $c1'.split()); f=1e6/$HZ/$reqs; print('%.1f %.1f %.1f' % ((u1-u0+s1-s0)*f, (u1-u0)*f, (s1-s0)*f))")
    rss=$(( $(ps -o rss= -p "$3") / 1024 ))
  else cpu=-; usr=-; sys=-; rss=-; fi
  printf '%-12s %9.0f %8.0f %8.0f %8.0f %10s %8s %8s %7s %s\n' "$1" "$rps" "$p50" "$p90" "$p99" "$cpu" "$usr" "$sys" "$rss" "$errs"
}

run direct $ORIGIN
# nginx as the same reverse proxy (one worker on CPU 1), for the user/kernel split.
mkdir -p "$W/ngx-proxy"
cat >"$W/ngx-proxy/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $W/ngx-proxy/pid; error_log $W/ngx-proxy/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 256; }
  server { listen 127.0.0.1:$NGX_PROXY;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
taskset -c 1 nginx -c "$W/ngx-proxy/nginx.conf" -p "$W/ngx-proxy" & ngx=$!; PIDS+=($ngx)
wait_port $NGX_PROXY
run nginx-proxy $NGX_PROXY $ngx
kill $ngx; wait $ngx 2>/dev/null || true
for mode in ${MODES:-batch streaming shadow shadow-slow fallback circuit}; do
  case $mode in
    batch|streaming) config "$mode" $ORIGIN "" ;;
    shadow) config shadow $ORIGIN "" ;;
    shadow-slow) config shadow $SLOW "" ;;
    fallback) config streaming $REFUSED "    fallback: { circuit: { failures: 0 } }" ;;
    circuit) config streaming $REFUSED "    fallback: { circuit: { failures: 5, cooldown: 1h } }" ;;
    access-log) config streaming $ORIGIN "" "access_log: { path: $W/access.jsonl, sample: 1.0 }" ;;
    contract-record|contract-fallback|contract-schema)
      rules="unique: [id], sorted_by: [id], not_null: [id, amount]"
      on=fallback; [ "$mode" = contract-record ] && on=record
      schema=""
      if [ "$mode" = contract-schema ]; then
        cat >"$W/rows.schema.json" <<'EOF'
{ "type": "object", "required": ["id", "amount", "status"],
  "properties": { "id": { "type": "integer", "minimum": 0 }, "amount": { "type": "number" },
                  "status": { "enum": ["settled", "pending"] } } }
EOF
        schema="schema: rows.schema.json, "
      fi
      config streaming $ORIGIN "    reconcile: { records: /data, sample: 0 }
    contract: { ${schema}${rules}, on_violation: $on }" ;;
    gated) config streaming $ORIGIN "    gate: { interval: 1s, window: 30s, max_error_ratio_delta: 0.5, max_fallback_ratio: 0.5, max_divergence_ratio: 0.5 }" ;;
  esac
  TOKIO_WORKER_THREADS=1 taskset -c 1 "$BIN" run -c "$W/cutover.yaml" 2>"$W/cutover-$mode.log" & pid=$!
  wait_port $LISTEN
  run "$mode" $LISTEN $pid
  kill -TERM $pid; wait $pid 2>/dev/null || true
done
