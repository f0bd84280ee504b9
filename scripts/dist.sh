#!/usr/bin/env bash
# `make dist`: an sdist and a wheel of this package, built with the
# registry's own Python (.venv27: the setuptools and wheel it pins), into
# dist/ or the folder given.  Build files and egg-info go to a temporary
# folder, not the checkout: an egg-info left beside the package would be
# found on the path as a second copy of the distribution.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
PY=${PY27_VENV:-.venv27}/bin/python
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# the current build only, so that `pip install dist/registry_refcount-*.whl`
# names one file
rm -f "$OUT"/registry_refcount-*.whl "$OUT"/registry-refcount-*.tar.gz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" setup.py -q egg_info --egg-base "$tmp" build --build-base "$tmp/build" \
    sdist --dist-dir "$OUT" bdist_wheel --dist-dir "$OUT" --bdist-dir "$tmp/bdist" \
    2>&1 | { grep -v -e 'byte-compil' -e 'missing.*meta-data' -e '^$' || true; } >&2
ls "$OUT"/registry_refcount-*.whl "$OUT"/registry-refcount-*.tar.gz
