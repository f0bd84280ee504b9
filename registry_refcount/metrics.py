"""What the registry holds and what the extension did, as one set of
facts: ``status`` prints them for people, ``metrics`` in Prometheus's
text format (for node_exporter's textfile collector; ``metrics_file``
keeps a file current from the workers' background loop).

The facts come from one walk of the truth (:func:`.invariants.check`),
the trash, and the run history; counters are sums over the runs the
history keeps (the newest :data:`.runs.LIMIT`): when old runs are
dropped a counter goes down, which Prometheus reads as a reset.  What
the workers' requests do - deletions online, locks not had - comes from
their counters (:mod:`.tally`).
"""

from __future__ import absolute_import, unicode_literals

import os
import tempfile

from . import invariants
from . import layout
from . import protocols
from . import purge
from . import records
from . import runs
from . import tally
from . import truth


def facts(store, jobs=8, progress=truth.no_progress):
    """``(report, doc)``: the invariants' report and the facts."""
    rep = invariants.check(store, jobs, progress)
    referenced = sum(1 for i in rep.images
                     if next(iter(records.markers(store, i)), None))
    sizes = dict(zip(rep.images, truth.pool_map(
        lambda i: protocols.layer_size(store, i) or 0, list(rep.images),
        jobs)))
    trashed, _ = purge.listing(store)
    now = records.now(store)
    ages = [now - s for s in (records.stamp(store, layout.intent(i))
                              for i in rep.intents) if s]
    history = runs.recent(store)
    doc = {
        'storage': records.backend(store).where(),
        'initialised': protocols.is_initialised(store),
        'images': len(rep.images),
        'tags': len(rep.tags),
        'tagged_tops': len(set(rep.tags.values())),
        'reachable': len(rep.reachable),
        'referenced': referenced,
        'orphan_candidates': len(rep.unreachable),
        'layer_bytes': sum(sizes.values()),
        'reclaimable_bytes': sum(sizes[i] for i in rep.unreachable),
        'pending_intents': len(rep.intents),
        'oldest_intent_seconds': round(max(ages), 1) if ages else 0,
        'unfinished_deletions': len(rep.journal),
        'quarantined': rep.unreadable,
        'consistent': rep.consistent,
        'trash_images': sum(e['images'] for e in trashed),
        'trash_bytes': sum(e['bytes'] for e in trashed),
        'next_purge_in': min([e['in'] for e in trashed] or [None]),
        'last_gc': runs.last(history, 'gc'),
        'last_recovery': runs.last(history, 'recover'),
        'last_error': runs.last(history, failed=True),
        'runs': _totals(history),
        'counters': tally.totals(store),
    }
    return rep, doc


def _totals(history):
    """``{command: {deleted, bytes_freed, errors, runs}}`` over the kept
    runs (recovery's purges apart, as ``purge``)."""
    totals = {}
    for run in history:
        counts = run.get('counts') or {}
        command = run.get('command')
        entry = totals.setdefault(command, {'deleted': 0, 'bytes_freed': 0,
                                            'errors': 0, 'runs': 0})
        entry['runs'] += 1
        entry['errors'] += counts.get('errors', 0) + counts.get(
            'trash_errors', 0)
        if command == 'recover':
            purged = totals.setdefault('purge', {
                'deleted': 0, 'bytes_freed': 0, 'errors': 0, 'runs': 0})
            purged['deleted'] += counts.get('purged', 0)
            purged['bytes_freed'] += counts.get('bytes_freed', 0)
            entry['deleted'] += counts.get('deletions_finished', 0)
        else:
            entry['deleted'] += counts.get('deleted', 0) if command != \
                'purge' else counts.get('purged', 0)
            entry['bytes_freed'] += counts.get('bytes_freed', 0)
    return totals


#: ``(name, type, help, fact)``: one metric per fact of :func:`facts`.
GAUGES = (
    ('images', 'images in storage', 'images'),
    ('tags', 'tag files', 'tags'),
    ('tagged_tops', 'images a tag names', 'tagged_tops'),
    ('reachable_images', 'images a tag reaches', 'reachable'),
    ('layers_bytes', 'bytes in image layers', 'layer_bytes'),
    ('reclaimable_bytes', 'layer bytes no tag reaches (gc frees them)',
     'reclaimable_bytes'),
    ('trash_images', 'images waiting out the undo window', 'trash_images'),
    ('trash_bytes', 'layer bytes waiting out the undo window',
     'trash_bytes'),
    ('pending_intents', 'tag writes and deletes not finished',
     'pending_intents'),
    ('oldest_intent_age_seconds', 'age of the oldest unfinished intent',
     'oldest_intent_seconds'),
    ('unfinished_deletions', 'deletions a process left (recovery finishes '
     'them)', 'unfinished_deletions'),
)


def render(doc):
    """The facts in Prometheus's text exposition format."""
    out = []

    def metric(name, kind, text, samples):
        name = 'registry_refcount_' + name
        out.append('# HELP %s %s' % (name, text))
        out.append('# TYPE %s %s' % (name, kind))
        for labels, value in samples:
            shown = ','.join('%s="%s"' % kv for kv in sorted(labels.items()))
            out.append('%s%s %s' % (name, '{%s}' % shown if shown else '',
                                    _number(value)))
    for name, text, fact in GAUGES:
        metric(name, 'gauge', text, [({}, doc[fact])])
    metric('quarantined_records', 'gauge', 'records that cannot be read',
           [({}, len(doc['quarantined']))])
    metric('initialised', 'gauge', '1 once rebuild initialised the records '
           '(it deletes only then)', [({}, int(bool(doc['initialised'])))])
    by = sorted(doc['runs'].items())
    counted = doc['counters']
    online = {'deleted': counted.get('deleted_online', 0),
              'bytes_freed': counted.get('freed_bytes_online', 0),
              'errors': 0}
    by = sorted(by + [('online', online)])
    metric('deletions_total', 'counter', 'images deleted, by kind of run '
           '(over the run history kept)',
           [({'by': k}, v['deleted']) for k, v in by])
    metric('freed_bytes_total', 'counter', 'layer bytes freed, by kind of '
           'run (over the run history kept)',
           [({'by': k}, v['bytes_freed']) for k, v in by])
    metric('run_errors_total', 'counter', 'errors the runs met',
           [({'by': k}, v['errors']) for k, v in by if k != 'online'])
    metric('lock_timeouts_total', 'counter', 'locks the workers could not '
           'have in time (the work went to recovery, or a tag write was '
           'refused with 503)', [({}, counted.get('lock_timeouts', 0))])
    for what, key in (('gc', 'last_gc'), ('recovery', 'last_recovery')):
        run = doc[key]
        metric('last_%s_timestamp_seconds' % what, 'gauge', 'when the last '
               '%s ended (Unix seconds; 0: none recorded)' % what,
               [({}, run['ended'] if run else 0)])
    return '\n'.join(out) + '\n'


def _number(value):
    return ('%d' % value if float(value) == int(value) else
            '%.3f' % value)


def write(path, text):
    """Replace the file at ``path`` atomically (a collector never reads a
    half-written file)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix='.metrics-', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.chmod(temp, 0o644)
        os.rename(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
