# Sourced by bench/load.sh, bench/callgrind.sh, bench/big.sh,
# bench/overhead.sh and bench/peers.sh: what each needs before it starts its
# origin and cutover, and the origin, nginx and HAProxy configurations
# peers.sh and overhead.sh share, the port wait and the /proc readings.

# bench_setup PKG:CMD ...: installs the Debian packages whose command is
# missing, checks that $BIN is an executable (made absolute), and makes the
# work directory $W and the list $PIDS of processes stopped on exit.
bench_setup() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { echo "could not install ${missing[*]} (apt-get failed)" >&2; exit 1; }
    for pair in "$@"; do
      command -v "${pair#*:}" >/dev/null 2>&1 || { echo "${pair#*:} is still missing after installing ${pair%%:*}" >&2; exit 1; }
    done
  fi
  [ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release" >&2; exit 1; }
  BIN=$(readlink -f "$BIN")
  W=$(mktemp -d); chmod 755 "$W"
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}

# bench_body PATH BYTES: a JSON page of records, the first size at or past
# BYTES (the same bytes as peers.sh's answer), grown with a running length:
# dumping the whole list per row is quadratic (minutes at 4 MiB).
bench_body() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, size = sys.argv[1], int(sys.argv[2])
rows, total, i = [], len(json.dumps({"data": []})), 0
while total < size:
    row = {"id": i, "amount": round(i * 1.25, 2), "status": "settled"}
    total += len(json.dumps(row)) + (2 if rows else 0)
    rows.append(row); i += 1
open(path, "w").write(json.dumps({"data": rows}))
PY
}

# bench_need_oha: puts ~/.cargo/bin on PATH and installs oha with cargo when
# it is missing (it is built from source: minutes); exits when it cannot.
bench_need_oha() {
  PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
  command -v oha >/dev/null 2>&1 && return 0
  command -v cargo >/dev/null 2>&1 || { echo "oha is missing and there is no cargo to install it with" >&2; exit 1; }
  echo "oha is missing: installing it with 'cargo install oha --locked' (minutes)..." >&2
  cargo install oha --locked >&2 || { echo "cargo install oha failed" >&2; exit 1; }
  command -v oha >/dev/null 2>&1 || { echo "oha was installed but is not on PATH" >&2; exit 1; }
}

# bench_ports N: N free TCP ports on 127.0.0.1 (BASE_PORT, BASE_PORT+1, ...
# when BASE_PORT is set), space-separated.
bench_ports() {
  if [ -n "${BASE_PORT:-}" ]; then seq "$BASE_PORT" $((BASE_PORT + $1 - 1)) | tr '\n' ' '; return; fi
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# bench_nginx_origin DIR ROOT PORT...: the origin of peers.sh (nginx, one
# worker, a data watermark on every answer), serving the files under ROOT on
# each PORT; its configuration is DIR/nginx.conf.
bench_nginx_origin() {
  local dir=$1 root=$2 listen="" p
  shift 2
  for p in "$@"; do listen="$listen listen 127.0.0.1:$p;"; done
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $dir/pid; error_log $dir/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server {$listen root $root;
    location / { default_type application/json; add_header x-data-watermark "2026-01-01T00:00:00Z"; } } }
CONF
}

# bench_nginx_proxy DIR PORT ORIGIN_PORT: peers.sh's nginx (one worker, a
# keep-alive reverse proxy to the origin) in DIR/nginx.conf.
bench_nginx_proxy() {
  mkdir -p "$1"
  cat >"$1/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $1/pid; error_log $1/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$3; keepalive 256; }
  server { listen 127.0.0.1:$2;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}

# bench_haproxy FILE PORT ORIGIN_PORT: peers.sh's HAProxy (one thread,
# upstream connections reused) in FILE.
bench_haproxy() {
  cat >"$1" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$2
  default_backend be
backend be
  server origin 127.0.0.1:$3
CONF
}

# bench_wait_port PORT PID NAME: waits up to 10 s for PORT to give an HTTP
# answer (any status); exits non-zero with the end of $W/NAME.log (or
# $W/NAME/error.log) when it does not, or as soon as PID has exited.
bench_wait_port() {
  local _ code
  for _ in $(seq 100); do
    code=$(curl -sS -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true)
    [ -n "$code" ] && [ "$code" != 000 ] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "$3 did not start: port $1 never answered$(kill -0 "$2" 2>/dev/null || echo ", the process exited")" >&2
  tail -n 20 "$W/$3.log" "$W/$3/error.log" >&2 2>/dev/null || true
  exit 1
}

# bench_cpu_ticks PID...: utime + stime of the processes, in clock ticks
# (`getconf CLK_TCK` per second); all of a process's threads count.
bench_cpu_ticks() {
  local t=0 p
  for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo $t
}

# bench_hwm_reset PID...: restarts each process's peak resident memory
# (VmHWM) from its current RSS (clear_refs 5, Linux 4.0+); prints 1, or 0
# when the kernel refused (the peak is then since the process started).
bench_hwm_reset() {
  local p ok=1
  for p in "$@"; do { echo 5 >"/proc/$p/clear_refs"; } 2>/dev/null || ok=0; done
  echo $ok
}

# bench_hwm_kib PID: peak resident memory of PID (VmHWM), KiB.
bench_hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
