"""``registry-refcount``: the operator's command.

Reads the registry's own configuration (``DOCKER_REGISTRY_CONFIG``,
``SETTINGS_FLAVOR`` and the ``_env:`` variables, or ``--config`` and
``--flavor``) and works on the same storage through the same driver, with
the same locks, as the registry's extension.

Every command says first which storage it works on.  ``status``,
``verify`` and ``gc --dry-run`` write nothing at all (the storage is
opened read-only, :class:`.records.ReadOnly`).

Exit codes: 0 ok; 1 inconsistent or failed; 2 usage or configuration
error (the wrong storage included); 130 interrupted (Ctrl-C).
"""

from __future__ import absolute_import, print_function, unicode_literals

import argparse
import json
import logging
import os
import re
import sys
import time

from . import audit
from . import durable
from . import invariants
from . import layout
from . import locks
from . import metrics
from . import protocols
from . import purge as purge_mod
from . import records
from . import recovery
from . import restore as restore_mod
from . import retain as retain_mod
from . import runs
from . import settings as settings_mod
from . import sweep
from . import truth
from . import usage
from . import __version__

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    pass


def load(args):
    """(registry config, refcount settings, storage driver)."""
    if args.config:
        os.environ['DOCKER_REGISTRY_CONFIG'] = os.path.abspath(args.config)
    if args.flavor:
        os.environ['SETTINGS_FLAVOR'] = args.flavor
    path = os.environ.get('DOCKER_REGISTRY_CONFIG')
    if not path:
        raise UsageError('no registry config: set DOCKER_REGISTRY_CONFIG or '
                         'pass --config')
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise UsageError('registry config not found: %s' % path)
    os.environ['DOCKER_REGISTRY_CONFIG'] = path
    try:
        from docker_registry.lib import config
        cfg = config.load()
        settings = settings_mod.load(cfg)
        from docker_registry.lib import cache  # noqa: F401 (starts the LRU)
        from docker_registry import storage
        store = storage.load()
    except settings_mod.ConfigError:
        raise
    except Exception as e:
        raise UsageError('cannot open the registry storage: %s' % e)
    return cfg, settings, store


def make_context(settings, store, by, read_only=False):
    """The protocols' context; a command that only reads takes no locks
    (making the lock folder would be a write)."""
    provider = locks.NoLocks() if read_only else settings_mod.make_locks(
        settings, records.local_root(store))
    # what loses its last referrer in a recovery or a restore's retag goes
    # to the trash, as online; gc's and the purge's deletions are final
    window = (settings.undo_window if by in ('recover', 'restore', 'retain')
              else 0)
    return protocols.context(store, provider, settings.dry_run, by, window)


def read_only(args):
    """Does the command promise to write nothing?"""
    return (args.command in ('status', 'trash', 'history', 'metrics',
                             'du') or
            (args.command == 'verify' and not args.repair) or
            (args.command in ('gc', 'purge', 'restore', 'retain') and
             args.dry_run))


def check_target(store, args):
    """:class:`UsageError` unless the storage is a registry's (it holds
    ``images/`` or ``repositories/``, or the extension's state), or
    ``rebuild --init-empty`` starts one: a command pointed at the wrong
    folder or bucket says so, and writes nothing there."""
    where = _where(store)
    root = records.local_root(store)
    init = args.command == 'rebuild' and args.init_empty
    if root is not None and not os.path.isdir(root):
        if os.path.exists(root) or not init:
            raise UsageError('%s: %s (check STORAGE_PATH, --config and '
                             '--flavor)' % (where, 'not a folder' if
                                            os.path.exists(root) else
                                            'no such folder'))
        os.makedirs(root)
    for folder in (layout.IMAGES, layout.REPOSITORIES):
        if next(iter(records.listing(store, folder)), None) is not None:
            return
    if init or records.exists(store, layout.STATE):
        return
    raise UsageError('%s is not a registry: it holds neither images/ nor '
                     'repositories/ (check STORAGE_PATH, --config and '
                     '--flavor; `rebuild --init-empty` starts an empty '
                     'one)' % where)


def progress_factory(enabled):
    """tqdm bars on a terminal, nothing otherwise."""
    if not enabled:
        return truth.no_progress
    try:
        from tqdm import tqdm
    except ImportError:
        return truth.no_progress

    def progress(stage, total=None):
        bar = tqdm(total=total, desc=stage, unit='item', leave=False,
                   file=sys.stderr)

        def tick():
            bar.update(1)
            if total is not None and bar.n >= total:
                bar.close()
        if total == 0:
            bar.close()
        return tick
    return progress


# -- commands --------------------------------------------------------------

