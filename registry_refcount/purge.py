"""The purge: tear down what waited out the undo window in the trash.

Run by every recovery round (so by one worker of one host at a time,
under the ``recovery`` lock), by ``gc`` before its sweep, and by
``registry-refcount purge``.  Each image goes through the ordinary
tear-down (:func:`.protocols.purge`): its tombstone, then no marker, or
it stays - so an image referenced again meanwhile is *rescued*, and its
record dropped.  The tag history older than the window goes with it.
"""

from __future__ import absolute_import, unicode_literals

import logging

from . import audit
from . import history
from . import layout
from . import locks
from . import protocols
from . import records
from . import trash

logger = logging.getLogger(__name__)


def purge(ctx, everything=False, dry_run=False, now=None):
    """Purge the trash's images whose time has come (``everything``: all
    of them).  A report dict: ``purged`` (each torn-down image, its chain
    included), ``rescued``, ``waiting`` (with their due time),
    ``bytes_freed``, ``errors``."""
    store = ctx.store
    now = records.now(store) if now is None else now
    report = {'purged': [], 'rescued': [], 'waiting': [], 'errors': [],
              'bytes_freed': 0, 'dry_run': bool(dry_run)}
    for image, doc in _entries(store, report):
        if not (everything or trash.is_due(doc, now)):
            report['waiting'].append({'image': image, 'due': doc['due'],
                                      'in': round(doc['due'] - now, 1)})
            continue
        if protocols.needed(store, image):
            report['rescued'].append(image)
            if not dry_run:
                trash.forget(store, image)
                audit.event('rescued', image, 'referenced again before '
                            'its purge', by=ctx.by)
            continue
        chain = _chain_sizes(store, image)
        if not chain:                       # gone meanwhile (gc, by hand)
            if not dry_run:
                trash.forget(store, image)
            continue
        if dry_run:
            report['purged'] += [i for i, _ in chain]
            report['bytes_freed'] += sum(size or 0 for _, size in chain)
            continue
        reason = 'its undo window passed (%s)' % doc.get('reason')
        try:
            torn = protocols.purge(ctx, image, reason)
        except (locks.LockTimeout, protocols.BadInput) as e:
            report['errors'].append('%s: %s' % (image, e))
            continue
        sizes = dict(chain)
        report['purged'] += torn
        report['bytes_freed'] += sum(sizes.get(i) or 0 for i in torn)
        if torn or not protocols.needed(store, image):
            trash.forget(store, image)
        else:
            report['rescued'].append(image)
    if ctx.undo_window and not dry_run:     # (gc's context has none)
        history.prune(store, now - ctx.undo_window)
    if report['purged'] or report['errors']:
        # (each deletion is in the audit log; the command and recovery's
        # summary say the totals)
        logger.info('refcount: purge: %d image(s)%s, %d byte(s); %d '
                    'rescued; errors: %s', len(report['purged']),
                    ' would go' if dry_run else ' torn down',
                    report['bytes_freed'], len(report['rescued']),
                    report['errors'] or 'none')
    return report


def _entries(store, report):
    """``(image, record)`` of the trash, unreadable ones reported."""
    for name in trash.entries(store):
        if not layout.valid_id(name):
            report['errors'].append('trash entry %r: not an image id'
                                    % (name,))
            continue
        image = layout.text(name)
        try:
            doc = trash.read(store, image)
        except records.Unreadable as e:
            report['errors'].append('%s: record unreadable (%s); kept'
                                    % (image, e))
            continue
        if doc is None:
            continue
        try:
            doc['due'] = float(doc.get('due'))
        except (TypeError, ValueError):
            report['errors'].append('%s: record has no due time; kept'
                                    % image)
            continue
        yield image, doc


def _chain_sizes(store, image):
    """``[(id, layer bytes)]`` of the image and of the ancestors that go
    with it: each held only by the ``child-`` marker of the one below.
    Empty if the image is gone."""
    if not records.exists(store, layout.image_file(image, 'json')):
        return []
    chain = [(image, protocols.layer_size(store, image))]
    ancestry = protocols.chain_of(store, image)
    for below, parent in zip(ancestry, ancestry[1:]):
        held = list(records.listing(store, layout.references_dir(parent)))
        if held != [layout.child_marker(below)]:
            break
        chain.append((parent, protocols.layer_size(store, parent)))
    return chain


def listing(store, now=None):
    """What the trash holds, for ``registry-refcount trash``: one dict per
    image - its reason, when it goes (``due``, ``in`` seconds), its chain
    and bytes; rescued and gone records are left out."""
    now = records.now(store) if now is None else now
    report = {'errors': []}
    found = []
    named = {}        # image -> the tags that named it, from the history
    for namespace, repository in history.repositories(store):
        for _, change in history.changes(store, namespace, repository):
            named.setdefault(change.get('previous'), set()).add(
                change.get('tag'))
    for image, doc in _entries(store, report):
        if protocols.needed(store, image):
            continue
        chain = _chain_sizes(store, image)
        if not chain:
            continue
        found.append({'image': image, 'reason': doc.get('reason'),
                      'tags': sorted(named.get(image, ())),
                      'due': doc.get('due'), 'at': doc.get('at'),
                      'in': round(max(0, doc['due'] - now), 1),
                      'images': len(chain),
                      'bytes': sum(size or 0 for _, size in chain)})
    return sorted(found, key=lambda e: e['due']), report['errors']
