#!/usr/bin/env bash
# The whole suite: Python 2.7 (everything), then the storage-level tests and
# the protocol model (tests/model) on Python 3.  Non-zero exit on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
echo "== Python 2.7: the whole suite"
.venv27/bin/python -m pytest tests "$@" || status=1
echo "== Python 3: storage-level tests and the protocol model"
.venv3/bin/python -m pytest tests/storage tests/model "$@" || status=1
exit $status
