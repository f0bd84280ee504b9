"""Power loss on local storage (docs/design.rst, *Power loss*).

A power loss is simulated on the extension's records: each keeps the
bytes it held when last synced (:func:`.durable.data`), and one never
synced comes back empty - or, from a reused spare, with another record's
bytes.  (Names are kept: their order is argued in the design, not
simulated here.)  Then recovery, gc and ``verify --repair`` run: nothing
a tag file reaches is deleted, nothing stays blocked, and the records
converge.
"""

from __future__ import absolute_import, unicode_literals

import os
import random

import pytest

from registry_refcount import durable
from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import recovery
from registry_refcount import settings as config
from registry_refcount import sweep

from . import world
from .test_properties import Crashed, crash_at


@pytest.fixture
def synced(monkeypatch):
    """``{inode: bytes when last synced}``, kept as the syncs happen."""
    seen = {}
    sync = durable.data

    def data(fd):
        sync(fd)
        with open('/proc/self/fd/%d' % fd, 'rb') as f:
            seen[os.fstat(fd).st_ino] = f.read()
    monkeypatch.setattr(durable, 'data', data)
    return seen


def _record_files(root):
    """The extension's records: everything it wrote under the registry's
    images and its own folder (its spares aside: never read)."""
    found = []
    for top, folders, files in os.walk(root):
        rel = os.path.relpath(top, root)
        if rel.startswith(layout.SPARES):
            continue
        ours = rel.startswith(layout.PREFIX) or '/_references' in rel
        for name in files:
            if ours or name.startswith(layout.TOMBSTONE):
                found.append(os.path.join(top, name))
    return sorted(found)


def power_loss(store, synced, stale=False, seed=0):
    """Every record comes back as it was last synced; one never synced
    comes back empty, or (``stale``) holding another record's bytes."""
    root = records.local_root(store)
    files = _record_files(root)
    contents = [open(p, 'rb').read() for p in files]
    pick = random.Random(seed)
    for path in files:
        ino = os.stat(path).st_ino
        if ino in synced:
            data = synced[ino]
        else:
            data = pick.choice(contents) if stale else b''
        with open(path, 'wb') as f:
            f.write(data)
    return files


def _needed(store):
    """Images a tag file reaches, with their ancestors."""
    need = set()
    for ns, repo in records.repositories(store, layout.REPOSITORIES):
        for key in protocols.repository_tags(store, ns, repo):
            top = protocols.read_tag(store, key)
            need.update(protocols.read_ancestry(store, top))
    return need


def _after_power_loss(ctx, store):
    """What the operator's tools do after the restart; then nothing is
    lost, nothing blocked, and the records agree with the truth."""
    need = _needed(store)
    for run in range(2):                   # at start, and a while later
        rep = recovery.recover(ctx, intent_timeout=0)
        assert rep['errors'] == []
        assert need <= world.present(store)
    sweep.sweep(ctx, grace_period=0, jobs=1)
    assert need <= world.present(store)
    invariants.repair(ctx, invariants.check(store, jobs=1), min_age=0)
    recovery.recover(ctx, intent_timeout=0)
    sweep.sweep(ctx, grace_period=0, jobs=1)
    assert need <= world.present(store)
    rep = invariants.check(store, jobs=1)
    assert rep.consistent, str(rep.as_dict())
    assert list(records.listing(store, layout.JOURNAL)) == []
    for image in world.folders(store):
        assert protocols.tombstones(store, image) == []
    for image in need:                     # a new tag is taken again
        key = layout.TagKey('ns', 'again', image[:8])
        world.put_tag(ctx, key, image)


def _work(ctx, point):
    """Pushes, tags, a retag and deletes; the last step dies at
    ``point`` (before the power loss), if any."""
    base, app1, app2 = (world.image_id(n) for n in ('base', 'app1',
                                                    'app2'))
    world.push(ctx, base)
    world.push(ctx, app1, base)
    world.push(ctx, app2, base)
    t1, t2 = layout.TagKey('ns', 'app', 'one'), layout.TagKey(
        'ns', 'app', 'two')
    world.put_tag(ctx, t1, app1)
    world.put_tag(ctx, t2, app2)
    world.put_tag(ctx, t1, app2)           # app1 goes
    try:
        with crash_at(point):
            world.delete_tag(ctx, t2)
            world.put_tag(ctx, t2, app2)
            world.delete_tag(ctx, t1)
            world.delete_tag(ctx, t2)      # app2 goes, then base
    except Crashed:
        pass


@pytest.mark.parametrize('stale', [False, True], ids=['empty', 'stale'])
@pytest.mark.parametrize('point', [
    None, 'after_intent', 'after_pending', 'after_tag_reference',
    'reconcile_before_drop', 'before_ledger', 'teardown_before_json',
    'after_json_removed', 'between_cascade_steps', 'before_finalize',
])
def test_a_power_loss_anywhere_loses_nothing_and_blocks_nothing(
        ctx, store, synced, point, stale):
    _work(ctx, point)
    power_loss(store, synced, stale=stale, seed=hash(point) % 1000)
    _after_power_loss(ctx, store)


