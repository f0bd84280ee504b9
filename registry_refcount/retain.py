"""Retention: delete the tags no keep rule keeps, as a tag DELETE would.

A rule (:class:`Rule`) names the repositories it looks at (a glob on
``ns/repo``), the tags it may delete (``match``, less ``exclude``, never
``latest`` unless asked), and what keeps a tag: the ``keep_last`` most
recently written of them in each repository, and those written within
``keep_younger`` seconds.  A tag's time is the registry's ``last_update``
in ``tag<tag>_json``, else the tag file's stamp on the storage's clock.

:func:`plan` says what a run would delete, with the bytes only those tags
hold (what a tag that stays, anywhere, also reaches is not counted);
:func:`apply` deletes them through the tag DELETE's protocol - its
intent, the registry's files, then the reconcile - so that the undo
window, the tag history and the audit see a deletion like any other,
its reason "retention".  Safety: a tag written after the run started is
kept (its file is read again just before), and no repository loses its
last tag unless the rule allows it (``allow_empty``).
"""

from __future__ import absolute_import, unicode_literals

import collections
import fnmatch
import json
import re

from . import history
from . import layout
from . import protocols
from . import records
from . import truth

Rule = collections.namedtuple('Rule', 'keep_last keep_younger match exclude '
                              'repository include_latest allow_empty')


def rule(keep_last=None, keep_younger=None, match=None, exclude=None,
         repository='*', include_latest=False, allow_empty=False):
    """A checked :class:`Rule`; ValueError says what is wrong."""
    if keep_last is None and keep_younger is None:
        raise ValueError('a retention rule needs keep_last or keep_younger '
                         '(else it would keep nothing)')
    if keep_last is not None and int(keep_last) < 0:
        raise ValueError('keep_last must be 0 or more, got %s' % keep_last)
    if keep_younger is not None and float(keep_younger) < 0:
        raise ValueError('keep_younger must be 0 or more, got %s'
                         % keep_younger)
    return Rule(None if keep_last is None else int(keep_last),
                None if keep_younger is None else float(keep_younger),
                re.compile(match) if match else None,
                re.compile(exclude) if exclude else None,
                repository or '*', bool(include_latest), bool(allow_empty))


def duration(text):
    """Seconds from ``30d``, ``12h``, ``45m``, ``90s`` or a number."""
    units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
    text = ('%s' % text).strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError('expected a duration such as 30d, 12h or 3600, '
                         'got %r' % text)


def written(store, key):
    """When tag ``key`` was written: its json's ``last_update``, else its
    file's stamp (storage clock), else 0."""
    try:
        doc = json.loads(layout.text(records.read_file(
            store, layout.tag_json_file(key)) or b'{}'))
        return float(doc['last_update'])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError,
            EnvironmentError):
        return records.stamp(store, layout.tag_file(key)) or 0.0


def plan(store, r, now, jobs=8):
    """What rule ``r`` deletes now: ``{'delete': [(key, image, time)],
    'kept': n, 'refused': [why], 'bytes': freed, 'images': [freed ids]}``."""
    tags, _ = truth.read_tags(store, jobs)
    by_repo = collections.defaultdict(list)
    for key, image in tags.items():
        by_repo[key.namespace, key.repository].append((key, image))
    doomed, kept, refused = [], 0, []
    for (namespace, repository), entries in sorted(by_repo.items()):
        name = layout.TagKey(namespace, repository, 'x').display[:-2]
        if not fnmatch.fnmatchcase(name, r.repository):
            continue
        candidates = sorted(
            ((written(store, key), key, image) for key, image in entries
             if _candidate(r, key)), key=lambda e: (-e[0], e[1]))
        drop = [(key, image, at) for rank, (at, key, image) in
                enumerate(candidates) if not _kept(r, rank, at, now)]
        kept += len(entries) - len(drop)
        if drop and len(drop) == len(entries) and not r.allow_empty:
            refused.append('%s: every tag would go; kept (allow_empty lets '
                           'a rule empty a repository)' % name)
            kept += len(drop)
            continue
        doomed += drop
    freed = _freed(store, tags, set(k for k, _, _ in doomed))
    return {'delete': doomed, 'kept': kept, 'refused': refused,
            'images': sorted(freed), 'bytes': sum(
                protocols.layer_size(store, i) or 0 for i in freed)}


def _candidate(r, key):
    tag = key.display.rsplit(':', 1)[1]
    if tag == 'latest' and not r.include_latest:
        return False
    if r.match is not None and not r.match.search(tag):
        return False
    return r.exclude is None or not r.exclude.search(tag)


def _kept(r, rank, at, now):
    if r.keep_last is not None and rank < r.keep_last:
        return True
    return r.keep_younger is not None and at >= now - r.keep_younger


def _freed(store, tags, doomed):
    """The images only the ``doomed`` tags reach."""
    chains = {}

    def chain(image):
        if image not in chains:
            chains[image] = protocols.chain_of(store, image)
        return chains[image]
    gone, stays = set(), set()
    for key, image in tags.items():
        (gone if key in doomed else stays).update(chain(image))
    return gone - stays


def apply(ctx, planned, started):
    """Delete the planned tags, each as a tag DELETE: ``(deleted, kept)``
    where ``kept`` says why a tag was spared (written again since the
    run started at ``started``, storage clock)."""
    store, deleted, kept = ctx.store, [], []
    for key, image, _ in planned:
        stamp = records.stamp(store, layout.tag_file(key))
        # (>=: S3 stamps are whole seconds - a write in the run's first
        # second may be after its start)
        if protocols.read_tag(store, key) != image or (
                stamp is not None and stamp >= started):
            kept.append('%s: written again since the run started'
                        % key.display)
            continue
        why = 'retention deleted tag %s' % key.display
        intent_id = protocols.new_intent_id()
        doc = protocols.write_intent(store, intent_id, tag=str(key),
                                     why=why)
        paths = [layout.tag_file(key), layout.tag_json_file(key)]
        if key.tag == 'latest':         # as the registry's delete_tag
            paths.append('%s/json' % layout.repository_dir(*key[:2]))
        for path in paths:
            records.remove_registry_file(store, path)
        if ctx.undo_window:
            history.record(ctx, key, image, None, 'retention')
        protocols.finish_intent(ctx, intent_id, doc)
        deleted.append(key)
    return deleted, kept