def cmd_status(ctx, settings, args, progress):
    store = ctx.store
    rep, doc = metrics.facts(store, args.jobs, progress)
    doc.update(undo_window=settings.undo_window,
               mode=_mode(settings, doc['initialised']))
    del doc['runs']
    # what comes next: gc's candidates by when they become eligible
    now = records.now(store)
    waits = sorted(max(0, settings.grace_period - (now - age)) for age in
                   truth.pool_map(lambda i: sweep.last_written(store, i),
                                  list(rep.unreachable), args.jobs))
    doc.update(candidates_eligible_now=len([w for w in waits if w == 0]),
               next_candidate_eligible_in=next(
                   (round(w, 1) for w in waits if w > 0), None))
    code, verdict = _verdict(rep, doc['initialised'])
    lines = ['registry-refcount status: %s' % verdict,
             '  storage:              %s' % doc['storage'],
             '  initialised:          %s' % ('yes' if doc['initialised']
                                             else 'NO (run rebuild)'),
             '  images:               %d' % doc['images'],
             '  tags:                 %d (%d tagged tops)' % (
                 doc['tags'], doc['tagged_tops']),
             '  reachable:            %d' % doc['reachable'],
             '  referenced:           %d' % doc['referenced'],
             '  orphan candidates:    %d' % doc['orphan_candidates'],
             '  bytes in layers:      %s (%s reclaimable)' % (
                 _bytes(doc['layer_bytes']),
                 _bytes(doc['reclaimable_bytes'])),
             '  in the trash:         %d image(s), %s (undo window %s)' % (
                 doc['trash_images'], _bytes(doc['trash_bytes']),
                 sweep.duration(settings.undo_window)),
             '  pending intents:      %d' % doc['pending_intents'],
             '  unfinished deletions: %d' % doc['unfinished_deletions'],
             '  quarantined records:  %d' % len(doc['quarantined']),
             '  the extension:        %s' % doc['mode'],
             '  next:                 %s' % _next(doc)]
    for what, run in (('last gc', doc['last_gc']),
                      ('last recovery', doc['last_recovery']),
                      ('last error', doc['last_error'])):
        lines.append('  %-21s %s' % (what + ':', _run_line(run) if run
                                      else 'none recorded'))
    return code, doc, lines


def _next(doc):
    """What the extension does next, by itself or at the next gc."""
    parts = ['gc deletes %d candidate(s) now%s' % (
        doc['candidates_eligible_now'], ', the next in %s' % sweep.duration(
            doc['next_candidate_eligible_in'])
        if doc['next_candidate_eligible_in'] is not None else '')]
    if doc['next_purge_in'] is not None:
        parts.append('the trash purges the next image in %s'
                     % sweep.duration(doc['next_purge_in']))
    if doc['pending_intents']:
        parts.append('the oldest intent is %s old'
                     % sweep.duration(doc['oldest_intent_seconds']))
    return '; '.join(parts)


def _mode(settings, initialised):
    """Whether the extension deletes now, and if not, why."""
    if not settings.enabled:
        return 'disabled in the config: it tracks and deletes nothing'
    if settings.dry_run:
        return 'dry_run in the config: it logs what it would delete'
    if not initialised:
        return 'tracks only, deletes nothing until `rebuild`'
    return 'deletes%s' % (' after an undo window of %s' % sweep.duration(
        settings.undo_window) if settings.undo_window else ' at once')


def _run_line(run):
    """One run of the history, in one line."""
    shown = ', '.join('%s %s' % (k.replace('_', ' '), _bytes(v) if
                                 k == 'bytes_freed' else v)
                      for k, v in sorted(run.get('counts', {}).items())
                      if v)
    error = run.get('error')
    return '%s UTC  %-8s %-11s %6s  %s(%s, %s pid %s)%s' % (
        time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(run['started'])),
        run['command'], run['outcome'],
        sweep.duration(run['ended'] - run['started']),
        shown + ' ' if shown else '', run.get('by'),
        ('%s' % run.get('host')).split('/')[0], run.get('pid'),
        '  error: %s' % error if error else '')


def cmd_metrics(ctx, settings, args, progress):
    rep, doc = metrics.facts(ctx.store, args.jobs)
    text = metrics.render(doc)
    if args.output:
        metrics.write(args.output, text)
        return OK, {'output': args.output}, [
            'registry-refcount metrics: written to %s' % args.output]
    sys.stdout.write(text)
    return OK, None, None


