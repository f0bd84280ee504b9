#!/usr/bin/env bash
# The benchmarks (bench/): cost per operation vs registry size, online
# overhead in the real registry, gc sweep vs the storage limit, our gc
# beside the other v1 cleanup tools, and the online cost on object storage
# far away (the S3 driver behind a relay that delays each request).  One driver, `python -m bench`;
# results in bench/results/*.json and bench/RESULTS.md.
#   make bench            (< 45 minutes)
#   QUICK=1 make bench    (< 10 minutes: fewer sizes and repetitions)
# Arguments go to the driver, e.g. `scripts/bench.sh --parts gc`.
# The peers of part 6 (bench/peers.py) are found through BENCH_PEER_RUBY and
# BENCH_PEER_PR606 (local copies of their repositories) and
# BENCH_PEER_CLEANER (a Python with docker-registry-cleaner); what they run
# with is installed here, idempotently: ruby, and .venv-bench.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v ruby > /dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        $SUDO apt-get install -y -qq ruby \
        || echo "bench: ruby could not be installed: part 6 skips the rm -rf script" >&2
fi
if ! .venv-bench/bin/python -c "import cleaner" 2>/dev/null; then
    rm -rf .venv-bench
    "${PY3:-python3}" -m venv .venv-bench \
        && .venv-bench/bin/pip install -q docker-registry-cleaner==0.1.0 \
        || echo "bench: docker-registry-cleaner could not be installed: part 6 skips it" >&2
fi
exec .venv27/bin/python -m bench "$@"
