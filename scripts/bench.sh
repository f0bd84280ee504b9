#!/usr/bin/env bash
# The benchmarks of issue 6 (bench/): cost per operation vs registry size,
# online overhead in the real registry, gc sweep vs the storage limit.
# Results: bench/results/*.json, bench/RESULTS.md, bench/*.png.
#   make bench            (< 20 minutes)
#   QUICK=1 make bench    (< 3 minutes: fewer sizes and repetitions)
set -uo pipefail
cd "$(dirname "$0")/.."

# matplotlib for the plots, into .venv3 (idempotent)
if ! .venv3/bin/python -c "import matplotlib" 2>/dev/null; then
    .venv3/bin/pip install -q -r bench/requirements.txt \
        || echo "bench: matplotlib could not be installed; no plots" >&2
fi

if [ -n "${QUICK:-}" ] && [ "${QUICK}" != 0 ]; then
    COMMAND="QUICK=1 make bench"
    STORAGE_ARGS="--sizes 10,100,1000,10000 --s3-sizes 10,100 --counted 1 --timed 3"
else
    COMMAND="make bench"
    STORAGE_ARGS="--sizes 10,100,1000,10000 --s3-sizes 10,100,1000 --counted 3"
fi

COMMAND=${BENCH_COMMAND:-$COMMAND}

# the commit measured, named before this run rewrites its own result files
export BENCH_COMMIT=${BENCH_COMMIT:-$(git describe --always --dirty 2>/dev/null)}
mkdir -p bench/results
rm -f bench/results/storage_cost.json bench/results/online.json bench/results/instructions.json bench/results/gc.json bench/results/run.json
start=$(date +%s)
status=0
echo "== bench 1/3: cost per push and delete vs registry size"
.venv27/bin/python -m bench.storage_cost $STORAGE_ARGS || status=1
echo "== bench 2/3: online overhead in the real registry"
.venv27/bin/python -m bench.online || status=1
if [ -z "${QUICK:-}" ] || [ "${QUICK}" = 0 ]; then
    echo "== bench 2/3, counted: the same iteration's instructions and system calls"
    .venv27/bin/python -m bench.instructions || status=1
fi
echo "== bench 3/3: gc sweep vs the storage limit"
.venv27/bin/python -m bench.gc_bench || status=1
end=$(date +%s)
printf '{"command": "%s", "seconds": %d, "status": %d}\n' "$COMMAND" $((end - start)) $status > bench/results/run.json
echo "== report"
.venv3/bin/python -m bench.report --from-run || status=1
echo "bench: $((end - start)) s; see bench/RESULTS.md"
exit $status
