"""The undo window at the storage level (issue 24): the trash, the purge,
rescue and restore, on the real file driver (and, imported by
tests/s3/test_protocols_s3.py, on the registry's S3 driver)."""

from __future__ import absolute_import, unicode_literals

from registry_refcount import layout
from registry_refcount import protocols
from registry_refcount import purge
from registry_refcount import records
from registry_refcount import restore
from registry_refcount import sweep
from registry_refcount import trash

from .test_protocols import chain, consistent
from .world import begin_tag, delete_tag, end_tag, present, put_tag

T = layout.TagKey
HOUR = 3600


def windowed(ctx):
    return ctx._replace(undo_window=HOUR)


def test_a_tag_delete_trashes_the_top_and_the_purge_takes_the_chain(
        ctx, store):
    ctx = windowed(ctx)
    ids = chain(ctx, ['t-a', 't-b', 't-c'])
    put_tag(ctx, T('ns', 'app', 'v1'), ids[-1])
    delete_tag(ctx, T('ns', 'app', 'v1'))
    assert present(store) == set(ids)
    assert trash.entries(store) == [ids[-1]]
    now = records.now(store)
    rep = purge.purge(ctx, now=now)
    assert rep['purged'] == [] and len(rep['waiting']) == 1, rep
    assert present(store) == set(ids)
    rep = purge.purge(ctx, now=now + HOUR + 1)
    assert rep['purged'] == list(reversed(ids)), rep
    assert rep['bytes_freed'] > 0
    assert present(store) == set()
    assert trash.entries(store) == []
    consistent(store)


def test_a_reference_written_again_rescues_the_image(ctx, store):
    ctx = windowed(ctx)
    ids = chain(ctx, ['r-a'])
    key = T('ns', 'app', 'v1')
    put_tag(ctx, key, ids[-1])
    delete_tag(ctx, key)
    put_tag(ctx, key, ids[-1])
    rep = purge.purge(ctx, everything=True)
    assert rep['rescued'] == ids and rep['purged'] == [], rep
    assert present(store) == set(ids) and trash.entries(store) == []
    consistent(store)


def test_a_tag_write_in_flight_keeps_its_image_from_the_purge(ctx, store):
    """The purge meets a pending marker (a tag PUT, a restore, before its
    tag file is written): the handshake keeps the image."""
    ctx = windowed(ctx)
    ids = chain(ctx, ['f-a'])
    key = T('ns', 'app', 'v1')
    put_tag(ctx, key, ids[-1])
    delete_tag(ctx, key)
    intent_id, doc = begin_tag(ctx, key, ids[-1])
    rep = purge.purge(ctx, everything=True)
    assert rep['purged'] == [] and rep['rescued'] == ids, rep
    end_tag(ctx, key, ids[-1], intent_id, doc)
    assert present(store) == set(ids)
    consistent(store)


def test_gc_keeps_the_trash_until_its_time_then_purges_it(ctx, store):
    ctx = windowed(ctx)
    ids = chain(ctx, ['g-a'])
    put_tag(ctx, T('ns', 'app', 'v1'), ids[-1])
    delete_tag(ctx, T('ns', 'app', 'v1'))
    gc = ctx._replace(undo_window=0, by='gc')
    rep = sweep.sweep(gc, 0, jobs=1)
    assert rep['kept_trash'] == 1 and rep['deleted'] == [], rep
    assert present(store) == set(ids)
    rep = sweep.sweep(gc, 0, jobs=1, now=records.now(store) + HOUR + 1)
    assert rep['purged'] == 1, rep
    assert present(store) == set()


def test_an_unreadable_trash_record_keeps_its_image(ctx, store):
    ctx = windowed(ctx)
    ids = chain(ctx, ['u-a'])
    put_tag(ctx, T('ns', 'app', 'v1'), ids[-1])
    delete_tag(ctx, T('ns', 'app', 'v1'))
    records.put(store, layout.trash_entry(ids[-1]), b'{"due": ')
    rep = purge.purge(ctx, everything=True)
    assert rep['purged'] == [] and rep['errors'], rep
    rep = sweep.sweep(ctx._replace(undo_window=0), 0, jobs=1,
                      now=records.now(store) + HOUR + 1)
    assert rep['deleted'] == [] and rep['kept_trash'] == 1, rep
    assert present(store) == set(ids)


def test_restore_puts_a_deleted_tag_back_and_refuses_once_purged(ctx,
                                                                 store):
    ctx = windowed(ctx)
    ids = chain(ctx, ['s-a', 's-b'])
    key = T('ns', 'app', 'v1')
    put_tag(ctx, key, ids[-1])
    delete_tag(ctx, key)
    [(planned, image, now)] = restore.plan(store, 'ns', 'app')
    assert (planned, image, now) == (key, ids[-1], None)
    ancestry = restore.check(store, key, image, now)
    restore.put_back(ctx, key, image, ancestry)
    assert protocols.read_tag(store, key) == ids[-1]
    assert trash.entries(store) == []
    consistent(store)
    delete_tag(ctx, key)
    purge.purge(ctx, everything=True)
    assert present(store) == set()
    [(planned, image, now)] = restore.plan(store, 'ns', 'app', 'v1')
    try:
        restore.check(store, key, image, now)
    except restore.Refused as e:
        assert 'purged' in str(e)
    else:
        raise AssertionError('restored a purged image')
