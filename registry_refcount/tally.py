"""Counters of what happens inside the workers' requests - images
deleted online and the bytes they freed, locks not had in time - kept on
storage so that ``metrics`` can sum them over workers, hosts and
restarts.  (What the commands do is in the run history.)

A worker counts in memory and, every recovery round, adds what it
counted since its last round as one record, ``counters/<ms>-<token>``,
never rewritten.  Recovery (one process at a time, under its lock)
folds those records into ``counters/total``: it reads and removes them,
then writes the sum.  A crash in between loses the counts it had read -
a counter that goes down, which Prometheus reads as a reset - and never
counts one twice.
"""

from __future__ import absolute_import, unicode_literals

import collections
import logging
import time

from . import layout
from . import records

logger = logging.getLogger(__name__)

_counts = collections.Counter()
TOTAL = 'total'


def add(name, n=1):
    """Count ``n`` more of ``name`` in this process."""
    if n:
        _counts[name] += n


def flush(store):
    """Put what this process counted since its last flush on storage."""
    if not _counts:
        return
    delta = dict(_counts)
    _counts.clear()
    try:
        name = '%013d-%s' % (int(time.time() * 1000), layout.new_token())
        records.write(store, layout.counter_entry(name), delta)
    except Exception as e:
        _counts.update(delta)           # the next round tries again
        logger.warning('refcount: could not write counters: %s', e)


def fold(store):
    """Fold the workers' records into the total (recovery's)."""
    names = records.stamped(store, layout.COUNTERS)
    if not names:
        return
    total = _read(store, TOTAL)
    for name in names:
        delta = _read(store, name)
        records.remove(store, layout.counter_entry(name))
        for key, value in delta.items():
            total[key] = total.get(key, 0) + value
    records.write(store, layout.counter_entry(TOTAL), total)


def totals(store):
    """The total, with the records not folded yet."""
    total = _read(store, TOTAL)
    for name in records.stamped(store, layout.COUNTERS):
        for key, value in _read(store, name).items():
            total[key] = total.get(key, 0) + value
    return total


def _read(store, name):
    try:
        doc = records.read(store, layout.counter_entry(name)) or {}
    except records.Unreadable:
        return {}
    return dict((k, v) for k, v in doc.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k != 'v')
