#!/usr/bin/env bash
# The answer-size sweep at 4 MiB. This script used to patch a copy of the
# shared peers.sh, whose body generator was quadratic (json.dumps of the whole
# list per row: tens of minutes at 4 MiB), and run the sweep with it. The
# peers.sh vendored into bench/ already builds its body in linear time (the
# same rows, the same bytes), so this now runs bench/sweep.sh as it is; the
# name stays because the performance record in bench/README.md quotes it.
#
#   cargo build --release --features jemalloc && bench/sweep-fast.sh [BINARY]
#
# Environment: as sweep.sh (SIZES, DURATION, ROUNDS, MODE, CONNS).
set -euo pipefail
exec bash "$(dirname "$0")/sweep.sh" "$@"
