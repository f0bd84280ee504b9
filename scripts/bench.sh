#!/usr/bin/env bash
# The benchmarks (bench/): cost per operation vs registry size, online
# overhead in the real registry, gc sweep vs the storage limit.  One driver,
# `python -m bench`; results in bench/results/*.json and bench/RESULTS.md.
#   make bench            (< 20 minutes)
#   QUICK=1 make bench    (< 5 minutes: fewer sizes and repetitions)
# Arguments go to the driver, e.g. `scripts/bench.sh --parts gc`.
set -uo pipefail
cd "$(dirname "$0")/.."
exec .venv27/bin/python -m bench "$@"
