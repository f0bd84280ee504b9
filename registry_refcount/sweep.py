"""The garbage-collection sweep: mark from the truth, sweep through the
delete protocol.

1. **Mark**: read every tag file and the ancestry of every tagged image;
   everything on those chains is reachable.  Where an ancestry is damaged
   (missing, malformed, truncated) the chain is followed through the json
   parents instead (:mod:`.damage`), and the damage reported.  Only a tag
   that cannot be read - it could name any image - or tags that cannot be
   listed stop the sweep from deleting anything.
2. **Repair** each tag's reference: ledger and marker equal the tag file.
3. **Candidates**: every other image, as old as the newest of the
   registry's files in its folder (json, layer, ``_inprogress``...), on
   the storage's clock: an orphan pushed months ago goes at the first gc
   after install, and a dry run reports what a real run deletes now.
4. **Sweep**: candidates older than the grace period, deepest first, whose
   markers are all stale (a tag that names another image, a pending write
   with no intent, a child that is itself being swept or never stored and
   older than the grace period) lose those markers and are deleted through
   the delete protocol, which cascades up to their parents.  Kept, and
   reported with the damage: a damaged candidate and its chain, what the
   records name as the parent of an image whose parent the truth cannot
   say, and a candidate whose deletion would cascade into a damaged
   image.

Only candidates are read beyond the mark, so a sweep costs about one read
per tag and per tagged chain plus a listing of ``images/``.
"""

from __future__ import absolute_import, unicode_literals

import logging

from docker_registry.core import exceptions

from . import damage as damage_mod
from . import layout
from . import locks
from . import protocols
from . import purge
from . import records
from . import recovery
from . import trash
from . import truth

logger = logging.getLogger(__name__)


def sweep(ctx, grace_period, dry_run=False, jobs=8, now=None,
          progress=truth.no_progress, in_flight_age=None):
    """Run one sweep; returns a report dict (JSON-serialisable).  Ages are
    measured on the storage's clock (``now``: :func:`.records.now`), the
    one every host agrees on."""
    now = records.now(ctx.store) if now is None else now
    # gc's deletions are final: what is unreachable past the grace period
    # never was in the undo window, or waited it out (the purge's)
    ctx = ctx._replace(undo_window=0)
    # a child push whose json has not come yet is in flight this long at
    # least, whatever the grace period (a parent gone under it breaks the
    # chain the push then tags)
    in_flight_age = max(grace_period, in_flight_age or 0)
    report = {'dry_run': bool(dry_run), 'grace_period': grace_period,
              'tags': 0, 'images': 0, 'reachable': 0, 'candidates': 0,
              'deleted': [], 'kept_young': 0, 'young': [],
              'kept_referenced': 0, 'gone_meanwhile': 0,
              'repaired': [], 'errors': [], 'bytes_freed': 0,
              'damaged': [], 'kept_damaged': 0, 'stopped': None,
              'kept_trash': 0, 'purged': 0, 'trash_errors': []}

    with truth.workers(jobs) as pool:
        return _sweep(ctx, grace_period, dry_run, now, progress, report,
                      pool, in_flight_age)


