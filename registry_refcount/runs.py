"""Run history: one record per run of the work that changes storage -
``gc``, ``recover``, ``rebuild``, ``purge``, ``restore``, ``retain`` -
from the command or from a worker's background loop, so that "what did
it do, and when" has an answer.

``runs/<ms>-<token>`` = ``{command, by, host, pid, started, ended,
outcome, counts}``: times on the storage's clock, ``outcome`` one of
``done``, ``failed`` (an error, or a count of errors), ``interrupted``
(Ctrl-C), and the run's counts (deleted, bytes freed, kept and why,
errors).  The newest :data:`LIMIT` are kept; each write drops older
ones.  A worker's recovery round is recorded only when it did something
(finished work, purged, or met an error): an idle round every few
minutes would push the operators' runs out.  Read-only commands record
nothing (they write nothing at all).
"""

from __future__ import absolute_import, unicode_literals

import logging
import time

from . import layout
from . import owner
from . import records

logger = logging.getLogger(__name__)

#: Records kept (at about 400 bytes each: 400 KB).
LIMIT = 1000

#: The counts a run's report may hold, as the record names them; a list
#: counts its length.
COUNTED = ('deleted', 'bytes_freed', 'purged', 'rescued', 'restored',
           'refused', 'kept_young', 'kept_referenced', 'kept_trash',
           'kept_damaged', 'intents_finished', 'deletions_finished',
           'tags_reconciled', 'errors', 'trash_errors')


def counts(report):
    """The numbers of a command's report (``retain``: summed over its
    rules), for the record."""
    found = {}
    parts = report.get('rules') or [report]
    for part in parts:
        for key in COUNTED + ('bytes',):
            value = part.get(key)
            if isinstance(value, (list, tuple)):
                value = len(value)
            if isinstance(value, (int, float)) and not isinstance(value,
                                                                  bool):
                name = 'bytes_freed' if key == 'bytes' else key
                found[name] = found.get(name, 0) + value
    purge = report.get('purge')
    if isinstance(purge, dict) and purge.get('purged'):
        found['purged'] = len(purge['purged'])
        found['bytes_freed'] = found.get('bytes_freed', 0) + purge.get(
            'bytes_freed', 0)
    return found


def outcome(code, report, interrupted=False):
    if interrupted:
        return 'interrupted'
    failed = code or report.get('errors') or report.get('trash_errors')
    return 'failed' if failed else 'done'


def record(store, command, by, started, ended, result, report):
    """Append one run's record; a failure to write it is logged, never
    raised (the run itself is over)."""
    doc = dict(owner.me(), command=command, by=by, started=started,
               ended=ended, outcome=result, counts=counts(report),
               seq=time.time())  # (orders runs within one S3 second)
    errors = report.get('errors') or report.get('error')
    if errors:
        doc['error'] = ('%s' % (errors[0] if isinstance(errors, list)
                                else errors))[:500]
    try:
        name = '%013d-%s' % (int(started * 1000), layout.new_token())
        records.write(store, layout.run_entry(name), doc)
        prune(store)
    except Exception as e:
        logger.error('refcount: could not record the %s run: %s', command,
                     e)


def prune(store, limit=LIMIT):
    for name in records.stamped(store, layout.RUNS)[:-limit]:
        records.remove(store, layout.run_entry(name))


def recent(store, limit=None):
    """The newest runs first (at most ``limit``), each a dict; unreadable
    records are left out (and quarantined)."""
    found = []
    for name in reversed(records.stamped(store, layout.RUNS)):
        if limit is not None and len(found) >= limit:
            break
        try:
            doc = records.read(store, layout.run_entry(name))
        except records.Unreadable:
            continue
        if doc:
            found.append(doc)
    found.sort(key=lambda run: (run.get('started') or 0, run.get('seq') or 0),
               reverse=True)
    return found


def last(runs, command=None, failed=False):
    """The newest run of ``command`` (any), or the newest that failed."""
    for run in runs:
        if command is not None and run.get('command') != command:
            continue
        if failed and run.get('outcome') != 'failed':
            continue
        return run
    return None
