"""Recovery: finish what crashed requests left half done.

Every tag write or delete leaves an intent in ``extensions/refcount/intents/``
until its work is complete, and every deletion a journal entry in
``extensions/refcount/deleting/`` until its cascade step is done.  Recovery
therefore only lists those two small folders - it never walks the images -
and reruns the idempotent protocols:

* intents whose work is abandoned (:func:`judge`: their process is
  gone, or - on another host - they are older than ``intent_timeout`` on
  the storage's clock): reconcile their tags, release their pending
  marker, drop them;
* journal entries of abandoned deletions, likewise: finish (or cancel)
  the deletion and its cascade step;
* quarantined records (noted in ``extensions/refcount/quarantine/`` when
  first found unreadable): rebuild them from the truth;
* on local storage, the spare files of earlier versions.

It runs at registry start-up in the background (one process at a time,
under a lock), periodically after that, and from ``registry-refcount
recover``.
"""

from __future__ import absolute_import, unicode_literals

import logging

from . import gap
from . import layout
from . import locks
from . import owner
from . import protocols
from . import purge
from . import records
from . import settings
from . import tally

logger = logging.getLogger(__name__)


def recover(ctx, intent_timeout, now=None):
    """Run recovery once; returns a report dict.  ``now``: on the
    storage's clock (:func:`.records.now`)."""
    store = ctx.store
    now = records.now(store) if now is None else now
    report = {'intents_finished': 0, 'intents_waiting': 0,
              'deletions_finished': 0, 'deletions_waiting': 0,
              'left': [], 'unreadable': [], 'errors': [], 'started': now}
    # deletions first: an intent's reconcile may need an image that an
    # abandoned deletion holds tombstoned
    finish_deletions(ctx, intent_timeout, now, report)
    for intent_id in list(records.listing(store, layout.INTENTS)):
        if layout.is_scratch(intent_id):
            continue
        try:
            path = layout.intent(intent_id)
        except layout.InvalidName as e:
            report['errors'].append(str(e))
            continue
        try:
            doc = records.read(store, path)
        except records.Unreadable as e:
            report['unreadable'].append(e.path)
            continue
        if doc is None:
            continue
        try:
            protocols.parse_intent(doc)
        except protocols.BadInput as e:
            records.note_unreadable(store, path, str(e))
            report['unreadable'].append(path)
            continue
        gone, why = judge(store, path, doc, intent_id, now, intent_timeout)
        if not gone:
            report['intents_waiting'] += 1
            report['left'].append({'kind': 'intent', 'id': intent_id,
                                   'why': why})
            continue
        try:
            protocols.finish_intent(ctx, intent_id, doc, recovered=True)
            report['intents_finished'] += 1
        except Exception as e:  # one intent never stops the others
            logger.error('refcount: recovery could not finish intent %s: %s',
                         intent_id, e)
            report['errors'].append('%s: %s' % (intent_id, e))
    report['rebuilt'] = _rebuild_quarantined(ctx, intent_timeout, now,
                                             report)
    catch_up(ctx, report)
    report['purge'] = purge.purge(ctx, dry_run=ctx.dry_run, now=now)
    if not ctx.dry_run:
        tally.fold(store)
    report['errors'] += report['purge']['errors']
    records.remove_old_spares(store)
    if eventful(report):
        logger.warning('refcount: recovery: %s', summary(report))
    return report


def eventful(report):
    """Did a recovery round do (or meet) anything?"""
    return bool(report['purge']['purged'] or any(report[k] for k in (
        'intents_finished', 'deletions_finished', 'rebuilt', 'caught_up',
        'errors', 'unreadable')))


def summary(report):
    """A recovery's report in one line, for the log."""
    parts = ['%d intent(s) and %d deletion(s) finished' % (
        report['intents_finished'], report['deletions_finished'])]
    for key, what in (('rebuilt', 'record(s) rebuilt'),
                      ('caught_up', 'unseen write(s) registered')):
        if report.get(key):
            parts.append('%d %s' % (report[key], what))
    purged = report.get('purge') or {}
    if purged.get('purged'):
        parts.append('%d image(s) purged from the trash (%d bytes)' % (
            len(purged['purged']), purged['bytes_freed']))
    for d in report.get('left', []):
        parts.append('left %s %s: %s' % (d['kind'], d['id'], d['why']))
    if report['unreadable']:
        parts.append('unreadable: %s' % ', '.join(report['unreadable']))
    if report['errors']:
        parts.append('errors: %s' % '; '.join(report['errors']))
    return '; '.join(parts)


