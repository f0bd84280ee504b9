"""The protocols on the real file driver: scenarios of issue 2."""

from __future__ import absolute_import, unicode_literals

import errno
import json
import os

import pytest

from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import owner
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import recovery
from registry_refcount import sweep

from . import world
from .world import (Refused, delete_repository, delete_tag, image_id,
                    present, push, put_tag)

T = layout.TagKey


def chain(ctx, names, parent=None):
    ids = []
    for n in names:
        push(ctx, image_id(n), parent)
        parent = image_id(n)
        ids.append(parent)
    return ids


def consistent(store):
    rep = invariants.check(store, jobs=1)
    assert rep.s1 == []
    assert rep.r1 == []
    assert rep.unreadable == [] and rep.journal == [] and rep.intents == []
    return rep


def test_delete_tag_frees_whole_chain(ctx, store):
    ids = chain(ctx, 'abc')
    other = chain(ctx, 'xy')
    put_tag(ctx, T('ns', 'app', 'v1'), ids[-1])
    put_tag(ctx, T('ns', 'other', 'v1'), other[-1])
    delete_tag(ctx, T('ns', 'app', 'v1'))
    assert present(store) == set(other)
    assert set(records.listing(store, 'images')) == set(other)
    consistent(store)


def test_two_tags_share_base(ctx, store):
    base = chain(ctx, 'b')
    a = chain(ctx, ['a1', 'a2'], base[-1])
    b = chain(ctx, ['b1'], base[-1])
    put_tag(ctx, T('ns', 'a', 'latest'), a[-1])
    put_tag(ctx, T('ns', 'b', 'latest'), b[-1])
    delete_tag(ctx, T('ns', 'a', 'latest'))
    assert present(store) == set(base + b)
    consistent(store)


def test_retag_to_sibling_then_descendant(ctx, store):
    base = chain(ctx, 'b')
    a = chain(ctx, ['a1', 'a2'], base[-1])
    b = chain(ctx, ['s1'], base[-1])
    key = T('ns', 'app', 'latest')
    put_tag(ctx, key, a[-1])
    put_tag(ctx, key, b[-1])
    assert present(store) == set(base + b)
    d = chain(ctx, ['d1', 'd2'], b[-1])
    put_tag(ctx, key, d[-1])
    assert present(store) == set(base + b + d)
    consistent(store)


def test_same_image_two_repositories(ctx, store):
    ids = chain(ctx, 'ab')
    put_tag(ctx, T('ns', 'one', 'v'), ids[-1])
    put_tag(ctx, T('other', 'two', 'v'), ids[-1])
    delete_tag(ctx, T('ns', 'one', 'v'))
    assert present(store) == set(ids)
    delete_tag(ctx, T('other', 'two', 'v'))
    assert present(store) == set()
    consistent(store)


def test_repository_delete(ctx, store):
    base = chain(ctx, 'b')
    mine = chain(ctx, ['m1'], base[-1])
    mine2 = chain(ctx, ['m2'], base[-1])
    theirs = chain(ctx, ['t1'], base[-1])
    put_tag(ctx, T('ns', 'mine', 'a'), mine[-1])
    put_tag(ctx, T('ns', 'mine', 'b'), mine2[-1])
    put_tag(ctx, T('ns', 'theirs', 'a'), theirs[-1])
    delete_repository(ctx, 'ns', 'mine')
    assert present(store) == set(base + theirs)
    assert list(records.listing(store, layout.ledger_dir('ns', 'mine'))) == []
    consistent(store)


def test_untagged_push_is_left_for_gc(ctx, store):
    ids = chain(ctx, 'ab')
    assert present(store) == set(ids)
    rep = consistent(store)
    assert set(rep.unreachable) == set(ids)


