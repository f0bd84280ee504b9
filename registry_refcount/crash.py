"""Named crash points for the crash tests.

``REGISTRY_REFCOUNT_CRASH_AT=<point>[,<point>...]`` makes the process exit
at once (``os._exit``, no clean-up, like ``kill -9``) when it reaches one of
the named points inside the protocols.  Unset, a point costs one set lookup.
"""

from __future__ import absolute_import, unicode_literals

import logging
import os
import sys

ENV = 'REGISTRY_REFCOUNT_CRASH_AT'

#: Every point the protocols name, in the order a tag write meets them.
POINTS = (
    'after_intent',           # intent written, pending marker not yet
    'after_pending',          # pending marker written
    'after_child_marker',     # child registered, image json not yet stored
    'after_tag_reference',    # new tag marker added, old one still there
    'before_ledger',          # old marker removed, ledger not yet written
    'after_tombstone',        # tombstone written, files still there
    'after_json_removed',     # json removed, other files still there
    'between_cascade_steps',  # an image torn down, its parent not visited
    'before_finalize',        # parent visited, tombstone/journal remain
)

_armed = frozenset(p for p in os.environ.get(ENV, '').split(',') if p)


def point(name):
    """Exit the process here if the crash tests armed ``name``."""
    if _armed and name in _armed:
        logging.getLogger(__name__).error('refcount: crash point %s', name)
        sys.stderr.flush()
        os._exit(137)
