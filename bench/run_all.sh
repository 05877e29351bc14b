#!/usr/bin/env bash
# Run the five benchmarks one after another, each once the machine is quiet (bench/quiet.py:
# under QUIET_BELOW busy cores, default 0.25, waiting up to QUIET_WAIT s, default 600), and print
# their output. About 9 minutes when the machine is idle.
#   bench/run_all.sh                 all five
#   bench/run_all.sh drain latency   some of them
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(append drain latency memory_cpu outage)
for b in "${benches[@]}"; do
  $py bench/quiet.py --below "${QUIET_BELOW:-0.25}" --max-wait "${QUIET_WAIT:-600}" || echo "run_all: running $b on a busy machine" >&2
  echo "\$ .venv/bin/python bench/$b.py    # started $(date -u +%FT%TZ)"
  $py "bench/$b.py"
done
