#!/usr/bin/env bash
# Added latency at a fixed request rate: what a proxy costs the read it
# stands in front of, the way the service-mesh sidecar benchmarks measure it
# (a constant arrival rate, open loop, latency corrected for coordinated
# omission; the proxy's latency minus the direct path's, with its CPU and
# memory beside it).
#
#   bench/overhead.sh [BINARY]     (default: target/release/cutover; run from the repository root)
#
# Paths, each measured in every round at every rate and answer size:
#   direct     the origin (nginx serving a JSON file), no proxy
#   nginx      nginx as a keep-alive reverse proxy, 1 worker
#   haproxy    HAProxy, 1 thread, upstream connections reused
#   streaming  cutover, route mode `streaming` (1 % of reads compared, the default)
#   shadow     cutover, route mode `shadow`: batch and streaming are two ports
#              of the origin, every read is read twice and compared (records
#              at /data keyed by id); the run fails unless the comparisons
#              counted on the admin /metrics (cutover_reconcile_total match or
#              diverged) moved during each shadow run
#
# Environment: RATES (req/s, default "200 2000 10000"), BODY_SIZES (answer
# bytes, default "1024 65536"), CONNS (connections, fixed so that only the
# rate varies; default 32), DURATION (s per measurement, default 3), ROUNDS
# (default 3), PATHS (default all five above, direct always included),
# MIN_ADDED_US (default 10: a peer adding less than this gets absolute figures
# instead of a ratio), BASE_PORT (first of 8 consecutive ports; default: free
# ports). The default run is 90 measurements, about 5 minutes.
#
# Load: `oha -q RATE --latency-correction -z DURATION -c CONNS --no-tui` with
# JSON output (oha is installed with `cargo install oha --locked` if missing);
# requests still in flight at the deadline are waited for, not counted as
# errors.
#
# Layout on a 2-core machine (peers.sh's): origin and oha share CPU 0; each
# proxy has CPU 1 (all are started at once; only the one being measured has
# traffic). cutover runs with TOKIO_WORKER_THREADS=1.
#
# Printed per answer size x rate x path, medians over ROUNDS: achieved rate
# (the 2xx answers per second; a proxy that cannot keep up shows here, and
# its row is marked `behind` when under 95 % of RATE), errors (summed over
# rounds), the latency the path adds over direct at p50 / p99 / p99.9 / max
# (the path's percentile minus direct's, in the same round, then the median;
# the direct row shows its own latency), the proxy's CPU-seconds during the
# measurement (utime + stime from /proc/PID/stat of all its processes: nginx
# master and worker, HAProxy's one process, cutover's one process; 10 ms
# ticks) and CPU per request, and its peak RSS during the measurement
# (VmHWM from /proc/PID/status after clear_refs resets it; for nginx the
# worker's, the master is idle). Then cutover's added latency divided by
# nginx's and by HAProxy's, per size, rate and percentile.
#
# Exits non-zero, with a message, when a tool is missing and cannot be
# installed, when a proxy does not start or does not answer 200, when a path
# had errors (after printing the tables), or when shadow compared nothing.
set -euo pipefail
trap 'echo "overhead.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

BIN=${1:-target/release/cutover}
RATES=${RATES:-"200 2000 10000"}
BODY_SIZES=${BODY_SIZES:-"1024 65536"}
CONNS=${CONNS:-32}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
PATHS=${PATHS:-"direct nginx haproxy streaming shadow"}
MIN_ADDED_US=${MIN_ADDED_US:-10}
case " $PATHS " in *" direct "*) ;; *) PATHS="direct $PATHS" ;; esac

. "$(dirname "$0")/common.sh"
bench_setup nginx-light:nginx haproxy:haproxy
bench_need_oha
# oha 1.x writes JSON with --output-format json; older releases with --json.
if oha --help 2>/dev/null | grep -q -- '--output-format'; then OHA_JSON=(--output-format json); else OHA_JSON=(--json); fi
OHA_WAIT=(); oha --help 2>/dev/null | grep -q -- '--wait-ongoing-requests-after-deadline' && OHA_WAIT=(-w)

