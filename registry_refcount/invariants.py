"""The invariants checker: DESIGN.md section 7, from storage alone.

:func:`check` walks the truth (tag files, image json and ancestries) and
the records (markers, ledger, intents, journal) and reports:

* **S1** - tags whose chain is not whole (an image missing, partially
  deleted, or without ancestry);
* **R1** - every record that differs from what the truth says, each with
  the repair that would fix it (never a deletion of an image);
* **L1** - images that no tag reaches;
* damaged ancestries (missing, malformed, truncated on an image whose
  json is stored), each with the ancestry its json parents give when
  they are whole: what :func:`repair` writes;
* work in flight or unfinished (intents, journal entries) and unreadable
  records.

S2 (containment) is about what changed, not what is: tests compare
listings taken before and after (:func:`outside_listing`).
"""

from __future__ import absolute_import, unicode_literals

import json
import os

from . import damage
from . import layout
from . import protocols
from . import records
from . import truth


class Report(object):
    def __init__(self):
        self.s1 = []          # {'tag', 'problem'}
        self.r1 = []          # {'kind', 'image'|'tag', 'detail', ...}
        self.unreachable = []
        self.reachable = set()
        self.tags = {}
        self.images = {}
        self.intents = []
        self.journal = []
        self.unreadable = []
        self.legacy = []
        self.ledger_digests = {}      # a tag marker's name: its tag
        self.damaged = []     # {'image', 'problem', 'ancestry' or None}

    @property
    def consistent(self):
        return not (self.s1 or self.r1 or self.unreadable or self.journal
                    or self.legacy or self.damaged)

    def as_dict(self):
        return {
            'consistent': self.consistent,
            'tags': len(self.tags),
            'images': len(self.images),
            'reachable': len(self.reachable),
            'unreachable': sorted(self.unreachable),
            's1': self.s1, 'r1': self.r1,
            'intents': self.intents, 'journal': self.journal,
            'unreadable': self.unreadable, 'legacy': self.legacy,
            'damaged': self.damaged,
        }


def check(store, jobs=8, progress=truth.no_progress):
    rep = Report()
    rep.tags, bad_tags = truth.read_tags(store, jobs, progress)
    for key, problem in bad_tags.items():
        rep.s1.append({'tag': key.display, 'problem': problem})
    rep.images = truth.read_images(store, jobs, progress=progress)
    rep.reachable, broken = truth.mark(rep.tags, rep.images)
    for key, problem in broken.items():
        rep.s1.append({'tag': key.display, 'problem': problem})
    for image_id in rep.reachable:
        img = rep.images.get(image_id)
        if img is not None and img.deleting:
            rep.s1.append({'tag': None, 'problem': 'reachable image %s has '
                           'a tombstone' % image_id})
        elif img is not None and img.has_json and not store.exists(
                layout.image_file(image_id, 'layer')):
            rep.s1.append({'tag': None, 'problem': 'reachable image %s has '
                           'no layer' % image_id})
    rep.damaged = truth.damaged_ancestries(rep.images)
    rep.unreachable = sorted(i for i, img in rep.images.items()
                             if i not in rep.reachable and img.has_json)
    rep.intents = sorted(i for i in records.listing(store, layout.INTENTS)
                         if not layout.is_scratch(i))
    rep.journal = sorted(i for i in records.listing(store, layout.JOURNAL)
                         if _journal_entry(i))
    _check_records(store, rep, jobs, progress)
    return rep


def _journal_entry(name):
    try:
        return layout.parse_journal(name)
    except layout.InvalidName:
        return None


def expected_markers(tags, images):
    """``{image: {marker: content}}`` the truth calls for."""
    want = {}
    for key, image_id in tags.items():
        want.setdefault(image_id, {})[key.marker] = str(key)
    for img in images.values():
        if img.has_json and not img.deleting and img.parent:
            want.setdefault(img.parent, {})[
                layout.child_marker(img.id)] = ''
    return want