def cmd_du(ctx, settings, args, progress):
    doc = usage.usage(ctx.store, args.jobs)
    repos = doc['repositories']
    if args.names:
        wanted = set(n if '/' in n else 'library/' + n for n in args.names)
        missing = sorted(wanted - set(repos))
        repos = dict((n, r) for n, r in repos.items() if n in wanted)
        doc = dict(doc, repositories=repos, missing=missing)
    order = sorted(repos, key=(lambda n: (-repos[n]['exclusive_bytes'], n))
                   if args.sort == 'bytes' else None)
    lines = ['registry-refcount du: %d repositories; %d images, %s (%s no '
             'tag reaches)' % (len(repos), doc['images'],
                               _bytes(doc['bytes']),
                               _bytes(doc['reclaimable_bytes'])),
             '  %-32s %5s %7s %12s %12s %12s' % (
                 'repository', 'tags', 'images', 'only it', 'shared',
                 'total')]
    lines += ['  %-32s %5d %7d %12s %12s %12s' % (
        n, repos[n]['tags'], repos[n]['images'],
        _bytes(repos[n]['exclusive_bytes']),
        _bytes(repos[n]['shared_bytes']), _bytes(repos[n]['bytes']))
        for n in order]
    lines += ['  no such repository (no tag): %s' % n
              for n in doc.get('missing', [])]
    return (FAILED if doc.get('missing') else OK), doc, lines


def cmd_history(ctx, settings, args, progress):
    found = runs.recent(ctx.store, args.limit)
    lines = ['registry-refcount history: the last %d run(s), newest first'
             % len(found)] + ['  ' + _run_line(run) for run in found]
    return OK, {'runs': found}, lines


def _verdict(rep, initialised):
    """The exit code and the word ``status`` and ``verify`` both say."""
    if not initialised:
        return FAILED, ('not initialised: run `registry-refcount rebuild` '
                        '(until then the extension tracks references and '
                        'deletes nothing)')
    if rep.consistent:
        return OK, 'consistent'
    if rep.journal:
        return FAILED, ('INCONSISTENT: %d unfinished deletion(s), which '
                        '`registry-refcount recover` finishes'
                        % len(rep.journal))
    return FAILED, 'INCONSISTENT (`registry-refcount verify` lists why)'


def cmd_verify(ctx, settings, args, progress):
    rep = invariants.check(ctx.store, args.jobs, progress)
    doc = rep.as_dict()
    doc['initialised'] = protocols.is_initialised(ctx.store)
    if not doc['initialised']:
        code, verdict = _verdict(rep, False)
        return code, dict(doc, error='not initialised'), [
            'registry-refcount verify: %s' % verdict]
    doc['repaired'] = 0
    if args.repair and not rep.consistent:
        doc['repaired'] = invariants.repair(ctx, rep, settings.intent_timeout)
        after = invariants.check(ctx.store, args.jobs, progress)
        doc['after_repair'] = after.as_dict()
        rep = after
    code, verdict = _verdict(rep, True)
    lines = ['registry-refcount verify: %s' % verdict]
    lines += ['  S1 %s: %s' % (d['tag'], d['problem']) for d in rep.s1]
    lines += ['  R1 %s' % _describe(d) for d in rep.r1]
    lines += ['  unreadable: %s' % p for p in rep.unreadable]
    lines += ['  unfinished deletion: %s' % i for i in rep.journal]
    lines += ['  per-tag-list record (run rebuild): %s' % i
              for i in rep.legacy]
    lines += ['  damaged ancestry: %s (%s)' % (d['problem'], (
        'repair writes it from the json parents' if d['ancestry'] else
        'the json parents cannot say it either')) for d in rep.damaged]
    if doc['repaired']:
        lines.append('  repaired %d record(s)' % doc['repaired'])
    lines.append('  %d tags, %d images, %d unreachable, %d intents in flight'
                 % (len(rep.tags), len(rep.images), len(rep.unreachable),
                    len(rep.intents)))
    return code, doc, lines


def cmd_rebuild(ctx, settings, args, progress):
    from . import rebuild
    doc = rebuild.rebuild_exclusively(ctx, args.jobs, progress)
    if doc is None:
        return FAILED, {'error': 'another rebuild is running'}, [
            'registry-refcount rebuild: another rebuild is running (it '
            'holds the rebuild lock); nothing done']
    lines = ['registry-refcount rebuild: %s' % (
        'done, registry initialised' if doc['initialised'] else
        'INCOMPLETE (run it again once the errors are fixed)')]
    if doc['resumed_after']:
        lines.append('  resumed after phase %s' % doc['resumed_after'])
    lines += ['  per-tag-list records converted: %d' % doc['legacy_converted'],
              '  child markers added: %d' % doc['child_markers_added'],
              '  tags reconciled: %d' % doc['tags_reconciled']]
    lines += ['  error: %s' % e for e in doc['errors']]
    lines += ['  damaged: %s' % d['problem'] for d in doc['damaged']]
    if doc['damaged']:
        lines.append('  (records were built for everything else; '
                     '`verify --repair` writes the damaged ancestries '
                     'again from the json parents)')
    return (OK if doc['initialised'] and not doc['damaged'] else FAILED), \
        doc, lines