def _sweep(ctx, grace_period, dry_run, now, progress, report, pool,
           in_flight_age):
    """The sweep proper, its reads on ``pool`` (one for the whole sweep:
    see :func:`truth.workers`)."""
    store = ctx.store
    # 0. deletions whose process died: finished (or cancelled) first, so
    # that the images they tombstoned are what they are
    if not dry_run:
        finished = {'deletions_finished': 0, 'deletions_waiting': 0,
                    'errors': report['errors']}
        recovery.finish_deletions(ctx, None, now, finished)
        # writes the extension did not see: registered first, so that the
        # deletions below need not each look for them (gap.claims)
        recovery.catch_up(ctx, finished)
        report['caught_up'] = finished['caught_up']
        # what waited out its undo window goes as it would online
        purged = purge.purge(ctx, now=now)
        report['purged'] = len(purged['purged'])
        report['bytes_freed'] += purged['bytes_freed']
        # (apart: a trash record that cannot be read keeps its image, and
        # stops nothing else)
        report['trash_errors'] = purged['errors']
    trashed = set(trash.entries(store))
    # 1. mark (and 2. repair tag references), a batch of tags at a time
    ends = damage_mod.Ends(store)
    damages = {}
    reachable = _mark(ctx, pool, progress, report, dry_run, ends, damages)
    report['reachable'] = len(reachable)

    # 3. candidates
    unreachable = []
    for name in records.listing(store, layout.IMAGES):
        if layout.valid_id(name):
            report['images'] += 1
            if truth.compact(name) not in reachable:
                unreachable.append(name)
    del reachable
    report['candidates'] = len(unreachable)
    if not dry_run:
        # the first sightings of versions before 0.2, no longer read
        records.remove(store, layout.CANDIDATES)
    if report['stopped']:
        report['damaged'] = _damage_report(damages)
        logger.error('refcount: gc deletes nothing: %s (%s)',
                     report['stopped'], report['errors'])
        return report
    written = dict(zip(unreachable, truth.pool_map(
        lambda i: last_written(store, i), unreachable,
        tick=progress('ages', len(unreachable)), pool=pool)))
    ripe, young = [], []
    for image in unreachable:
        if image in trashed and trash.waiting(store, image, now):
            report['kept_trash'] += 1    # restorable: the purge's
            continue
        age = now - written[image]
        if age >= grace_period:
            ripe.append(image)
        else:
            young.append({'image': image, 'age': round(age, 1),
                          'eligible_in': round(grace_period - age, 1)})
    report['young'] = sorted(young, key=lambda y: y['eligible_in'])
    report['kept_young'] = len(young)
    infos = dict(zip(ripe, truth.pool_map(
        lambda i: _candidate(store, i, ends), ripe,
        tick=progress('candidates', len(ripe)), pool=pool)))
    protected = _protect(store, infos, damages, ends)
    report['damaged'] = _damage_report(damages)
    for d in report['damaged']:
        logger.error('refcount: damaged record on %s: %s; kept: %s',
                     d['image'], d['problem'], ', '.join(d['protects']))

    # 4. sweep, deepest first, so children go before their parents: a
    # level of one depth at a time, its images in parallel (none is
    # another's ancestor; cascades that meet on a parent take turns at its
    # lock, as concurrent online deletes do)
    doomed, torn = set(), set()
    tick = progress('deleting', len(ripe))
    for depth in sorted(set(infos[i]['depth'] for i in ripe), reverse=True):
        level = []
        for image in sorted(i for i in ripe if infos[i]['depth'] == depth):
            if image in protected:
                report['kept_damaged'] += 1
                tick()
                continue
            stale, live = _judge(store, infos[image], doomed, now,
                                 in_flight_age)
            if live:
                report['kept_referenced'] += 1
                tick()
                continue
            doomed.add(image)
            level.append((image, stale, 'no tag reaches it, and it was last '
                          'written %s ago' % duration(now - written[image])))
        if not dry_run:
            for torn_here, error in truth.pool_imap(
                    lambda job: _collect(ctx, job, torn, in_flight_age, now),
                    level, pool=pool):
                torn.update(torn_here)
                if error:
                    report['errors'].append(error)
        for image, _, reason in level:
            tick()
            if dry_run or image in torn:  # (by its own collect or a child's)
                report['deleted'].append({'image': image, 'bytes': infos[
                    image]['size'], 'reason': reason})
                report['bytes_freed'] += infos[image]['size']
                continue
            doomed.discard(image)
            # referenced again since the mark (a new tag, a new child), or
            # deleted meanwhile by the online path: not this sweep's
            if store.exists(layout.image_file(image, 'json')):
                report['kept_referenced'] += 1
            else:
                report['gone_meanwhile'] += 1
    return report


def _collect(ctx, job, torn, in_flight_age, now):
    """One candidate of a level (on the sweep's pool): its stale markers
    dropped, then the delete protocol.  ``(images torn down, error)``;
    nothing if a child's cascade already took it."""
    image, stale, reason = job
    if image in torn:
        return (), None
    try:
        for marker, key in stale:
            protocols.drop_stale_marker(ctx, image, marker, in_flight_age,
                                        key, now)
        return protocols.collect(ctx, image, reason), None
    except (locks.LockTimeout, protocols.BadInput) as e:
        return (), '%s: %s' % (image, e)


def last_written(store, image):
    """When the registry last wrote to ``image``'s folder, on the storage's
    clock: its newest own file, else (the folder holds the extension's
    records alone) their newest, else 0 (an empty folder: nothing in it
    to wait for)."""
    folder = layout.image_dir(image)
    return (records.newest_stamp(store, folder, layout.registry_entry) or
            records.newest_stamp(store, folder) or 0.0)