read -r ORIGIN ORIGIN2 P_NGINX P_HAPROXY P_STREAMING A_STREAMING P_SHADOW A_SHADOW <<<"$(bench_ports 8)"

mkdir -p "$W/www/v1/orders"
for s in $BODY_SIZES; do bench_body "$W/www/v1/orders/$s.json" "$s"; done
bench_nginx_origin "$W/origin" "$W/www" "$ORIGIN" "$ORIGIN2"
bench_nginx_proxy "$W/nginx" "$P_NGINX" "$ORIGIN"
bench_haproxy "$W/haproxy.cfg" "$P_HAPROXY" "$ORIGIN"
cutover_config() { # mode listen admin streaming_port extra
  cat >"$W/$1.yaml" <<EOF
version: 1
consumer: bench
risk: low
listen: 127.0.0.1:$2
admin: 127.0.0.1:$3
routes:
  - name: all
    match: { path_prefix: / }
    batch: http://127.0.0.1:$ORIGIN/
    streaming: http://127.0.0.1:$4/
    mode: $1
$5
EOF
}
cutover_config streaming "$P_STREAMING" "$A_STREAMING" "$ORIGIN" ""
cutover_config shadow "$P_SHADOW" "$A_SHADOW" "$ORIGIN2" "    reconcile: { records: /data, key: id }"

taskset -c 0 nginx -c "$W/origin/nginx.conf" -p "$W/origin" 2>"$W/origin.log" & ORIGIN_PID=$!; PIDS+=($ORIGIN_PID)
bench_wait_port "$ORIGIN" $ORIGIN_PID origin
declare -A PORT PROCS MEMPID
PORT[direct]=$ORIGIN
for p in $PATHS; do
  case $p in
    direct) continue ;;
    nginx) taskset -c 1 nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" 2>"$W/nginx.log" & PORT[$p]=$P_NGINX ;;
    haproxy) taskset -c 1 haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & PORT[$p]=$P_HAPROXY ;;
    streaming) TOKIO_WORKER_THREADS=1 taskset -c 1 "$BIN" run -c "$W/streaming.yaml" >"$W/streaming.log" 2>&1 & PORT[$p]=$P_STREAMING ;;
    shadow) TOKIO_WORKER_THREADS=1 taskset -c 1 "$BIN" run -c "$W/shadow.yaml" >"$W/shadow.log" 2>&1 & PORT[$p]=$P_SHADOW ;;
    *) echo "unknown path $p (PATHS: direct nginx haproxy streaming shadow)" >&2; exit 1 ;;
  esac
  pid=$!; PIDS+=($pid)
  bench_wait_port "${PORT[$p]}" $pid "$p"
  PROCS[$p]="$pid $(pgrep -P $pid | tr '\n' ' ' || true)"
  MEMPID[$p]=$pid
  if [ "$p" = nginx ]; then MEMPID[$p]=$(pgrep -P $pid | head -1); fi
done

# Every path answers 200 with the whole file; cutover from the side its mode serves.
for p in $PATHS; do for s in $BODY_SIZES; do
  out=$(curl -sS -m 5 -o /dev/null -D "$W/head" -w '%{http_code} %{size_download}' "http://127.0.0.1:${PORT[$p]}/v1/orders/$s.json" || true)
  by=$(awk -F': ' 'tolower($1)=="x-cutover-served-by" {print $2}' "$W/head" | tr -d '\r')
  if [ "$out" != "200 $(stat -c %s "$W/www/v1/orders/$s.json")" ]; then
    echo "$p answered '$out' (status, bytes) for the $s-byte file" >&2; tail -5 "$W/$p.log" >&2 2>/dev/null || true; exit 1
  fi
  case $p in streaming) want=streaming ;; shadow) want=batch ;; *) want="" ;; esac
  [ "$by" = "$want" ] || { echo "$p was served by '$by', not '$want'" >&2; exit 1; }
done; done