def cmd_recover(ctx, settings, args, progress):
    timeout = (settings.intent_timeout if args.intent_timeout is None
               else args.intent_timeout)
    doc = recovery.recover_exclusively(ctx, ctx.locks, timeout)
    if doc is None:
        return FAILED, {'error': 'recovery is running elsewhere'}, [
            'registry-refcount recover: another process is recovering']
    lines = ['registry-refcount recover:',
             '  intents finished: %d (%d left)' % (
                 doc['intents_finished'], doc['intents_waiting']),
             '  deletions finished: %d (%d left)' % (
                 doc['deletions_finished'], doc['deletions_waiting'])]
    lines += ['  left %s %s: %s' % (d['kind'], d['id'], d['why'])
              for d in doc['left']]
    if doc['purge']['purged']:
        lines.append('  purged from the trash: %d image(s), %s' % (
            len(doc['purge']['purged']),
            _bytes(doc['purge']['bytes_freed'])))
    lines += ['  unreadable: %s' % p for p in doc['unreadable']]
    lines += ['  error: %s' % e for e in doc['errors']]
    return (FAILED if doc['errors'] else OK), doc, lines


def cmd_gc(ctx, settings, args, progress):
    store = ctx.store
    if not protocols.is_initialised(store):
        return FAILED, {'error': 'not initialised'}, [
            'registry-refcount gc: the registry is not initialised; run '
            '`registry-refcount rebuild` first (nothing deleted)']
    grace = settings.grace_period if args.grace is None else args.grace
    dry = args.dry_run or settings.dry_run
    if args.scheduled:
        return _scheduled_gc(ctx, settings, args, grace)
    try:
        with ctx.locks.named('gc'):
            doc = sweep.sweep(ctx, grace, dry_run=dry, jobs=args.jobs,
                              progress=progress,
                              in_flight_age=settings.intent_timeout)
    except locks.LockUnavailable as e:
        return FAILED, {'error': str(e)}, [
            'registry-refcount gc: the lock service cannot be reached, '
            'nothing deleted (%s)' % e]
    except locks.LockTimeout as e:
        return FAILED, {'error': str(e)}, [
            'registry-refcount gc: another gc is running (%s)' % e]
    verb = 'would delete' if dry else 'deleted'
    lines = ['registry-refcount gc%s (grace %gs):' % (
        ' --dry-run' if dry else '', grace)]
    if args.verbose:        # (each is in the audit log, and in --json)
        lines += ['  %s %s  %10s  %s' % (verb, d['image'],
                                         _bytes(d['bytes']), d['reason'])
                  for d in doc['deleted']]
    lines += ['  %s %d image(s), %s; %d candidate(s) younger than the '
              'grace period, %d still referenced' % (
                  verb, len(doc['deleted']), _bytes(doc['bytes_freed']),
                  doc['kept_young'], doc['kept_referenced'])]
    if doc['gone_meanwhile']:
        lines.append('  %d other candidate(s) deleted meanwhile online' %
                     doc['gone_meanwhile'])
    young = doc['young'] if args.verbose else doc['young'][:1]
    lines += ['  kept %s: last written %s ago, eligible in %s' % (
        y['image'], sweep.duration(y['age']),
        sweep.duration(y['eligible_in'])) for y in young]
    if len(doc['young']) > len(young):
        lines.append('  (and %d more, eligible later: --verbose lists '
                     'them)' % (len(doc['young']) - len(young)))
    if doc['kept_trash'] or doc['purged']:
        lines.append('  trash: %d image(s) purged (undo window passed), %d '
                     'kept (restorable)' % (doc['purged'], doc['kept_trash']))
    lines += ['  error: %s' % err for err in doc['errors'] +
              doc['trash_errors']]
    if doc['stopped']:
        lines.append('  NOTHING DELETED: %s' % doc['stopped'])
    lines += _damage_lines(doc)
    return (FAILED if doc['errors'] or doc['damaged'] or doc['trash_errors']
            else OK), doc, lines


