"""The gc sweep on the real file driver."""

from __future__ import absolute_import, unicode_literals

import json
import os
import time

from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import owner
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import sweep

from .world import image_id, present, push, put_tag, written_ago

T = layout.TagKey


def test_gc_removes_abandoned_pushes_after_grace(ctx, store):
    push(ctx, image_id('base'))
    push(ctx, image_id('kept'), image_id('base'))
    put_tag(ctx, T('ns', 'a', 'v'), image_id('kept'))
    push(ctx, image_id('lost1'), image_id('base'))
    push(ctx, image_id('lost2'), image_id('lost1'))
    push(ctx, image_id('root'))
    rep = sweep.sweep(ctx, grace_period=100)
    assert rep['deleted'] == [] and rep['kept_young'] == 3
    # each kept one says when it becomes eligible
    assert sorted(y['image'] for y in rep['young']) == sorted(
        image_id(n) for n in ('lost1', 'lost2', 'root'))
    assert all(90 < y['eligible_in'] <= 100 for y in rep['young'])
    # dry run, 1000 s later: reports what a real run deletes, changes
    # nothing (and starts no clock: it needs none)
    later = time.time() + 1000
    before = sorted(records.listing(store, 'images'))
    rep = sweep.sweep(ctx, grace_period=100, now=later, dry_run=True)
    assert set(d['image'] for d in rep['deleted']) == {
        image_id('lost1'), image_id('lost2'), image_id('root')}
    assert sorted(records.listing(store, 'images')) == before
    rep = sweep.sweep(ctx, grace_period=100, now=later)
    assert set(d['image'] for d in rep['deleted']) == {
        image_id('lost1'), image_id('lost2'), image_id('root')}
    assert present(store) == {image_id('base'), image_id('kept')}
    rep = invariants.check(store, jobs=1)
    assert rep.r1 == [] and rep.unreachable == [] and rep.s1 == []


def test_gc_keeps_pending_and_fresh_children(ctx, store):
    push(ctx, image_id('p'))
    # a child registered but whose json has not come yet: fresh
    protocols.register_child(ctx, image_id('c'), image_id('p'))
    written_ago(store, image_id('p'), 1000)
    rep = sweep.sweep(ctx, grace_period=100)     # p is ripe, c is fresh
    assert present(store) == {image_id('p')}
    assert rep['kept_referenced'] == 1
    # an in-flight tag write keeps its image
    push(ctx, image_id('q'))
    iid = protocols.new_intent_id()
    key = T('ns', 'q', 'v')
    protocols.begin_tag_write(ctx, iid, key, dict(tag=str(key),
                                                  image=image_id('q')))
    sweep.sweep(ctx, grace_period=0)
    assert image_id('q') in present(store)
    # once the intent is gone the pending marker is stale (no time in
    # flight is allowed here)
    records.remove(store, layout.intent(iid))
    sweep.sweep(ctx, grace_period=0)
    assert image_id('q') not in present(store)


def test_gc_keeps_a_pending_marker_whose_intent_has_not_come(ctx, store):
    """On object storage a tag write's intent and pending marker go at
    once: the marker may be seen first.  Without its intent it is stale
    only once older than work in flight (or its owner is gone)."""
    push(ctx, image_id('early'))
    marker = layout.pending_marker(protocols.new_intent_id())
    content = json.dumps({'tag': 'ns/e:v', 'at': time.time(),
                          'owner': dict(owner.me(), host='elsewhere')})
    records.write_marker(store, image_id('early'), marker, content)
    written_ago(store, image_id('early'), 3 * 86400)
    path = os.path.join(records.local_root(store),
                        layout.marker_path(image_id('early'), marker))
    rep = sweep.sweep(ctx, grace_period=0, in_flight_age=600)
    assert image_id('early') in present(store), rep
    when = time.time() - 700
    os.utime(path, (when, when))
    rep = sweep.sweep(ctx, grace_period=0, in_flight_age=600)
    assert image_id('early') not in present(store), rep


def test_gc_old_dangling_child_and_stale_tag_marker(ctx, store):
    push(ctx, image_id('p'))
    store.put_content(layout.marker_path(image_id('p'), layout.child_marker(
        image_id('never'))), json.dumps({'at': 1.0}).encode())
    # written long ago, on the storage's clock
    os.utime(os.path.join(records.local_root(store), layout.marker_path(
        image_id('p'), layout.child_marker(image_id('never')))), (1.0, 1.0))
    push(ctx, image_id('r'))
    key = T('ns', 'r', 'v')
    put_tag(ctx, key, image_id('r'))
    store.remove(layout.tag_file(key))      # behind the extension's back
    rep = sweep.sweep(ctx, grace_period=10, now=time.time() + 1000)
    assert present(store) == set()
    # r's tag was deleted behind the extension's back: gc catches up with
    # that first (gap.catch_up), and r goes by the tag's reconcile
    assert [d['image'] for d in rep['deleted']] == [image_id('p')]


def test_gc_on_a_missing_ancestry_keeps_its_chain_and_collects_the_rest(
        ctx, store):
    push(ctx, image_id('a'))
    push(ctx, image_id('b'), image_id('a'))
    put_tag(ctx, T('ns', 'b', 'v'), image_id('b'))
    push(ctx, image_id('orphan'))
    store.remove(layout.image_file(image_id('b'), 'ancestry'))
    rep = sweep.sweep(ctx, grace_period=0)
    assert [d['image'] for d in rep['deleted']] == [image_id('orphan')]
    assert [d['image'] for d in rep['damaged']] == [image_id('b')]
    assert present(store) == {image_id('a'), image_id('b')}