def duration(seconds):
    """``seconds`` in words an operator reads at a glance: '45s', '3m',
    '5h', '12d'."""
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= 2 * size:
            return '%d%s' % (int(round(float(seconds) / size)), unit)
    return '%ds' % max(int(round(seconds)), 0)


# Tags read and chains marked per round of the mark.  Its working set (the
# tag keys, their results, the pool's queued tasks) is a fixed cost of the
# sweep, ~0.5 KB a tag: 1 000 weighed more than the marks of 10 000 images
# (bench part 3).  With one pool for the whole sweep a round costs only the
# wait for its slowest read, small beside 250 tags' reads.
BATCH = 250


def _mark(ctx, pool, progress, report, dry_run, ends, damages):
    """Every image reachable from a tag, as a set of compact ids.

    Tags are read a batch at a time (memory stays proportional to the
    images, not to the tags), each with its ledger entry and marker; a
    chain is read only for a top not already marked (its ancestors then
    are too), and folded into the set as soon as it is read: a batch's
    chains together, as lists of full ids, would weigh ~1.5 MB.  Tag
    references that differ from the truth are repaired.  A chain whose
    ancestry is damaged is walked through the json parents
    (:func:`.damage.walk`), its damage kept in ``damages``.  A tag folder
    that cannot be listed stops the sweep (it deletes nothing), never an
    empty folder."""
    reachable = set()
    try:
        _mark_tags(ctx, pool, progress, report, dry_run, reachable, ends,
                   damages)
    except EnvironmentError as e:
        _stop(report, 'the mark could not read the tags: %s' % e,
              'the tags could not all be listed')
    if report['errors'] and not report['stopped']:
        report['stopped'] = ('work before the sweep failed (see the '
                             'errors): what it left may be needed')
    return reachable


def _stop(report, error, why):
    """An error that could concern any image: the sweep deletes nothing,
    and ``stopped`` says why (the first reason)."""
    report['errors'].append(error)
    report['stopped'] = report['stopped'] or why


def _mark_tags(ctx, pool, progress, report, dry_run, reachable, ends,
               damages):
    """The mark proper (see :func:`_mark`), into ``reachable``."""
    store = ctx.store
    tick = progress('tags')
    for batch in truth.batches(truth.iter_tags(store), BATCH):
        found = truth.pool_map(lambda key: _tag(store, key), batch,
                               tick=tick, pool=pool)
        tops = set()
        for key, (top, error, stale_reference) in zip(batch, found):
            report['tags'] += 1
            if error:
                _stop(report, error, 'tag %s cannot be read: it could name '
                      'any image, so nothing is deleted until it is pushed '
                      'again or deleted' % key.display)
            if top is None:
                continue
            if truth.compact(top) not in reachable:
                tops.add(top)
            if stale_reference and not dry_run:
                _repair_tag(ctx, key, top, report)
        for chain, found in truth.pool_imap(
                lambda top: damage_mod.walk(store, top, ends), sorted(tops),
                pool=pool):
            reachable.update(truth.compact(i) for i in chain)
            _add_damages(damages, found)


def _add_damages(damages, found):
    """Fold damaged records into ``{image: Damage}`` (walks that share a
    chain meet the same damage)."""
    for damage in found:
        damages.setdefault(damage.image, damage)


def _damage_report(damages):
    return [damages[i].as_dict() for i in sorted(damages)]


def _tag(store, key):
    """``(image, error, reference differs from the truth)`` of one tag."""
    try:
        image = protocols.read_tag(store, key)
    except protocols.BadInput as e:
        return None, str(e), False
    if image is None:
        return None, None, False
    stale = (protocols.ledger_entry(store, key) != (image, []) or
             not store.exists(layout.marker_path(image, key.marker)))
    return image, None, stale


def _repair_tag(ctx, key, image, report):
    """Reconcile a tag whose reference differs from the truth, under an
    intent of its own (a gc that dies in it leaves the images it touched
    to recovery); the marker goes on the image the tag names *then*,
    which the reconcile reads again (``image``, read earlier, may be
    stale by now)."""
    try:
        protocols.reconcile_recorded(ctx, key)
        report['repaired'].append(key.display)
    except (locks.LockTimeout, protocols.BadInput) as e:
        report['errors'].append('%s: %s' % (key.display, e))


