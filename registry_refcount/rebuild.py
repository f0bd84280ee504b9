"""Rebuild the records from the truth: the path onto an existing registry,
and the way back when records are lost or corrupted.

Safe while the registry serves traffic: every write goes through the same
locks as the online protocols, and it only *adds* what the truth calls for
(a union, never an overwrite), except the per-tag-list files of the earlier
extension, which it converts (the truth decides; then the old file goes,
and only that file: never the folder of markers beside or after it).
Stale markers are left to ``verify --repair`` and gc.  Every step is
idempotent, and a checkpoint records finished phases, so an interrupted
rebuild resumes where it stopped.  The registry is marked initialised -
deletions enabled - only at the end.
"""

from __future__ import absolute_import, unicode_literals

import logging
import time

from . import crash
from . import layout
from . import locks
from . import protocols
from . import records
from . import truth

logger = logging.getLogger(__name__)
CHECKPOINT = layout.PREFIX + '/rebuild'
PHASES = ('children', 'tags')


def rebuild_exclusively(ctx, jobs=8, progress=truth.no_progress):
    """:func:`rebuild` under the ``rebuild`` lock; None if another
    process holds it (within the lock timeout).  The lock spares the
    work twice over; a rebuild that runs twice all the same (a lock held
    twice: see the fault model) loses nothing either."""
    lock = ctx.locks.named('rebuild')
    try:
        lock.__enter__()
    except locks.LockTimeout:   # (only the lock's: not a timeout inside)
        return None
    try:
        return rebuild(ctx, jobs, progress)
    finally:
        lock.__exit__(None, None, None)


def rebuild(ctx, jobs=8, progress=truth.no_progress):
    store = ctx.store
    report = {'resumed_after': None, 'legacy_converted': 0,
              'child_markers_added': 0, 'tags_reconciled': 0,
              'errors': [], 'initialised': False, 'damaged': []}
    try:
        done = (records.read(store, CHECKPOINT) or {}).get('done', [])
    except records.Unreadable:
        done = []
    if done:
        report['resumed_after'] = done[-1]
    tags, bad = truth.read_tags(store, jobs, progress)
    report['errors'].extend(sorted(bad.values()))
    if 'children' not in done:
        images = truth.read_images(store, jobs, progress=progress)
        report['damaged'] = truth.damaged_ancestries(images)
        errors = len(report['errors'])
        _children(ctx, images, tags, report, jobs, progress)
        if len(report['errors']) == errors:   # else read it all again
            done = _checkpoint(store, done, 'children')
    if 'tags' not in done:
        keys = set(tags)
        for ns, repo in records.repositories(store, layout.LEDGER):
            keys.update(protocols.ledger_tags(store, ns, repo))
        # in parallel, as the registry's own tag requests would run them
        # (the serial loop took 6.5 s of a 17 s rebuild at 3 240 tags under
        # cProfile; the parallel one is not yet measured apart)
        for error in truth.pool_map(lambda key: _reconcile(ctx, key),
                                    sorted(keys), jobs,
                                    progress('reconcile', len(keys))):
            if error:
                report['errors'].append(error)
            else:
                report['tags_reconciled'] += 1
        done = _checkpoint(store, done, 'tags')
    if not report['errors']:
        protocols.set_initialised(store)
        records.remove(store, CHECKPOINT)
        report['initialised'] = True
    return report


def _reconcile(ctx, key):
    """One tag's reference made the truth's; an error, or None."""
    try:
        # (the marker goes on the image the tag names now, which the
        # reconcile reads: not on the one read at the start)
        protocols.reconcile_tag(ctx, key)
    except (protocols.BadInput, locks.LockTimeout) as e:
        return '%s: %s' % (key.display, e)


def _children(ctx, images, tags, report, jobs, progress):
    """Convert per-tag-list files, then add every missing child marker."""
    store = ctx.store
    children = {}
    for img in images.values():
        if img.parent_unknown:      # damage elsewhere is only reported
            report['errors'].append(
                '%s: %s; its parent cannot be known, so no child marker '
                'holds it: deletions stay off until its json or ancestry '
                'is repaired, or it is removed' % (img.id, img.problem))
        if img.has_json and img.parent:
            children.setdefault(img.parent, []).append(img.id)
    tagged = {}
    for key, image in tags.items():
        tagged.setdefault(image, []).append(key)

    def one(image_id):
        added = 0
        legacy = records.legacy_references(store, image_id) is not None
        if legacy:
            crash.point('rebuild_before_convert')
        with ctx.locks.image(image_id):
            if legacy:
                records.move_legacy_aside(store, image_id)
                for key in tagged.get(image_id, []):
                    records.write_marker(store, image_id, key.marker,
                                         str(key))
            existing = set(records.markers(store, image_id))
            for child in children.get(image_id, []):
                marker = layout.child_marker(child)
                if marker not in existing:
                    records.write_marker(store, image_id, marker)
                    added += 1
            if legacy:
                _remove_legacy(store, image_id)
        return legacy, added

    ids = sorted(set(images) & (set(children) | set(
        i for i in images if records.legacy_references(store, i)
        is not None)))
    for legacy, added in truth.pool_map(one, ids, jobs,
                                        progress('children', len(ids))):
        report['legacy_converted'] += int(legacy)
        report['child_markers_added'] += added


def _remove_legacy(store, image_id):
    """Once the markers the truth calls for are written: the record goes.
    Only the file: a rebuild that runs twice (a lock held twice) may come
    here long after another converted the image and markers were added,
    and the folder of markers is not its to remove."""
    logger.warning('refcount: converted the per-tag-list record of %s',
                   image_id)
    records.remove_legacy(store, image_id)


def _checkpoint(store, done, phase):
    done = list(done) + [phase]
    records.write(store, CHECKPOINT, {'done': done, 'at': time.time()})
    return done