def test_child_refused_while_parent_deleted(ctx, store):
    ids = chain(ctx, 'a')
    put_tag(ctx, T('ns', 'a', 'v'), ids[0])
    delete_tag(ctx, T('ns', 'a', 'v'))
    with pytest.raises(Refused):
        push(ctx, image_id('child'), ids[0])
    # a tombstoned parent refuses children too
    ids = chain(ctx, 'p')
    store.put_content(layout.tombstone(ids[0]), b'{}')
    assert protocols.register_child(ctx, image_id('c2'), ids[0])


def test_pending_refused_for_deleted_image(ctx, store):
    ids = chain(ctx, 'a')
    put_tag(ctx, T('ns', 'a', 'v'), ids[0])
    delete_tag(ctx, T('ns', 'a', 'v'))
    with pytest.raises(Refused):
        put_tag(ctx, T('ns', 'a', 'v'), ids[0])
    assert records.listing(store, layout.INTENTS) is not None
    assert list(records.listing(store, layout.INTENTS)) == []


def test_not_initialised_deletes_nothing(ctx, store):
    ids = chain(ctx, 'ab')
    records.write(store, layout.STATE, {'initialised': False})
    store._refcount_initialised = False
    put_tag(ctx, T('ns', 'a', 'v'), ids[-1])
    delete_tag(ctx, T('ns', 'a', 'v'))
    assert present(store) == set(ids)


def test_existing_registry_is_not_initialised(tmpdir):
    from docker_registry.drivers import file as file_driver
    s = file_driver.Storage(path=str(tmpdir.join('s')))
    s.put_content(layout.image_file(image_id(1), 'json'), b'{}')
    assert protocols.initialise(s) is False
    assert protocols.is_initialised(s) is False
    s2 = file_driver.Storage(path=str(tmpdir.join('empty')))
    assert protocols.initialise(s2) is True


def test_storage_path_with_a_trailing_slash(tmpdir):
    """The records' paths are built from the driver's root by hand (not
    os.path.join): a root written with a trailing '/' in the config must
    give the same files."""
    from docker_registry.drivers import file as file_driver
    s = file_driver.Storage(path=str(tmpdir.join('storage')) + '//')
    protocols.initialise(s)
    assert records.local_root(s) == str(tmpdir.join('storage'))
    c = protocols.context(s, locks.LocalLocks(str(tmpdir.join('locks'))))
    ids = chain(c, 'ab')
    put_tag(c, T('ns', 'a', 'v'), ids[-1])
    assert records.exists(s, layout.marker_path(
        ids[-1], T('ns', 'a', 'v').marker))
    delete_tag(c, T('ns', 'a', 'v'))
    assert present(s) == set()


def test_dry_run_deletes_nothing(ctx, store):
    dry = ctx._replace(dry_run=True)
    ids = chain(dry, 'ab')
    put_tag(dry, T('ns', 'a', 'v'), ids[-1])
    delete_tag(dry, T('ns', 'a', 'v'))
    assert present(store) == set(ids)


def test_invalid_ids_never_delete(ctx, store):
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    # someone writes a path trick into the tag file behind our back
    store.put_content(layout.tag_file(key), b'../repositories/ns/a')
    with pytest.raises(protocols.BadInput) as raised:
        protocols.reconcile_tag(ctx, key)
    assert 'push the tag again, or delete it' in str(raised.value)
    assert present(store) == set(ids)
    # a parent field naming something invalid: no deletion
    store.put_content(layout.image_file(ids[0], 'json'),
                      json.dumps({'id': ids[0], 'parent': '..'}).encode())
    with pytest.raises(protocols.BadInput):
        protocols.parent_of(store, ids[0])
    with pytest.raises(layout.InvalidName):
        layout.image_dir('../repositories')


def test_an_unreadable_tag_file_never_deletes(ctx, store):
    """A tag file that is there but cannot be read (here a folder: EISDIR;
    a permission error alike) is not an absent tag: no reconcile, no
    sweep drops what it names."""
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    path = os.path.join(store._root_path, layout.tag_file(key))
    os.remove(path)
    os.mkdir(path)
    with pytest.raises(protocols.BadInput):
        protocols.reconcile_tag(ctx, key)
    assert present(store) == set(ids)
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert rep['errors'] and rep['deleted'] == []
    assert present(store) == set(ids)