def test_gc_repairs_tag_references(ctx, store):
    push(ctx, image_id('a'))
    key = T('ns', 'a', 'v')
    store.put_content(layout.tag_file(key), image_id('a').encode())
    rep = sweep.sweep(ctx, grace_period=0)
    # written behind the extension's back: gc catches up with it first
    assert rep['caught_up'] == 1 and rep['repaired'] == []
    assert invariants.check(store, jobs=1).r1 == []


def test_gc_same_decisions_in_small_batches_serial_or_pooled(ctx, store,
                                                             monkeypatch):
    """The mark in rounds of BATCH tags on one shared pool (its chains
    folded as they arrive) decides what the serial sweep decides."""
    push(ctx, image_id('base'))
    for n in range(7):
        push(ctx, image_id('app%d' % n), image_id('base'))
        push(ctx, image_id('top%d' % n), image_id('app%d' % n))
        if n % 3:
            put_tag(ctx, T('ns', 'r%d' % n, 'v'), image_id('top%d' % n))
    monkeypatch.setattr(sweep, 'BATCH', 2)
    later = time.time() + 1000
    reports = [sweep.sweep(ctx, grace_period=100, now=later, jobs=jobs,
                           dry_run=True) for jobs in (1, 3, 8)]
    for rep in reports:
        assert (rep['tags'], rep['images'], rep['reachable'],
                rep['candidates'], len(rep['deleted'])) == (4, 15, 9, 6, 6)
    rep = sweep.sweep(ctx, grace_period=100, now=later, jobs=3)
    assert rep['errors'] == [] and len(rep['deleted']) == 6
    assert present(store) == set(
        [image_id('base')] + [image_id('%s%d' % (kind, n))
                              for kind in ('app', 'top')
                              for n in range(7) if n % 3])


def test_pool_imap_keeps_order_and_shares_one_pool():
    from registry_refcount import truth
    items = list(range(50))
    assert list(truth.pool_imap(lambda x: x * x, items, 4)) == [
        x * x for x in items]
    for jobs in (1, 4):
        with truth.workers(jobs) as pool:
            for _ in range(3):
                assert truth.pool_map(lambda x: -x, items, pool=pool) == [
                    -x for x in items]


def test_an_image_is_as_old_as_its_newest_file(ctx, store):
    """The first gc after install frees the backlog: an orphan whose
    files were written days ago goes at once, one written to a minute
    ago (a push resumed: its layer just came) waits, and the extension's
    own records (a marker moved just now) do not make an image young."""
    push(ctx, image_id('old'))
    push(ctx, image_id('resumed'))
    push(ctx, image_id('marked'))
    for name in ('old', 'resumed', 'marked'):
        written_ago(store, image_id(name), 3 * 86400)
    os.utime(os.path.join(records.local_root(store), layout.image_file(
        image_id('resumed'), 'layer')), None)
    # a marker written just now, of a tag write that is over (stale)
    iid = protocols.new_intent_id()
    key = T('ns', 'm', 'v')
    protocols.begin_tag_write(ctx, iid, key, dict(tag=str(key),
                                                  image=image_id('marked')))
    records.remove(store, layout.intent(iid))
    owner.end(iid)                          # its request is over
    rep = sweep.sweep(ctx, grace_period=86400)
    assert sorted(d['image'] for d in rep['deleted']) == sorted(
        [image_id('old'), image_id('marked')])
    assert [y['image'] for y in rep['young']] == [image_id('resumed')]
    assert 86000 < rep['young'][0]['eligible_in'] <= 86400
    assert all('last written 3d ago' in d['reason'] for d in rep['deleted'])
    assert present(store) == {image_id('resumed')}


def test_gc_counts_only_what_it_deleted(ctx, store, monkeypatch):
    """An image the online path deleted between the mark and the sweep
    is not counted as the sweep's."""
    push(ctx, image_id('a'))
    push(ctx, image_id('b'))
    collect = protocols.collect

    def online_first(ctx_, image, reason):
        if image == image_id('a'):
            collect(ctx_, image, 'online, meanwhile')
        return collect(ctx_, image, reason)
    monkeypatch.setattr(protocols, 'collect', online_first)
    rep = sweep.sweep(ctx, grace_period=0)
    assert [d['image'] for d in rep['deleted']] == [image_id('b')]
    assert rep['gone_meanwhile'] == 1 and present(store) == set()


def test_repair_drops_a_pending_marker_without_intent_once_old(ctx, store):
    """A tag write that died with its pending marker landed and its
    intent not (object storage writes both at once): on a tagged image gc
    never judges it; verify reports it, and --repair drops it once it is
    older than the intent timeout, not before."""
    push(ctx, image_id('kept'))
    put_tag(ctx, T('ns', 'k', 'v'), image_id('kept'))
    marker = layout.pending_marker(protocols.new_intent_id())
    content = json.dumps({'tag': 'ns/k:w', 'at': time.time(),
                          'owner': dict(owner.me(), host='elsewhere')})
    records.write_marker(store, image_id('kept'), marker, content)
    path = layout.marker_path(image_id('kept'), marker)
    rep = invariants.check(store, jobs=1)
    assert [d['marker'] for d in rep.r1] == [marker]
    assert invariants.repair(ctx, rep, min_age=600) == 0
    assert store.exists(path)
    when = time.time() - 700
    os.utime(os.path.join(records.local_root(store), path), (when, when))
    assert invariants.repair(ctx, invariants.check(store, jobs=1),
                             min_age=600) == 1
    assert not store.exists(path)
    assert invariants.check(store, jobs=1).r1 == []