def _scheduled_gc(ctx, settings, args, grace):
    """``gc --scheduled``, which a worker's background loop runs every
    ``gc_interval`` (in a process of its own: a sweep would stop the
    worker's requests): skipped - and not recorded - when another host's
    gc holds the lock or ran less than ``gc_interval`` ago; else the
    config's retention policy, then the sweep, each recorded as a run."""
    store = ctx.store
    quick = settings_mod.make_locks(settings._replace(lock_timeout=1),
                                    records.local_root(store))

    def recently():
        ran = runs.last(runs.recent(store, 50), 'gc')
        return ran and records.now(store) - ran['ended'] < \
            0.9 * settings.gc_interval
    if recently():
        return OK, {'skipped': 'a gc ran less than gc_interval ago'}, []
    try:
        with quick.named('gc'):
            if recently():
                return OK, {'skipped': 'another host ran it'}, []
            if settings.retention:
                began = records.now(store)
                code, doc, _ = cmd_retain(ctx._replace(
                    by='retain', undo_window=settings.undo_window), settings,
                    args, None)
                runs.record(store, 'retain', 'worker', began,
                            records.now(store), runs.outcome(code, doc), doc)
            doc = sweep.sweep(ctx, grace, jobs=args.jobs,
                              in_flight_age=settings.intent_timeout)
    except locks.LockTimeout:
        return OK, {'skipped': 'another gc is running'}, []
    return (FAILED if doc['errors'] or doc['trash_errors'] else OK), doc, []


def _damage_lines(doc):
    """Each damaged record gc met and what it keeps because of it."""
    lines = []
    for d in doc['damaged']:
        lines += ['  damaged %s: %s' % (d['image'], d['problem']),
                  '    kept for it: %s' % ', '.join(d['protects'])]
    if doc['damaged'] and doc['kept_damaged']:
        lines.append('  %d candidate(s) kept for damaged records '
                     '(`verify --repair` writes a damaged ancestry again '
                     'from whole json parents)' % doc['kept_damaged'])
    return lines


def cmd_purge(ctx, settings, args, progress):
    dry = args.dry_run or settings.dry_run
    try:
        with ctx.locks.named('recovery'):
            doc = purge_mod.purge(ctx._replace(
                undo_window=settings.undo_window), everything=args.all,
                dry_run=dry)
    except locks.LockTimeout as e:
        return FAILED, {'error': str(e)}, [
            'registry-refcount purge: recovery or another purge is running '
            '(%s); nothing purged' % e]
    verb = 'would purge' if dry else 'purged'
    lines = ['registry-refcount purge%s%s:' % (
        ' --all' if args.all else '', ' --dry-run' if dry else ''),
        '  %s %d image(s), %s; %d rescued (referenced again); %d still '
        'in their undo window' % (verb, len(doc['purged']),
                                  _bytes(doc['bytes_freed']),
                                  len(doc['rescued']), len(doc['waiting']))]
    if args.verbose:
        lines += ['  %s %s' % (verb, i) for i in doc['purged']]
    lines += ['  error: %s' % err for err in doc['errors']]
    return (FAILED if doc['errors'] else OK), doc, lines


def cmd_trash(ctx, settings, args, progress):
    found, errors = purge_mod.listing(ctx.store)
    lines = ['registry-refcount trash: %d image(s), %s, undo window %s' % (
        sum(e['images'] for e in found),
        _bytes(sum(e['bytes'] for e in found)),
        sweep.duration(settings.undo_window))]
    lines += ['  %s  %10s  %d image(s)  purged in %s  %s: %s' % (
        e['image'][:12], _bytes(e['bytes']), e['images'],
        sweep.duration(e['in']), ', '.join(e['tags']) or '(no tag)',
        e['reason']) for e in found]
    lines += ['  error: %s' % e for e in errors]
    return (FAILED if errors else OK), {'trash': found, 'errors': errors}, \
        lines


def cmd_restore(ctx, settings, args, progress):
    try:
        namespace, repository, tag = _repository_name(args.name)
        at = _parse_time(args.at) if args.at else None
    except (layout.InvalidName, UsageError) as e:
        return USAGE, {'error': str(e)}, [
            'registry-refcount restore: %s' % e]
    plan = restore_mod.plan(ctx.store, namespace, repository, tag, at)
    if not plan:
        return FAILED, {'error': 'no history'}, [
            'registry-refcount restore: no change of %s is recorded within '
            'the undo window (%s); nothing to put back' % (
                args.name, sweep.duration(settings.undo_window))]
    done, refused, lines = [], [], ['registry-refcount restore%s:' % (
        ' --dry-run' if args.dry_run else '')]
    for key, image, now in plan:
        try:
            ancestry = restore_mod.check(ctx.store, key, image, now,
                                         args.force)
            if ancestry is None:
                lines.append('  %s names %s already' % (key.display, image))
                continue
            if not args.dry_run:
                restore_mod.put_back(ctx, key, image, ancestry)
        except restore_mod.Refused as e:
            refused.append({'tag': key.display, 'why': str(e)})
            lines.append('  refused: %s' % e)
            continue
        done.append({'tag': key.display, 'image': image,
                     'images': len(ancestry)})
        lines.append('  %s %s -> %s (%d image(s) in its chain)' % (
            'would put back' if args.dry_run else 'put back', key.display,
            image, len(ancestry)))
    return (FAILED if refused else OK), {'restored': done,
                                         'refused': refused}, lines


