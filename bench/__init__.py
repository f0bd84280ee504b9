"""Benchmarks of registry-refcount: ``make bench`` = ``python -m bench``.

Run from the repository root as modules so that ``registry_refcount`` and
the test harness import as in the tests.  Each part writes
``bench/results/<part>.json``; ``bench.report`` makes ``bench/RESULTS.md``.
"""
