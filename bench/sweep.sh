#!/usr/bin/env bash
# Body-size sweep of peers.sh: the same proxies, one run per answer size,
# printed as one table of cutover/peer ratios (CPU per read, throughput, p99).
#
#   bench/sweep.sh [BINARY]     (default: target/release/cutover; run from the repository root)
#
# Environment: SIZES (bytes, default "1024 65536 262144 4194304"), and what
# peers.sh takes (DURATION, ROUNDS, MODE); CONNS is 64 for answers up to
# 64 KiB and 16 above, unless set. RATE is 0 (no fixed-rate pass).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-target/release/cutover}
SIZES=${SIZES:-"1024 65536 262144 4194304"}
printf 'size\tconns\tcpu/nginx\tcpu/haproxy\trps/nginx\trps/haproxy\tp99/nginx\tp99/haproxy\tcutover_us/read\n'
for s in $SIZES; do
  c=${CONNS:-$([ "$s" -le 65536 ] && echo 64 || echo 16)}
  out=$(BODY_BYTES=$s CONNS=$c RATE=0 DURATION=${DURATION:-5} ROUNDS=${ROUNDS:-2} bash "$HERE/peers.sh" "$BIN" 2>&1) || { echo "$out" | tail -5 >&2; exit 1; }
  f() { echo "$out" | grep "ratio cutover/$1:" | awk -v k="$2" '{for(i=1;i<=NF;i++) if($i==k) print $(i+1)}'; }
  us=$(echo "$out" | awk '$1=="cutover" && $5 ~ /^[0-9.]+$/ {v=$5} END {print v}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$c" "$(f nginx cpu/req)" "$(f haproxy cpu/req)" \
    "$(f nginx throughput)" "$(f haproxy throughput)" "$(f nginx p99)" "$(f haproxy p99)" "$us"
done