def cmd_retain(ctx, settings, args, progress):
    # (also called by a scheduled gc, whose options name no rule)
    given = dict((k, getattr(args, k, None)) for k in settings_mod.RULE_KEYS)
    try:
        if any(given[k] is not None for k in ('keep_last', 'keep_younger',
                                               'match', 'exclude',
                                               'repository')):
            if given['keep_younger'] is not None:
                given['keep_younger'] = retain_mod.duration(
                    given['keep_younger'])
            rules = [retain_mod.rule(**given)]
        else:
            rules = [retain_mod.rule(**r) for r in settings.retention]
    except (ValueError, re.error) as e:
        return USAGE, {'error': str(e)}, ['registry-refcount retain: %s' % e]
    if not rules:
        return USAGE, {'error': 'no rule'}, [
            'registry-refcount retain: no rule: give --keep-last or '
            '--keep-younger (and --match, --exclude, --repository), or set '
            'a retention: policy in the config']
    dry = args.dry_run or settings.dry_run
    started = records.now(ctx.store)
    verb = 'would delete' if dry else 'deleted'
    lines = ['registry-refcount retain%s:' % (' --dry-run' if dry else '')]
    doc = {'rules': [], 'dry_run': dry}
    for r in rules:
        p = retain_mod.plan(ctx.store, r, started, args.jobs)
        spared = []
        if not dry:
            deleted, spared = retain_mod.apply(ctx, p['delete'], started)
        else:
            deleted = [key for key, _, _ in p['delete']]
        doc['rules'].append({
            'repository': r.repository, 'deleted': [k.display for k in
                                                    deleted],
            'kept': p['kept'] + len(spared), 'refused': p['refused'],
            'spared': spared, 'bytes': p['bytes'], 'images': p['images']})
        lines.append('  repositories %s: %s %d tag(s) (%d kept); %d image(s), '
                     '%s %s' % (
            r.repository, verb, len(deleted), p['kept'] + len(spared),
            len(p['images']), _bytes(p['bytes']), 'only they hold' if dry
            else 'freed%s' % (' once the undo window passes'
                              if ctx.undo_window else '')))
        if args.verbose or dry:
            lines += ['    %s %s' % (verb, k.display) for k in deleted]
        lines += ['    kept: %s' % why for why in p['refused'] + spared]
    return OK, doc, lines


def _repository_name(value):
    """``NS/REPO[:TAG]`` as the registry names it (``library`` without a
    namespace), quoted as storage names it: ``(ns, repo, tag or None)``."""
    tag = None
    if ':' in value:
        value, tag = value.rsplit(':', 1)
    namespace, _, repository = value.rpartition('/')
    key = layout.TagKey.from_request(namespace or 'library', repository,
                                     tag or 'x')
    return key.namespace, key.repository, key.tag if tag else None


def _parse_time(value):
    """Unix seconds, or an ISO 8601 time in UTC (``2026-12-07T14:05:00``)."""
    try:
        return float(value)
    except ValueError:
        pass
    import calendar
    import datetime
    for form in ('%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M'):
        try:
            return calendar.timegm(datetime.datetime.strptime(
                value.rstrip('Z'), form).timetuple())
        except ValueError:
            continue
    raise UsageError('--at %s: expected Unix seconds or YYYY-MM-DDTHH:MM:SS '
                     '(UTC)' % value)


#: The commands whose runs go into the run history (when they write).
RECORDED = ('gc', 'recover', 'rebuild', 'purge', 'restore', 'retain')

COMMANDS = {'status': cmd_status, 'verify': cmd_verify,
            'rebuild': cmd_rebuild, 'recover': cmd_recover, 'gc': cmd_gc,
            'purge': cmd_purge, 'trash': cmd_trash, 'restore': cmd_restore,
            'retain': cmd_retain, 'history': cmd_history,
            'metrics': cmd_metrics, 'du': cmd_du}


def _options(p, top):
    """The options every command takes, before its name or after it.  At
    the top they hold the defaults; after the command, an option given
    overrides and one not given leaves the top's value alone."""
    def default(value):
        return value if top else argparse.SUPPRESS
    p.add_argument('--config', default=default(None),
                   help='registry config file (default: '
                   '$DOCKER_REGISTRY_CONFIG)')
    p.add_argument('--flavor', default=default(None),
                   help='config flavor (default: $SETTINGS_FLAVOR)')
    p.add_argument('--json', action='store_true', default=default(False),
                   help='print one JSON document on stdout')
    p.add_argument('--jobs', type=int, default=default(8),
                   help='parallel storage reads and deletions (default 8)')
    p.add_argument('--quiet', '-q', action='store_true',
                   default=default(False), help='no progress bars')
    p.add_argument('--verbose', '-v', action='store_true',
                   default=default(False),
                   help='list each deletion, and log at INFO')
    p.add_argument('--ignore-lockspace', action='store_true',
                   default=default(False),
                   help='run even though the registry\'s workers lock '
                   'elsewhere (only with the registry stopped)')


