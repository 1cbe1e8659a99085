# Sourced by bench/load.sh, bench/callgrind.sh and bench/big.sh: what each
# needs before it starts its origin and cutover.

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
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
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
