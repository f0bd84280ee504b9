#!/usr/bin/env bash
# The registry's own environment, without this package: a virtualenv at $1
# (made if absent) on pyenv's Python 2.7 holding docker-registry 0.9.1 and
# its runtime dependencies, pinned by constraints-py27.txt.  `make setup`
# makes .venv27 with it (then adds this package, editable, and the tests'
# packages); tests/registry/test_install.py makes a fresh one, as an
# operator's registry would be, to install the built wheel into - one
# recipe for both, so the test installs into what the project runs on.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:?usage: registry-env.sh VENV}

if [ ! -x "$VENV/bin/python" ]; then
    PY27=${PY27:-$( (pyenv root 2>/dev/null || echo "$HOME/.pyenv") )/versions/2.7.18/bin/python}
    if [ ! -x "$PY27" ]; then
        PY27=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/2.7.*/bin/python 2>/dev/null | tail -n 1 || true)
    fi
    [ -x "$PY27" ] || { echo "setup: no Python 2.7 found (pyenv versions/2.7.*)" >&2; exit 2; }
    "$ROOT/.venv-tools/bin/virtualenv" -q -p "$PY27" "$VENV"
fi
C="-c $ROOT/constraints-py27.txt"
# docker-registry's own pins (M2Crypto 0.22.3, gevent 1.0.1) no longer
# build: it goes in without them, and the constraints' replacements after
"$VENV/bin/pip" install -q $C 'setuptools<45' 'wheel<0.38'
"$VENV/bin/pip" install -q $C --no-deps docker-registry==0.9.1
"$VENV/bin/pip" install -q $C Flask blinker gunicorn PyYAML requests SQLAlchemy \
    backports.lzma docker-registry-core boto redis simplejson M2Crypto gevent greenlet