def _check_records(store, rep, jobs, progress=truth.no_progress):
    want = expected_markers(rep.tags, rep.images)
    intents = set(rep.intents)

    def markers_of(image_id):
        names = list(records.markers(store, image_id))
        # (beside markers too: moved aside by a marker's write)
        legacy = records.legacy_references(store, image_id) is not None
        contents = {}
        for name in names:
            if name.startswith(layout.TAG_PREFIX):
                try:
                    contents[name] = layout.text(records.marker_content(
                        store, image_id, name))
                except Exception:
                    contents[name] = None
        return names, legacy, contents

    ids = sorted(set(rep.images) | set(want))
    found = dict(zip(ids, truth.pool_map(markers_of, ids, jobs,
                                         progress('records', len(ids)))))
    for image_id in ids:
        names, legacy, contents = found[image_id]
        if legacy:
            rep.legacy.append(image_id)
        expected = want.get(image_id, {})
        img = rep.images.get(image_id)
        for name in names:
            try:
                kind, value = layout.check_marker(name)
            except layout.InvalidName:
                rep.r1.append({'kind': 'invalid_marker', 'image': image_id,
                               'marker': name})
                continue
            if kind == 'pending':
                if value not in intents:
                    rep.r1.append({'kind': 'stale_marker', 'image': image_id,
                                   'marker': name,
                                   'detail': 'pending without an intent'})
                continue
            if kind == 'hold':
                rep.r1.append({'kind': 'stale_marker', 'image': image_id,
                               'marker': name, 'detail': 'a hold of a '
                               'reconcile that is over or under way'})
                continue
            if name not in expected:
                dangling = kind == 'child' and not (
                    value in rep.images and rep.images[value].has_json)
                rep.r1.append({'kind': 'stale_marker', 'image': image_id,
                               'marker': name, 'dangling': dangling,
                               'detail': 'a child whose json never came'
                               if dangling else
                               'the truth has no such referrer'})
            elif kind == 'tag' and contents.get(name) != expected[name]:
                rep.r1.append({'kind': 'torn_marker', 'image': image_id,
                               'marker': name, 'content': expected[name],
                               'detail': 'content does not match its name'})
        for name, content in sorted(expected.items()):
            if name not in names and not legacy:
                rep.r1.append({'kind': 'missing_marker', 'image': image_id,
                               'marker': name, 'content': content,
                               'detail': 'image %s' % (
                                   'missing' if img is None or
                                   not img.has_json else 'present')})
    _check_ledger(store, rep)


def ledger_entries(store):
    """``{key: (image, others) or UNKNOWN}`` for every ledger entry."""
    entries = {}
    for ns, repo in records.repositories(store, layout.LEDGER):
        try:
            for key in protocols.ledger_tags(store, ns, repo):
                entries[key] = protocols.ledger_entry(store, key)
        except layout.InvalidName:
            continue
    return entries


def _check_ledger(store, rep):
    entries = ledger_entries(store)
    rep.ledger_digests = dict((key.marker, key) for key in entries)
    for key, entry in sorted(entries.items()):
        if entry is protocols.UNKNOWN:
            rep.unreadable.append(layout.ledger(key))
            continue
        image_id, others = entry
        if rep.tags.get(key) != image_id or others:
            rep.r1.append({'kind': 'ledger', 'tag': key.display,
                           'key': str(key), 'has': image_id,
                           'others': others, 'want': rep.tags.get(key)})
    for key, image_id in sorted(rep.tags.items()):
        if key not in entries:
            rep.r1.append({'kind': 'ledger', 'tag': key.display,
                           'key': str(key), 'has': None, 'want': image_id})


def repair(ctx, rep, min_age=600):
    """Fix every R1 difference in ``rep``; never deletes an image (a stale
    marker removed here may leave an image for gc).  A child marker whose
    child never got its json is removed only once older than ``min_age``
    seconds (the push may still be under way).  Returns the count."""
    fixed = 0
    digests = dict((key.marker, key) for key in rep.tags)
    for diff in rep.r1:
        kind = diff['kind']
        if kind in ('missing_marker', 'torn_marker'):
            if protocols.add_reference(ctx, diff['image'], diff['marker'],
                                       diff['content']):
                fixed += 1
        elif kind == 'stale_marker':
            marker = diff['marker']
            if protocols.drop_stale_marker(
                    ctx, diff['image'], marker, min_age,
                    # a torn marker's tag, from its ledger entry if the
                    # tag file is gone (one a power loss emptied)
                    digests.get(marker) or rep.ledger_digests.get(marker),
                    unclaimed=(
                        marker not in digests and
                        marker not in rep.ledger_digests)):
                fixed += 1
        elif kind == 'ledger':
            protocols.rewrite_ledger(ctx, layout.TagKey.parse(diff['key']))
            fixed += 1
    fixed += _repair_ancestries(ctx.store, rep.damaged)
    for path in rep.unreadable:
        if path.startswith(layout.LEDGER + '/'):
            protocols.rewrite_ledger(ctx, layout.TagKey(
                *path[len(layout.LEDGER) + 1:].split('/')))
            fixed += 1
    return fixed


def _repair_ancestries(store, found):
    """Write each damaged ancestry again from the json parents, read
    afresh just before (a push done again meanwhile writes its own), only
    where they are whole: the one file written outside the extension's
    records, ``images/<id>/ancestry``, as the registry writes it."""
    fixed = 0
    ends = damage.Ends(store)
    for diff in found:
        if diff['ancestry'] is None:
            continue
        ancestry = damage.expected_ancestry(store, diff['image'], ends)
        if ancestry is not None:
            damage.write_ancestry(store, diff['image'], ancestry)
            fixed += 1
    return fixed


def outside_listing(root):
    """Every file under a local storage root that is outside the
    extension's places, with its content digest (for S2 tests)."""
    import hashlib
    result = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        rel = '' if rel == '.' else rel + '/'
        if rel.startswith(layout.PREFIX + '/') or rel.startswith('images/'):
            continue
        for name in files:
            path = rel + name
            with open(os.path.join(folder, name), 'rb') as f:
                result[path] = hashlib.sha1(f.read()).hexdigest()
    return result


def as_json(rep):
    return json.dumps(rep.as_dict(), sort_keys=True, indent=2)