def parser():
    p = argparse.ArgumentParser(
        prog='registry-refcount',
        description='Reference counting and garbage collection for '
                    'docker-registry 0.9.1.',
        epilog='Exit codes: 0 ok, 1 inconsistent or failed, 2 usage or '
               'configuration error (the wrong storage included), 130 '
               'interrupted.')
    p.add_argument('--version', action='version',
                   version='registry-refcount %s' % __version__)
    _options(p, True)
    sub = p.add_subparsers(dest='command')

    def command(name, help):
        c = sub.add_parser(name, help=help, description=help)
        _options(c, False)
        return c
    command('status', 'counts, bytes, initialisation, intents, quarantined '
            'records (writes nothing)')
    v = command('verify', 'compare every record with the truth (writes '
                'nothing unless --repair)')
    v.add_argument('--repair', action='store_true',
                   help='fix records and ledger (never deletes an image)')
    b = command('rebuild', 'build records from the truth; marks the '
                'registry initialised')
    b.add_argument('--init-empty', action='store_true',
                   help='start the extension on a storage that holds no '
                   'registry yet')
    r = command('recover', 'finish interrupted work now')
    r.add_argument('--intent-timeout', type=float, default=None,
                   help='seconds (default: from the config)')
    g = command('gc', 'mark and sweep unreachable images')
    g.add_argument('--dry-run', action='store_true',
                   help='report what would be deleted now, write nothing')
    g.add_argument('--grace', type=float, default=None,
                   help='seconds (default: grace_period from the config)')
    g.add_argument('--scheduled', action='store_true',
                   help=argparse.SUPPRESS)     # the workers' gc_interval
    u = command('purge', 'tear down the trash\'s images whose undo window '
                'has passed')
    u.add_argument('--all', action='store_true',
                   help='every image in the trash, due or not')
    u.add_argument('--dry-run', action='store_true',
                   help='report what would be purged, write nothing')
    command('trash', 'list what waits in the trash, and when it goes '
            '(writes nothing)')
    s = command('restore', 'put a deleted or moved tag (or a repository\'s '
                'tags) back as it was, while the undo window keeps its '
                'images')
    s.add_argument('name', metavar='NS/REPO[:TAG]')
    s.add_argument('--at', default=None, metavar='TIME',
                   help='as just before TIME (Unix seconds or ISO 8601 UTC;'
                   ' default: before its last deletion or retag)')
    s.add_argument('--force', action='store_true',
                   help='also over a tag written again since')
    s.add_argument('--dry-run', action='store_true',
                   help='say what would be put back, write nothing')
    d = command('du', 'space per repository: the bytes only it holds (what '
                'deleting it frees) and the bytes it shares (writes '
                'nothing)')
    d.add_argument('names', nargs='*', metavar='NS/REPO')
    d.add_argument('--sort', choices=('bytes', 'name'), default='bytes',
                   help='by the bytes only it holds (default), or by name')
    m = command('metrics', 'the facts of status in Prometheus\'s text '
                'format, for node_exporter\'s textfile collector (writes '
                'nothing to the storage)')
    m.add_argument('--output', default=None, metavar='FILE',
                   help='replace FILE atomically instead of printing')
    h = command('history', 'the runs of gc, recover, rebuild, purge, '
                'restore and retain, newest first (writes nothing)')
    h.add_argument('--limit', type=int, default=20, metavar='N',
                   help='at most N runs (default 20)')
    t = command('retain', 'delete the tags no keep rule keeps (the rule '
                'given here, else the config\'s retention: policy)')
    t.add_argument('--keep-last', type=int, default=None, metavar='N',
                   help='keep the N most recently written tags of each '
                   'repository')
    t.add_argument('--keep-younger', default=None, metavar='DURATION',
                   help='keep tags written within DURATION (30d, 12h, 90m, '
                   'or seconds)')
    t.add_argument('--match', default=None, metavar='REGEX',
                   help='only tags whose name matches (default: all)')
    t.add_argument('--exclude', default=None, metavar='REGEX',
                   help='never tags whose name matches')
    t.add_argument('--repository', default=None, metavar='GLOB',
                   help='only repositories ns/repo matching (default *)')
    t.add_argument('--include-latest', action='store_true',
                   help='latest may go too (it never does otherwise)')
    t.add_argument('--allow-empty', action='store_true',
                   help='a repository may lose every tag')
    t.add_argument('--dry-run', action='store_true',
                   help='list what would go and the bytes only those tags '
                   'hold, write nothing')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if not args.command:
        parser().print_usage(sys.stderr)
        return USAGE
    if args.jobs < 1 or (getattr(args, 'grace', None) or 0) < 0:
        print('registry-refcount: --jobs must be >= 1 and --grace >= 0',
              file=sys.stderr)
        return USAGE
    if getattr(args, 'intent_timeout', None) is not None and \
            args.intent_timeout < settings_mod.MIN_INTENT_TIMEOUT:
        print('registry-refcount: --intent-timeout must be at least %ds: '
              'work of this host is finished once its process is gone, '
              'whatever the timeout; a shorter one would take another '
              'host\'s live tag writes for abandoned'
              % settings_mod.MIN_INTENT_TIMEOUT, file=sys.stderr)
        return USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else
                        logging.WARNING, stream=sys.stderr,
                        format='%(asctime)s %(levelname)s: %(message)s')
    # the registry's modules warn about every optional feature left off
    logging.getLogger('docker_registry').setLevel(logging.ERROR)
    where = None
    try:
        cfg, settings, store = load(args)
        where = _where(store)
        reading = read_only(args)
        records.backend(store).read_only = reading
        check_target(store, args)
        durable.enabled = settings.sync_writes
        if not reading:
            moved = protocols.move_predecessor_aside(store)
            if moved:
                print(moved, file=sys.stderr)
        ctx = make_context(settings, store, 'gc' if args.command == 'gc'
                           else args.command, reading)
        mismatch = (None if args.ignore_lockspace or reading else
                    protocols.lockspace_mismatch(store, ctx.locks))
    except (UsageError, settings_mod.ConfigError, locks.LockTimeout) as e:
        print('registry-refcount: %s%s' % (
            '' if where is None or where in '%s' % e else where + ': ', e),
            file=sys.stderr)
        return USAGE
    if mismatch:
        print('registry-refcount: refusing to run: %s' % mismatch,
              file=sys.stderr)
        return USAGE
    if not reading:
        audit.open_file(settings_mod.audit_log(settings,
                                               records.local_root(store)))
    progress = progress_factory(not args.quiet and not args.json and
                                sys.stderr.isatty())
    started = time.time()
    recorded = args.command in RECORDED and not reading
    began = records.now(store) if recorded else None
    deletions = audit.count()
    try:
        code, doc, lines = COMMANDS[args.command](ctx, settings, args,
                                                  progress)
    except KeyboardInterrupt:
        if recorded:
            runs.record(store, args.command, 'command', began,
                        records.now(store), 'interrupted',
                        {'deleted': audit.count() - deletions})
        return _interrupted(args, where, audit.count() - deletions)
    except Exception as e:
        if recorded:
            runs.record(store, args.command, 'command', began,
                        records.now(store), 'failed', {'error': repr(e)})
        raise
    if recorded and 'skipped' not in doc:
        runs.record(store, args.command, 'worker' if getattr(
            args, 'scheduled', False) else 'command', began,
            records.now(store), runs.outcome(code, doc), doc)
    if doc is None:             # (metrics: its own format, printed)
        return code
    if args.json:
        doc = dict(doc, command=args.command, exit_code=code, storage=where,
                   seconds=round(time.time() - started, 3))
        print(json.dumps(doc, sort_keys=True, indent=2, default=_jsonable))
    else:
        if not any(line.startswith('  storage: ') for line in lines):
            lines.insert(1, '  storage: %s' % where)
        print('\n'.join(lines))
    return code


