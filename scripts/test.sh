#!/usr/bin/env bash
# The whole suite: Python 2.7 (everything), then the storage-level tests and
# the protocol model (tests/model) on Python 3.  Non-zero exit on any failure.
# Short tracebacks, and the 2.7 failures said again at the end: the model's
# report comes last and is long, and a CI log may keep only its tail.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
log27=$(mktemp)
trap 'rm -f "$log27"' EXIT
echo "== Python 2.7: the whole suite"
.venv27/bin/python -m pytest tests --tb=short "$@" 2>&1 | tee "$log27" || status=1
echo "== Python 3: storage-level tests and the protocol model"
.venv3/bin/python -m pytest tests/storage tests/model --tb=short "$@" || status=1
if grep -q "= FAILURES =" "$log27"; then
    echo "== Python 2.7 failures, again:"
    sed -n '/= FAILURES =/,$p' "$log27" |
        grep -E '^(_{3,} .* _{3,}|E  |[^ ]+\.py:[0-9]+: [A-Za-z])' | tail -n 60
fi
exit $status