def _candidate(store, image, ends):
    """What the sweep needs of one candidate: depth, size, markers, its
    ancestors (compact ids: is a damaged image among them?) and whether
    its ancestry is whole (``damaged``: it is not)."""
    ancestry, problem = damage_mod.read_chain(store, image, ends)
    try:
        size = store.get_size(layout.image_file(image, 'layer'))
    except (exceptions.FileNotFoundError, OSError):
        size = 0
    return {'id': image, 'depth': len(ancestry or ()), 'size': size,
            'ancestors': tuple(truth.compact(i) for i in ancestry or ())[1:],
            'damaged': problem is not None and damage_mod.stored(store,
                                                                 image),
            'markers': list(records.markers(store, image)),
            'legacy': records.legacy_references(store, image) is not None}


def _protect(store, infos, damages, ends):
    """The candidates the damaged records could decide, never deleted by
    this sweep; each one added to the ``protects`` of its damage:

    * a damaged candidate, and its chain walked through the json parents;
    * where a damaged image's parent is unknown to the truth: the
      candidates whose records name it as a child (``child-<id>``, put on
      its parent before its json was stored), with their chains;
    * a candidate whose deletion would cascade into a damaged candidate
      (one of its ancestors): the cascade deletes a parent that lost its
      last child, and a damaged record must never be deleted on its word.

    Walks go on until no new damage turns up (a chain walked may hold
    more)."""
    chains, named_by, resolved = {}, {}, set()
    pending = [i for i in sorted(infos) if infos[i]['damaged']]
    pending += _named_parents(infos, damages, resolved, named_by)
    while pending:
        image = pending.pop()
        if image not in chains:
            chains[image], found = damage_mod.walk(store, image, ends)
            _add_damages(damages, found)
            pending += _named_parents(infos, damages, resolved, named_by)
        for damage in named_by.get(image, []):
            _also_protects(damage, chains[image])
    protected = set(i for chain in chains.values() for i in chain)
    _protect_descendants(infos, damages, protected)
    return protected


def _also_protects(damage, chain):
    damage.protects.extend(i for i in chain if i not in damage.protects)


def _named_parents(infos, damages, resolved, named_by):
    """Candidates whose records name an image of unknown parent as their
    child: what that image's parent may be (``named_by``: for which
    damage).  Each such image once (``resolved``)."""
    found = []
    for damage in sorted(damages.values(), key=lambda d: d.image):
        if not damage.unknown or damage.image in resolved:
            continue
        resolved.add(damage.image)
        marker = layout.child_marker(damage.image)
        for image in sorted(infos):
            if marker in infos[image]['markers']:
                named_by.setdefault(image, []).append(damage)
                found.append(image)
    return found


def _protect_descendants(infos, damages, protected):
    """Add the candidates whose cascade would reach a damaged candidate."""
    damaged = dict((truth.compact(i), d) for i, d in damages.items()
                   if i in protected)
    for image in sorted(infos):
        hit = [damaged[a] for a in infos[image]['ancestors'] if a in damaged]
        if hit and image not in protected:
            protected.add(image)
            for damage in hit:
                _also_protects(damage, [image])


def _judge(store, info, doomed, now, in_flight_age):
    """Split a candidate's markers into stale ones ``[(marker, key or
    None)]`` and live ones.  What cannot be read counts as live."""
    stale, live = [], []
    if info['legacy']:
        live.append('legacy _references file')
    for marker in info['markers']:
        try:
            kind, value = layout.check_marker(marker)
        except layout.InvalidName:
            live.append(marker)
            continue
        if kind == 'tag':
            key = protocols.marker_tag(store, info['id'], marker)
            (stale if key is not None else live).append((marker, key))
        elif kind == 'pending':
            if protocols.pending_stale(store, info['id'], marker,
                                       in_flight_age, now):
                stale.append((marker, None))
            else:
                live.append(marker)
        elif kind == 'hold':
            if protocols.in_flight(store, info['id'], marker,
                                   protocols.HOLD_AGE, now):
                live.append(marker)
            else:
                stale.append((marker, None))
        elif value in doomed:
            pass                     # goes with the child's deletion
        elif protocols.child_marker_stale(store, info['id'], value,
                                          in_flight_age, now):
            stale.append((marker, None))
        else:
            live.append(marker)      # a child that is not being swept
    return stale, live
