"""Benchmarks of registry-refcount (issue 6): ``make bench``.

Run from the repository root as modules (``python -m bench.storage_cost``)
so that ``registry_refcount`` and the test harness import as they do in the
tests.  Results go to ``bench/results/*.json``; ``bench.report`` turns them
into ``bench/RESULTS.md`` and the PNG plots.
"""