def _interrupted(args, where, deleted):
    """Ctrl-C: one line - what was done, what is left, what finishes it
    (a deletion cut short is finished by ``recover`` at once: its owner,
    this process, is gone by then)."""
    finish = {'gc': 'run `registry-refcount recover`, then `registry-'
                    'refcount gc` again for the rest',
              'rebuild': 'run `registry-refcount rebuild` again (it '
                         'resumes)',
              'recover': 'run `registry-refcount recover` again'}.get(
                  args.command, 'nothing was changed')
    print('registry-refcount %s: interrupted on %s after %d deletion(s); '
          '%s' % (args.command, where, deleted, finish), file=sys.stderr)
    return INTERRUPTED


def _where(store):
    """Which storage the command works on, as the operator would name it
    (a status of the wrong folder or bucket says so at once)."""
    return records.backend(store).where()


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _describe(diff):
    where = diff.get('image') or diff.get('tag')
    what = diff.get('marker') or 'ledger %s -> %s' % (diff.get('has'),
                                                      diff.get('want'))
    return '%s on %s: %s %s' % (diff['kind'], where, what,
                                diff.get('detail', ''))


def _bytes(n):
    n = float(n or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return '%.1f %s' % (n, unit) if unit != 'B' else '%d B' % n
        n /= 1024


if __name__ == '__main__':
    sys.exit(main())
