"""Tag history: every change of a tag that took its reference off an
image, kept for the undo window, so that ``restore`` knows what a tag
named before.

One record per change, ``history/<ns>/<repo>/<ms>-<token>`` = ``{tag,
at, previous, image, why}``: the time on the storage's clock, the image
the tag named before, the one it names now (None: deleted), and what did
it.  A deletion is written from the registry's ``tag_deleted`` signal
(which names the image even when the ledger does not yet); a retag by
the reconcile, just before the tag's marker leaves the old image (a
reconcile run twice writes it twice: harmless, the newest wins).
Pruned by the purge once older than the window.  It is advice for
``restore`` only: nothing is deleted on its word, and a restore checks
everything again.
"""

from __future__ import absolute_import, unicode_literals

import logging
import time

from . import layout
from . import records

logger = logging.getLogger(__name__)


def record(ctx, key, previous, image, why):
    """Note that tag ``key`` moved from ``previous`` to ``image`` (None:
    deleted), because of ``why``."""
    now = records.now(ctx.store)
    name = '%013d-%s' % (int(now * 1000), layout.new_token())
    # ``seq``: this host's clock, which orders two changes within one tick
    # of the storage's (S3 says whole seconds)
    records.write(ctx.store, layout.history_entry(key.namespace,
                                                  key.repository, name), {
        'tag': str(key), 'at': now, 'seq': time.time(), 'previous': previous,
        'image': image, 'why': why, 'by': ctx.by})


def changes(store, namespace, repository):
    """The repository's recorded changes, oldest first - by the storage's
    clock, then the writer's within one tick of it: ``(name, doc)`` (an
    entry that cannot be read is logged and left out)."""
    found = []
    for name in records.stamped(store, layout.history_dir(namespace,
                                                           repository)):
        try:
            doc = records.read(store, layout.history_entry(
                namespace, repository, name))
        except records.Unreadable as e:
            logger.error('refcount: tag history entry %s unreadable: %s',
                         name, e)
            continue
        if doc is not None and isinstance(doc.get('at'), (int, float)):
            found.append((name, doc))
    found.sort(key=lambda entry: (entry[1]['at'], _number(
        entry[1].get('seq')), entry[0]))
    return found


def _number(value):
    return value if isinstance(value, (int, float)) else 0


def repositories(store):
    """``(namespace, repository)`` of every repository with a history."""
    for namespace in records.listing(store, layout.HISTORY):
        if layout.is_scratch(namespace):
            continue
        for repository in records.listing(
                store, '%s/%s' % (layout.HISTORY, namespace)):
            if not layout.is_scratch(repository):
                yield layout.text(namespace), layout.text(repository)


def prune(store, before):
    """Remove the changes older than ``before`` (storage clock); how many
    went."""
    gone = 0
    for namespace, repository in list(repositories(store)):
        try:
            folder = layout.history_dir(namespace, repository)
        except layout.InvalidName:
            continue
        for name in records.stamped(store, folder):
            if int(name[:13]) < before * 1000:
                records.remove(store, layout.history_entry(
                    namespace, repository, name))
                gone += 1
        records.prune(store, folder)
    return gone
