"""Named crash and pause points for the fault tests.

``REGISTRY_REFCOUNT_CRASH_AT=<point>[,<point>...]`` makes the process exit
at once (``os._exit``, no clean-up, like ``kill -9``) when it reaches one of
the named points inside the protocols.

``REGISTRY_REFCOUNT_PAUSE_AT=<point>[,<point>...]`` makes the process stop
itself (``SIGSTOP``, as a VM pause or a stalled worker would) the first
time it reaches one of the points; the test then does what it likes
meanwhile (lets a lease run out, retags, deletes) and sends ``SIGCONT``.
Every crash point is a pause point; :data:`PAUSES` adds the points between
reading the truth and acting on it, where a stall is most dangerous.

Unset, a point costs one set lookup.
"""

from __future__ import absolute_import, unicode_literals

import logging
import os
import signal
import sys
import threading

CRASH_ENV = 'REGISTRY_REFCOUNT_CRASH_AT'
PAUSE_ENV = 'REGISTRY_REFCOUNT_PAUSE_AT'
ENV = CRASH_ENV

#: Every crash point the protocols name, in the order a tag write meets
#: them.
POINTS = (
    'after_intent',           # intent written; the pending marker not yet
                              # (on object storage it may be: both go at once)
    'after_pending',          # pending marker written
    'after_child_marker',     # child registered, image json not yet stored
    'after_tag_reference',    # new tag marker added, old one still there
    'before_ledger',          # old marker removed, ledger not yet written
    'after_tombstone',        # tombstone written, files still there
    'after_json_removed',     # json removed, other files still there
    'between_cascade_steps',  # an image torn down, its parent not visited
    'before_finalize',        # parent visited, tombstone/journal remain
    'before_trash_record',    # an image lost its last marker, its trash
                              # record not yet written (undo window)
    'restore_after_pending',  # restore: pending marker on, no tag file
    'restore_before_finish',  # restore: tag files written, intent left
)

#: Points where only a pause makes sense (the process is between reading
#: the truth and acting on it); a crash there is the same as a crash at
#: the crash point before it.
PAUSES = (
    'reconcile_read_truth',   # reconcile read the tag file, not the ledger
    'reconcile_before_drop',  # about to take the tag's marker off an image
    'add_before_check',       # a marker written, the tombstone not checked
    'before_tombstone',       # a deletion decided, its tombstone not yet
    'teardown_before_check',  # tombstone written, markers not checked
    'teardown_before_json',   # markers and truth checked, json not removed
    'child_before_marker',    # child registration about to write its marker
    'finish_before_release',  # a request's tag reconciled, pending still on
    'rebuild_before_convert',  # rebuild found a per-tag-list record, not
                               # yet converted
)

ALL_POINTS = POINTS + PAUSES

_pause = frozenset(p for p in os.environ.get(PAUSE_ENV, '').split(',') if p)
#: What the points do when reached: crash, unless the name is a pause.
_armed = frozenset(p for p in os.environ.get(CRASH_ENV, '').split(',')
                   if p) | _pause
_disarming = threading.Lock()


def point(name):
    """Exit the process here if the crash tests armed ``name``; stop it
    (once per point) if the pause tests did."""
    global _armed
    if not _armed or name not in _armed:
        return
    log = logging.getLogger(__name__)
    if name in _pause:
        with _disarming:
            # once: threads of one process (gc deletes a depth's images in
            # parallel) may meet the point together, and a second stop
            # after the test's SIGCONT would never be continued
            if name not in _armed:
                return
            _armed = _armed - frozenset([name])
        log.error('refcount: pause point %s (pid %d)', name, os.getpid())
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
        log.error('refcount: resumed after pause point %s (pid %d)', name,
                  os.getpid())
        return
    log.error('refcount: crash point %s', name)
    sys.stderr.flush()
    os._exit(137)
