#!/usr/bin/env bash
# Idempotent set-up from nothing: Debian packages, .venv27 (the registry's
# runtime, Python 2.7), .venv3 (storage-level tests on Python 3) and
# .venv-moto (moto's S3 server for the tests of the s3 flavor).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEB_PACKAGES="swig libssl-dev redis-server faketime"
missing=""
for p in $DEB_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

PY3=${PY3:-python3}

if [ ! -x .venv-tools/bin/virtualenv ]; then
    "$PY3" -m venv .venv-tools
    .venv-tools/bin/pip install -q 'virtualenv<20.16'
fi
C="-c $ROOT/constraints-py27.txt"
# Is the package installed (editable) from this very checkout?  Asked from
# another folder: from here the checkout itself is on the path.  (A venv
# shared with another worktree may point at that one.)
installed_here() {
    (cd / && "$ROOT/$1" -c "import os, sys, registry_refcount as r
sys.exit(os.path.realpath(os.path.dirname(os.path.dirname(r.__file__)))
         != os.path.realpath('$ROOT'))") 2>/dev/null
}
if ! .venv27/bin/python -c "import docker_registry, M2Crypto, gevent, pytest, hypothesis, tqdm, registry_refcount" 2>/dev/null \
   || ! installed_here .venv27/bin/python \
   || [ constraints-py27.txt -nt .venv27/.stamp ] || [ setup.py -nt .venv27/.stamp ]; then
    # the registry's environment (Python 2.7 found there), then this package
    bash scripts/registry-env.sh .venv27
    .venv27/bin/pip install -q $C -e '.[test,progress]'
    touch .venv27/.stamp
fi

if [ ! -x .venv3/bin/python ]; then
    "$PY3" -m venv .venv3
fi
if ! .venv3/bin/python -c "import docker_registry.core, pytest, hypothesis, prometheus_client, registry_refcount" 2>/dev/null \
   || ! installed_here .venv3/bin/python || [ setup.py -nt .venv3/.stamp ]; then
    .venv3/bin/pip install -q 'docker-registry-core==2.0.3' 'pytest<9' 'hypothesis<7' \
        'prometheus_client<1'
    .venv3/bin/pip install -q --no-deps -e .
    touch .venv3/.stamp
fi
if ! .venv-moto/bin/python -c "import moto.server, flask_cors" 2>/dev/null \
   || [ ! -x .venv-moto/bin/moto_server ] || [ constraints-moto.txt -nt .venv-moto/.stamp ]; then
    [ -x .venv-moto/bin/python ] || "$PY3" -m venv .venv-moto
    .venv-moto/bin/pip install -q -c constraints-moto.txt 'moto[server]'
    touch .venv-moto/.stamp
fi
echo "setup: ready (.venv27, .venv3, .venv-moto)"