def test_an_unreadable_repository_folder_is_not_an_empty_one(
        ctx, store, monkeypatch):
    """The file driver's listing turns every error into "not there": an
    unreadable repository folder (EACCES, injected: the tests run as
    root) would hide its tags from gc's mark, and the chains they name
    would be swept."""
    ids = chain(ctx, 'ab')
    put_tag(ctx, T('ns', 'a', 'v'), ids[-1])
    folder = os.path.abspath(os.path.join(
        store._root_path, layout.repository_dir('ns', 'a')))
    real = os.listdir

    def listdir(path):
        if os.path.abspath(layout.text(path)) == layout.text(folder):
            raise OSError(errno.EACCES, 'Permission denied', path)
        return real(path)
    monkeypatch.setattr(os, 'listdir', listdir)
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    monkeypatch.undo()
    assert rep['errors'] and rep['deleted'] == []
    assert present(store) == set(ids)


def test_missing_ancestry_and_json_never_delete(ctx, store):
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    store.put_content(layout.image_file(ids[-1], 'json'), b'{not json')
    store.remove(layout.image_file(ids[-1], 'ancestry'))
    delete_tag(ctx, key)
    assert present(store) == set(ids)


def test_corrupt_ledger_is_quarantined_not_acted_on(ctx, store):
    ids = chain(ctx, 'ab')
    other = chain(ctx, 'c')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    for bad in (b'', b'{"image": "x', b'[1]', b'{"v": 99, "image": "a"}'):
        store.put_content(layout.ledger(key), bad)
        assert protocols.read_ledger(store, key) is protocols.UNKNOWN
    put_tag(ctx, key, other[0])     # the old image is not deleted on its word
    assert present(store) == set(ids + other)
    rep = invariants.check(store, jobs=1)
    assert rep.r1 and rep.r1[0]['kind'] == 'stale_marker'
    invariants.repair(ctx, rep)
    consistent(store)


def test_torn_marker_counts_as_reference(ctx, store):
    ids = chain(ctx, 'a')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[0])
    store.put_content(layout.marker_path(ids[0], key.marker), b'')
    rep = invariants.check(store, jobs=1)
    assert [d['kind'] for d in rep.r1] == ['torn_marker']
    invariants.repair(ctx, rep)
    consistent(store)
    delete_tag(ctx, key)
    assert present(store) == set()


def test_legacy_references_file_keeps_image(ctx, store):
    ids = chain(ctx, 'a')
    store.put_content(layout.references_dir(ids[0]),
                      b'{"[\\"ns\\", \\"a\\", \\"v\\"]": "x"}')
    assert protocols.needed(store, ids[0])


def plant_legacy_file(store, image):
    """PR #606's per-tag-list *file* where the folder of markers goes."""
    root = records.local_root(store)
    if root and os.path.isdir(os.path.join(root, layout.references_dir(
            image))):
        os.rmdir(os.path.join(root, layout.references_dir(image)))
    store.put_content(layout.references_dir(image),
                      b'{"[\\"ns\\", \\"old\\", \\"v\\"]": "%s"}'
                      % image.encode())


def test_tag_on_legacy_file_moves_it_aside_where_it_still_counts(ctx,
                                                                 store):
    ids = chain(ctx, 'a')
    plant_legacy_file(store, ids[0])
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[0])               # no ENOTDIR: the file moved
    assert store.exists(layout.marker_path(ids[0], key.marker))
    assert records.legacy_references(store, ids[0]) is not None
    delete_tag(ctx, key)
    assert present(store) == set(ids)       # the old record still counts
    assert invariants.check(store, jobs=1).legacy == ids