def _tombstoned(ctx, store, point):
    """A deletion of an image that died at ``point``; its journal entry
    and tombstone (one inode) then come back empty."""
    base = world.image_id('base')
    world.push(ctx, base)
    app = world.image_id('app')
    world.push(ctx, app, base)
    with pytest.raises(Crashed):
        with crash_at(point):
            protocols.collect(ctx, app, 'test')
    (name,) = records.listing(store, layout.JOURNAL)
    root = records.local_root(store)
    open(os.path.join(root, layout.JOURNAL, name), 'wb').close()
    (token,) = protocols.tombstones(store, app)
    assert records.read_raw(store, layout.tombstone(app, token)) == b''
    return base, app


def test_an_emptied_deletion_that_removed_nothing_is_cancelled(ctx, store,
                                                             monkeypatch):
    # (a record that names no owner is judged by its age, floored at a
    # minute: as if a minute old)
    monkeypatch.setattr(config, "MIN_INTENT_TIMEOUT", 0)
    base, app = _tombstoned(ctx, store, 'teardown_before_json')
    rep = recovery.recover(ctx, intent_timeout=0)
    assert rep['deletions_finished'] == 1
    assert world.present(store) == set([base, app])   # nothing deleted
    assert protocols.tombstones(store, app) == []     # nothing blocked
    world.put_tag(ctx, layout.TagKey('ns', 'app', 'v'), app)


def test_an_emptied_deletion_that_removed_the_json_is_finished(ctx, store,
                                                               monkeypatch):
    # (a record that names no owner is judged by its age, floored at a
    # minute: as if a minute old)
    monkeypatch.setattr(config, "MIN_INTENT_TIMEOUT", 0)
    base, app = _tombstoned(ctx, store, 'after_json_removed')
    rep = recovery.recover(ctx, intent_timeout=0)
    assert rep['deletions_finished'] == 1
    assert protocols.tombstones(store, app) == []
    assert records.listing(store, layout.image_dir(app)) is not None
    assert list(records.listing(store, layout.JOURNAL)) == []
    assert world.present(store) == set([base])        # its parent: gc's
    sweep.sweep(ctx, grace_period=0, jobs=1)
    assert world.present(store) == set()


def test_an_emptied_pending_marker_still_counts(ctx, store):
    app = world.image_id('app')
    world.push(ctx, app)
    key = layout.TagKey('ns', 'app', 'v')
    intent_id, doc = world.begin_tag(ctx, key, app)
    store.put_content(layout.tag_file(key), app.encode())
    root = records.local_root(store)
    open(os.path.join(root, layout.intent(intent_id)), 'wb').close()
    assert protocols.needed(store, app)
    protocols.collect(ctx, app, 'test')                # a cascade, gc
    assert world.present(store) == set([app])
    _after_power_loss(ctx, store)


def _counted(fn, *args):
    before = dict(durable.counts)
    result = fn(*args)
    return result, dict((k, durable.counts[k] - before.get(k, 0))
                        for k in ('data', 'folder'))


def test_the_syncs_each_step_costs(ctx, store):
    """The price of durability, step by step (docs/design.rst)."""
    base, app = world.image_id('base'), world.image_id('app')
    world.push(ctx, base)
    world.put_tag(ctx, layout.TagKey('ns', 'base', 'v'), base)
    junk = world.image_id('junk')          # so that every folder is made
    world.push(ctx, junk)
    world.put_tag(ctx, layout.TagKey('ns', 'junk', 'v'), junk)
    world.delete_tag(ctx, layout.TagKey('ns', 'junk', 'v'))
    _, cost = _counted(world.begin_push, ctx, app, base)
    assert cost == {'data': 0, 'folder': 1}            # the child marker
    world.end_push(ctx, app, base)
    key = layout.TagKey('ns', 'app', 'v')
    (intent_id, doc), cost = _counted(world.begin_tag, ctx, key, app)
    # the intent's bytes; the intents folder, the new _references/ and
    # the image folder that now holds it
    assert cost == {'data': 1, 'folder': 3}
    store.put_content(layout.tag_file(key), app.encode())
    _, cost = _counted(world.after_response, ctx, intent_id, doc)
    assert cost == {'data': 1, 'folder': 1}            # ledger; tag marker
    _, cost = _counted(world.delete_tag, ctx, key)
    # the intent noting the image (protocols.Notes), the tag file's folder
    # (the file is gone); the hold; the journal, its folder and the
    # image's (tombstone), then the image's removals
    assert cost == {'data': 1 + 1 + 1, 'folder': 1 + 1 + 3}