def catch_up(ctx, report):
    """Register the references of writes made without the extension
    (:func:`.gap.catch_up`), counting into ``report``."""
    try:
        found = gap.catch_up(ctx)
    except Exception as e:    # the storage may be failing, or full
        found = {'registered': 0, 'errors': ['catch-up: %s' % e]}
    report['caught_up'] = found['registered']
    report['errors'].extend(found['errors'])


def finish_deletions(ctx, intent_timeout, now, report):
    """Finish (or cancel) every abandoned deletion (see :func:`judge`;
    ``intent_timeout`` None: only those whose process is known to be
    gone), counting into ``report``."""
    store = ctx.store
    for name in list(records.listing(store, layout.JOURNAL)):
        try:
            image_id, token = layout.parse_journal(name)
        except layout.InvalidName:
            continue
        path = layout.journal(image_id, token)
        try:
            doc = records.read(store, path) or {}
        except records.Unreadable:
            doc = {}
        gone, why = judge(store, path, doc, token, now, intent_timeout)
        if not gone:
            report['deletions_waiting'] += 1
            report.setdefault('left', []).append(
                {'kind': 'deletion', 'id': image_id, 'why': why})
            continue
        try:
            if protocols.finish_deletion(ctx, image_id, token):
                report['deletions_finished'] += 1
        except Exception as e:  # one deletion never stops the others
            logger.error('refcount: recovery could not finish deletion of '
                         '%s: %s', image_id, e)
            report['errors'].append('%s: %s' % (image_id, e))


def judge(store, path, doc, token, now, timeout):
    """``(abandoned, why)`` for the work the record at ``path`` stands
    for.  Its owner decides where it can be seen - a process of this host
    that is gone, or work this process dropped - and its age on the
    storage's clock (``now``) elsewhere: another host's, or a record of
    an earlier version.  A stalled owner is alive; no host's own clock is
    read."""
    who = doc.get('owner') if isinstance(doc.get('owner'), dict) else None
    alive = owner.alive(who, token)
    if alive is not None:
        return not alive, ('its process %s on this host is %s' % (
            who.get('pid'), 'alive' if alive else 'gone'))
    if timeout is None:
        return False, ('written on another host or by an earlier version: '
                       'finished once older than intent_timeout')
    # below this, a live tag write of another host would count as
    # abandoned (the CLI and the config refuse less; the API too, here)
    timeout = max(timeout, settings.MIN_INTENT_TIMEOUT)
    written = records.stamp(store, path)
    if written is None:           # a driver that tells no time
        try:
            written = float(doc.get('at', 0))
        except (TypeError, ValueError):
            written = 0.0
    age = now - written
    where = ('host %s' % who.get('host', '?').split('/')[0] if who else
             'an earlier version')
    return age >= timeout, ('written by %s %ds ago: finished once %ds old '
                            '(intent_timeout)' % (where, age, timeout))


def _rebuild_quarantined(ctx, intent_timeout, now, report):
    """Rebuild unreadable records from the truth: a ledger entry from its
    tag file; an intent, once its request is surely over, is dropped (its
    pending marker, if any, is then stale: verify --repair and gc remove
    it); the candidates list starts again.  The state is left to
    ``rebuild`` (until then nothing is deleted)."""
    store = ctx.store
    rebuilt = 0
    for entry, doc in records.quarantined(store):
        path = doc['path']
        try:
            records.read(store, path)
            readable = True
        except records.Unreadable:
            readable = False
        try:
            if readable:
                pass
            elif path.startswith(layout.LEDGER + '/'):
                key = layout.TagKey(*path[len(layout.LEDGER) + 1:]
                                    .split('/'))
                protocols.rewrite_ledger(ctx, key)
            elif path.startswith(layout.INTENTS + '/'):
                if now - (records.stamp(store, entry) or now) < \
                        intent_timeout:
                    continue
                records.remove(store, path)
            elif path == layout.CANDIDATES:
                records.remove(store, path)
            else:
                report['unreadable'].append(path)
                continue
        except (protocols.BadInput, layout.InvalidName,
                locks.LockTimeout) as e:
            report['errors'].append('%s: %s' % (path, e))
            continue
        records.remove(store, entry)
        rebuilt += 1
    return rebuilt


def recover_exclusively(ctx, lock_provider, intent_timeout, now=None):
    """Recovery under the ``recovery`` lock; None if another process runs
    it right now."""
    try:
        with lock_provider.named('recovery'):
            return recover(ctx, intent_timeout, now)
    except locks.LockTimeout:
        return None