def test_removing_a_legacy_record_never_takes_markers(ctx, store):
    """A rebuild that converts an image another already converted (and
    that got markers since) removes only files."""
    ids = chain(ctx, 'ab')
    plant_legacy_file(store, ids[1])
    put_tag(ctx, T('ns', 'b', 'v'), ids[1])
    for image in ids:
        records.remove_legacy(store, image)
    assert records.legacy_references(store, ids[1]) is None
    consistent(store)
    assert sorted(records.markers(store, ids[0])) == [
        layout.child_marker(ids[1])]


def test_recovery_finishes_abandoned_intent(ctx, store, monkeypatch):
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    # a tag delete whose worker died right after the registry removed the
    # tag file: the intent is all that is left
    intent_id = world.abandoned_intent(store, tag=str(key))
    store.remove(layout.tag_file(key))
    # on another host: only its age on the storage's clock tells
    world.as_another_hosts(store, layout.intent(intent_id))
    rep = recovery.recover(ctx, intent_timeout=60)
    assert rep['intents_waiting'] == 1 and present(store) == set(ids)
    # another host's work is never taken for abandoned below 60 s
    rep = recovery.recover(ctx, intent_timeout=0)
    assert rep['intents_waiting'] == 1 and present(store) == set(ids)
    # (the floor lowered: as if the intent were a minute old)
    from registry_refcount import settings
    monkeypatch.setattr(settings, 'MIN_INTENT_TIMEOUT', 0)
    rep = recovery.recover(ctx, intent_timeout=0)
    assert rep['intents_finished'] == 1
    assert present(store) == set()
    consistent(store)


def test_pending_marker_protects_the_tag_write_window(ctx, store):
    """The registry checks that the image exists, then writes the tag.  A
    delete of the image's last tag in between must not delete it."""
    ids = chain(ctx, 'ab')
    old, new = T('ns', 'a', 'old'), T('ns', 'b', 'new')
    put_tag(ctx, old, ids[-1])
    # request_started of `PUT ns/b:new` -> ids[-1]
    intent_id = protocols.new_intent_id()
    doc = {'tag': str(new), 'image': ids[-1]}
    doc = protocols.begin_tag_write(ctx, intent_id, new, doc)
    assert doc
    assert store.exists(layout.image_file(ids[-1], 'json'))   # its check
    delete_tag(ctx, old)                       # another worker, meanwhile
    assert present(store) == set(ids)          # kept by the pending marker
    store.put_content(layout.tag_file(new), ids[-1].encode())
    protocols.finish_intent(ctx, intent_id, doc)   # after the response
    assert present(store) == set(ids)
    consistent(store)
    # and without a pending marker the same interleaving loses the image:
    # the property the marker is there for
    other = chain(ctx, ['c'])
    put_tag(ctx, old, other[0])
    delete_tag(ctx, old)
    assert other[0] not in present(store)


def test_recovery_rebuilds_quarantined_records(ctx, store):
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    store.put_content(layout.ledger(key), b'{"image": "tru')
    bad_intent = layout.intent(protocols.new_intent_id())
    store.put_content(bad_intent, b'')
    store.put_content(layout.CANDIDATES, b'[')
    # found unreadable by whoever reads them first: noted for recovery
    assert protocols.read_ledger(store, key) is protocols.UNKNOWN
    with pytest.raises(records.Unreadable):
        records.read(store, layout.CANDIDATES)
    assert len(records.quarantined(store)) == 2
    rep = recovery.recover(ctx, intent_timeout=60)
    assert bad_intent in rep['unreadable'] and rep['rebuilt'] == 2
    assert store.exists(bad_intent)            # its request may be alive
    rep = recovery.recover(ctx, intent_timeout=0)
    assert rep['rebuilt'] == 1
    assert protocols.read_ledger(store, key) == ids[-1]
    assert not store.exists(bad_intent)
    assert records.quarantined(store) == []
    consistent(store)


class Died(BaseException):
    """The process died here (a crash point)."""


def die_at(monkeypatch, point):
    from registry_refcount import crash

    before = set(owner._working)    # the dying request's work dies with it

    def reached(name):
        if name == point:
            owner._working.intersection_update(before)
            raise Died(name)
    monkeypatch.setattr(crash, 'point', reached)