# cutover_reconcile_total on an admin port: "compared skipped" (compared = match + diverged).
reconciled() {
  curl -fsS -m 5 "http://127.0.0.1:$1/metrics" | awk '
    /^cutover_reconcile_total\{/ { v=$NF+0; if ($0 ~ /result="skipped"/) s+=v; else if ($0 ~ /result="(match|diverged)"/) c+=v }
    END { printf "%d %d\n", c, s }'
}
HZ=$(getconf CLK_TCK)
RES="$W/results.tsv"; : >"$RES"
FAILED=""
measure() { # round path rate size [warm-up: don't record]
  local p=$2 pids="${PROCS[$2]:-}" c0 c1 hwm_ok=0 hwm=0 rec0="- -" rec1="- -" out
  out="$W/oha.json"
  [ -n "$pids" ] && { hwm_ok=$(bench_hwm_reset ${MEMPID[$p]}); c0=$(bench_cpu_ticks $pids); }
  [ "$p" = shadow ] && rec0=$(reconciled "$A_SHADOW")
  taskset -c 0 oha --no-tui "${OHA_JSON[@]}" "${OHA_WAIT[@]}" -z "${DURATION}s" -c "$CONNS" -q "$3" --latency-correction \
    "http://127.0.0.1:${PORT[$p]}/v1/orders/$4.json" >"$out" 2>"$W/oha.err" \
    || { echo "oha failed against $p:" >&2; cat "$W/oha.err" >&2; exit 1; }
  [ -n "${5:-}" ] && return 0
  if [ -n "$pids" ]; then c1=$(bench_cpu_ticks $pids); hwm=$(bench_hwm_kib ${MEMPID[$p]}); else c0=0; c1=0; fi
  [ "$p" = shadow ] && rec1=$(reconciled "$A_SHADOW")
  python3 - "$out" "$1" "$p" "$3" "$4" "$(( c1 - c0 ))" "$HZ" "$hwm" "$hwm_ok" "$rec0" "$rec1" >>"$RES" <<'EOF'
import json, sys
path, rnd, name, rate, size, ticks, hz, hwm, hwm_ok, rec0, rec1 = sys.argv[1:]
d = json.load(open(path))
s, p = d["summary"], d["latencyPercentiles"]
codes = {k: int(v) for k, v in d.get("statusCodeDistribution", {}).items()}
ok = sum(v for k, v in codes.items() if k.startswith("2"))
errors = sum(v for k, v in codes.items() if not k.startswith("2"))
errors += sum(int(v) for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k)
us = lambda x: -1 if x is None else x * 1e6
c0, s0 = rec0.split(); c1, s1 = rec1.split()
compared = "-" if c0 == "-" else int(c1) - int(c0)
skipped = "-" if s0 == "-" else int(s1) - int(s0)
print("\t".join(str(x) for x in (rnd, name, rate, size, "%.1f" % us(p["p50"]), "%.1f" % us(p["p99"]),
      "%.1f" % us(p["p99.9"]), "%.1f" % us(s["slowest"]), "%.1f" % (ok / s["total"]), ok, errors,
      "%.3f" % (int(ticks) / int(hz)), hwm, hwm_ok, compared, skipped)))
EOF
  local errs; errs=$(tail -1 "$RES" | cut -f11)
  [ "$errs" = 0 ] || FAILED="$FAILED $p@$3/s,${4}B,round$1:$errs"
  if [ "$p" = shadow ] && [ "$(tail -1 "$RES" | cut -f15)" -le 0 ]; then
    echo "shadow compared nothing during its run (cutover_reconcile_total match+diverged did not move)" >&2; exit 1
  fi
}

started=$(date +%s)
echo "overhead.sh: paths [$PATHS], rates [$RATES] req/s, sizes [$BODY_SIZES] B, $CONNS connections, ${DURATION}s x $ROUNDS rounds; $(date -u '+%F %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for p in $PATHS; do measure 0 "$p" 500 "${BODY_SIZES%% *}" warm-up; done
for r in $(seq "$ROUNDS"); do
  for s in $BODY_SIZES; do for q in $RATES; do for p in $PATHS; do measure "$r" "$p" "$q" "$s"; done; done; done
  echo "round $r done ($(( $(date +%s) - started )) s)" >&2
done

python3 - "$RES" "$MIN_ADDED_US" "$PATHS" <<'EOF'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
min_us, paths = float(sys.argv[2]), sys.argv[3].split()
by = {}  # (path, rate, size) -> list of rows, one per round
for r in rows:
    by.setdefault((r[1], int(r[2]), int(r[3])), []).append(r)
sizes = sorted({k[2] for k in by}); rates = sorted({k[1] for k in by})
PCT = ("p50", "p99", "p99.9", "max")

def added(path, rate, size):
    """Median over rounds of (path - direct) at each of PCT, in us."""
    direct = {r[0]: r for r in by[("direct", rate, size)]}
    diffs = [[float(r[4 + i]) - float(direct[r[0]][4 + i]) for i in range(4)] for r in by[(path, rate, size)]]
    return [st.median(d[i] for d in diffs) for i in range(4)]

def behind(path, rate, size):
    return st.median(float(r[8]) for r in by[(path, rate, size)]) < 0.95 * rate

hwm_note = all(r[13] == "1" for r in rows if r[1] != "direct")
print("size\trate\tpath\treq/s\terrors\tp50_us\tp99_us\tp99.9_us\tmax_us\tcpu_s\tcpu_us/req\tpeak_rss_MiB\tnotes")
for size in sizes:
    for rate in rates:
        for path in paths:
            rs = by[(path, rate, size)]
            rps = st.median(float(r[8]) for r in rs)
            errs = sum(int(r[10]) for r in rs)
            lat = [st.median(float(r[4 + i]) for r in rs) for i in range(4)] if path == "direct" else added(path, rate, size)
            notes = []
            if path == "direct":
                notes.append("own latency, not added")
            if behind(path, rate, size):
                notes.append("behind")
            if path == "shadow":
                notes.append("compared %d skipped %d" % (sum(int(r[14]) for r in rs), sum(int(r[15]) for r in rs)))
            if path == "direct":
                cpu = per = rss = "-"
            else:
                c = st.median(float(r[11]) for r in rs)
                ok = st.median(int(r[9]) for r in rs)
                cpu, per = "%.2f" % c, "%.1f" % (c * 1e6 / ok if ok else 0)
                rss = "%.1f" % (max(int(r[12]) for r in rs) / 1024)
            print(f"{size}\t{rate}\t{path}\t{rps:.0f}\t{errs}\t" + "\t".join("%.0f" % v for v in lat)
                  + f"\t{cpu}\t{per}\t{rss}\t{', '.join(notes)}")
print("(latency columns: added over direct, us, medians of per-round differences; peak RSS: the largest of the rounds'"
      + (" peaks" if hwm_note else " peaks, since the process started: clear_refs was refused") + ")")

peers = [p for p in ("nginx", "haproxy") if p in paths]
mine = [p for p in ("streaming", "shadow") if p in paths]
if peers and mine:
    print(f"\nratios of added latency, cutover / peer (a peer adding under {min_us:.0f} us, or cutover adding"
          " less than direct, gets the two absolute figures in us instead; * = a path behind its rate)")
    print("size\trate\tpct\t" + "\t".join(f"{m}/{p}" for m in mine for p in peers))
    for size in sizes:
        for rate in rates:
            a = {p: added(p, rate, size) for p in peers + mine}
            for i, pct in enumerate(PCT):
                cells = []
                for m in mine:
                    for p in peers:
                        c, q = a[m][i], a[p][i]
                        cell = f"{c:.0f} vs {q:.0f}us" if q < min_us or c < 0 else f"{c / q:.2f}"
                        if behind(m, rate, size) or behind(p, rate, size):
                            cell += "*"
                        cells.append(cell)
                print(f"{size}\t{rate}\t{pct}\t" + "\t".join(cells))
EOF
echo "total $(( $(date +%s) - started )) s" >&2
if [ -n "$FAILED" ]; then
  echo "FAILED: errors (path@rate,size,round:count):$FAILED" >&2
  exit 1
fi