def test_crash_after_marker_then_another_write_of_the_tag(ctx, store,
                                                          monkeypatch):
    """Found by the kill -9 test: a worker dies after putting the tag's
    marker on X; another request then moves the tag to Y.  The marker on X
    must not be left behind."""
    x, y, old = chain(ctx, ['x']), chain(ctx, ['y']), chain(ctx, ['o'])
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, old[0])
    die_at(monkeypatch, 'after_tag_reference')
    with pytest.raises(Died):
        put_tag(ctx, key, x[0])
    monkeypatch.undo()
    put_tag(ctx, key, y[0])
    recovery.recover(ctx, intent_timeout=0)
    assert present(store) == set(y)
    consistent(store)


def test_crash_before_ledger_then_the_tag_is_written_again(ctx, store,
                                                           monkeypatch):
    """Found by the property tests: a repository delete dies after taking
    the tag's marker off X, before the ledger; a tag write of the same tag
    to X that began before it then completes.  X must keep a marker."""
    x = chain(ctx, ['x'])
    key = T('lib', 'web', 'latest')
    put_tag(ctx, key, x[0])
    intent_id = protocols.new_intent_id()                # begin: PUT tag
    doc = {'tag': str(key), 'image': x[0]}
    doc = protocols.begin_tag_write(ctx, intent_id, key, doc)
    assert doc
    die_at(monkeypatch, 'before_ledger')
    with pytest.raises(Died):
        delete_repository(ctx, 'lib', 'web')
    monkeypatch.undo()
    store.put_content(layout.tag_file(key), x[0].encode())    # the view
    protocols.finish_intent(ctx, intent_id, doc)   # after the response
    recovery.recover(ctx, intent_timeout=0)
    assert present(store) == set(x)
    consistent(store)


def test_a_deleted_tag_keeps_its_ledger_until_the_marker_is_off(
        ctx, store, monkeypatch):
    """A tag delete does not rewrite the ledger before it takes the marker
    off: the ledger already names the image.  A crash in between leaves a
    ledger that still names it, and the intent's recovery finishes."""
    x = chain(ctx, ['x'])
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, x[0])
    writes = []
    real_write = records.write
    monkeypatch.setattr(records, 'write', lambda s, path, *a, **k: (
        writes.append(path), real_write(s, path, *a, **k)))
    die_at(monkeypatch, 'before_ledger')
    with pytest.raises(Died):
        delete_tag(ctx, key)
    monkeypatch.undo()
    assert layout.ledger(key) not in writes
    assert protocols.read_ledger(store, key) == x[0]
    assert present(store) == set()            # the image went
    recovery.recover(ctx, intent_timeout=0)
    assert records.read(store, layout.ledger(key)) is None
    consistent(store)


def test_a_tombstone_is_another_name_of_the_journal_entry(
        ctx, store, monkeypatch):
    """On local storage a deletion links its tombstone to its journal
    entry (one document, one write); finishing the deletion removes
    both."""
    import os
    x = chain(ctx, ['x'])
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, x[0])
    die_at(monkeypatch, 'after_tombstone')
    with pytest.raises(Died):
        delete_tag(ctx, key)
    monkeypatch.undo()
    root = records.local_root(store)
    (token,) = protocols.tombstones(store, x[0])
    tomb = os.stat(os.path.join(root, layout.tombstone(x[0], token)))
    journal = os.stat(os.path.join(root, layout.journal(x[0], token)))
    assert tomb.st_ino == journal.st_ino and tomb.st_nlink == 2
    assert json.loads(records.read_raw(
        store, layout.tombstone(x[0], token)).decode('utf-8'))[
            'image'] == x[0]
    recovery.recover(ctx, intent_timeout=0)
    assert present(store) == set()
    assert not os.path.exists(os.path.join(root, layout.tombstone(
        x[0], token)))
    assert not os.path.exists(os.path.join(root, layout.journal(
        x[0], token)))
    consistent(store)


def test_a_tag_file_read_while_the_registry_rewrites_it(ctx, store):
    """Issue 21, item 10: the registry rewrites a tag file in place
    (truncate, then write); read in between it is empty.  Reading it
    again a moment later settles it, where taking it as torn left the
    intent to wait for recovery."""
    import threading
    ids = chain(ctx, 'ab')
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, ids[-1])
    store.put_content(layout.tag_file(key), b'')
    writer = threading.Timer(0.03, store.put_content,
                             (layout.tag_file(key), ids[0].encode()))
    writer.start()
    try:
        assert protocols.read_tag(store, key) == ids[0]
    finally:
        writer.join()
    store.put_content(layout.tag_file(key), b'')
    with pytest.raises(protocols.BadInput):
        protocols.read_tag(store, key)      # empty for good: torn


def test_a_stray_tag_marker_of_a_write_that_lost_its_lock(ctx, store):
    """The R1 schedule of the model (tests/model) and the stall tests: a
    reconcile of ``PUT T -> Y`` that lost its lock puts T's marker on Y
    after the new holder's reconcile moved T to Z and wrote the ledger.
    The ledger does not name Y; the write's own finish (or recovery's)
    takes the marker off, and Y goes."""
    y, z = chain(ctx, ['y']), chain(ctx, ['z'])
    key = T('ns', 'a', 'v')
    intent_id = protocols.new_intent_id()
    doc = {'tag': str(key), 'image': y[0]}
    doc = protocols.begin_tag_write(ctx, intent_id, key, doc)
    assert doc
    store.put_content(layout.tag_file(key), y[0].encode())
    put_tag(ctx, key, z[0])                 # the new holder: T -> Z
    records.write_marker(store, y[0], key.marker, str(key))   # the stray
    owner.end(intent_id)                    # the first request gave up
    rep = recovery.recover(ctx, intent_timeout=60)
    assert rep['errors'] == [] and rep['intents_finished'] == 1
    assert present(store) == set(z)
    consistent(store)


def test_recovery_removes_old_spare_folders_of_earlier_versions(ctx, store):
    """Earlier versions kept spare files in a folder a process: recovery
    removes each once untouched for a day, and leaves a recent one (a
    worker of that version may still write into it)."""
    import os
    import time
    root = records.local_root(store)
    base = os.path.join(root, layout.SPARES)
    for name, age in (('old', 2 * 86400), ('recent', 60)):
        os.makedirs(os.path.join(base, name))
        with open(os.path.join(base, name, 's1'), 'wb') as f:
            f.write(b'stale bytes')
        then = time.time() - age
        os.utime(os.path.join(base, name), (then, then))
    recovery.recover(ctx, intent_timeout=0)
    assert sorted(os.listdir(base)) == ['recent']
    os.utime(os.path.join(base, 'recent'), (0, 0))
    recovery.recover(ctx, intent_timeout=0)
    assert not os.path.exists(base)


def test_a_marker_write_killed_before_its_rename_keeps_nothing(ctx, store):
    """A writer killed between a marker's temporary file and its rename
    (kill -9 under load: test_kill_workers_under_load, 1 run in 12) left
    the file in ``_references/``: the image counted as referenced for
    ever, and even gc --grace 0 kept it.  A temporary file is no marker;
    the deletion removes it with the image's files."""
    x = chain(ctx, ['x'])
    key = T('ns', 'a', 'v')
    put_tag(ctx, key, x[0])
    root = records.local_root(store)
    refs = os.path.join(root, layout.references_dir(x[0]))
    with open(os.path.join(refs, layout.temporary_name()), 'wb') as f:
        f.write(b'{"tag": "ns/a:w"}')
    assert protocols.needed(store, x[0])            # the tag's marker
    delete_tag(ctx, key)
    assert present(store) == set()
    assert not os.path.exists(os.path.join(root, layout.image_dir(x[0])))
    consistent(store)
