"""Issue 21 item 12: damaged data must not stop cleanup for everyone.

A crashed push (json and ``_inprogress``, no ancestry) and a tagged image
whose ancestry is truncated: gc keeps exactly the chains those records
could decide (followed through the json parents), collects the rest,
reports each damaged record with what it protects; rebuild does its work
for everything else; ``verify --repair`` writes the ancestry again from
the json parents.
"""

from __future__ import absolute_import, unicode_literals

import json

import pytest

from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import rebuild
from registry_refcount import records
from registry_refcount import sweep

from . import world
from .world import image_id as I

T = layout.TagKey


def chain(ctx, names, parent=None):
    ids = []
    for name in names:
        world.push(ctx, I(name), parent)
        parent = I(name)
        ids.append(parent)
    return ids


def crashed_push(ctx, name, parent):
    """docker-registry's json PUT killed between the json and the
    ancestry: ``_inprogress`` and the json stay, no ancestry."""
    world.begin_push(ctx, I(name), parent)
    ctx.store.put_content(layout.image_file(I(name), '_inprogress'), b'true')
    ctx.store.put_content(layout.image_file(I(name), 'json'), json.dumps(
        {'id': I(name), 'parent': parent}).encode())
    return I(name)


def truncate_ancestry(store, image, how):
    path = layout.image_file(image, 'ancestry')
    whole = json.loads(layout.text(store.get_content(path)))
    if how == 'cut bytes':
        data = store.get_content(path)
        store.put_content(path, data[:len(data) // 2])
    else:                       # a shorter list that still parses
        store.put_content(path, json.dumps(whole[:2]).encode())
    return whole


def damaged_world(ctx, how='cut bytes'):
    """Live chains, garbage, a crashed push on the live base, a tagged
    chain whose top's ancestry is truncated."""
    base, app = chain(ctx, ['base', 'app'])
    world.put_tag(ctx, T('ns', 'app', 'v'), app)
    garbage = chain(ctx, ['g1', 'g2']) + chain(ctx, ['g3'], base)
    crash = crashed_push(ctx, 'crash', base)
    deep = chain(ctx, ['d1', 'd2', 'd3'])
    world.put_tag(ctx, T('ns', 'deep', 'v'), deep[-1])
    whole = truncate_ancestry(ctx.store, deep[-1], how)
    assert whole == deep[::-1]
    return {'live': {base, app}, 'garbage': set(garbage), 'crash': crash,
            'deep': deep}


def damage_of(rep):
    return dict((d['image'], d) for d in rep['damaged'])


@pytest.mark.parametrize('how', ['cut bytes', 'short list'])
def test_gc_collects_what_the_damage_cannot_concern(ctx, store, how):
    w = damaged_world(ctx, how)
    rep = sweep.sweep(ctx, grace_period=0, jobs=2)
    assert rep['errors'] == []
    assert set(d['image'] for d in rep['deleted']) == w['garbage']
    assert world.present(store) == (w['live'] | set(w['deep']) |
                                    {w['crash']})
    damage = damage_of(rep)
    assert set(damage) == {w['crash'], w['deep'][-1]}
    assert damage[w['crash']]['protects'] == [w['crash'], I('base')]
    assert damage[w['deep'][-1]]['protects'] == w['deep'][::-1]
    assert 'ancestry' in damage[w['deep'][-1]]['problem']
    assert '_inprogress' in damage[w['crash']]['problem']
    # the deep chain is whole, and stays so on the next run
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert rep['deleted'] == [] and len(rep['damaged']) == 2


@pytest.mark.parametrize('how', ['cut bytes', 'short list'])
def test_verify_repair_writes_the_ancestry_from_the_json_parents(ctx, store,
                                                                 how):
    w = damaged_world(ctx, how)
    rep = invariants.check(store, jobs=1)
    assert not rep.consistent
    assert sorted(d['image'] for d in rep.damaged) == sorted(
        [w['crash'], w['deep'][-1]])
    before = invariants.outside_listing(records.local_root(store))
    invariants.repair(ctx, rep)
    assert invariants.outside_listing(records.local_root(store)) == before
    for top, whole in ((w['deep'][-1], w['deep'][::-1]),
                       (w['crash'], [w['crash'], I('base')])):
        # as the registry writes it: a JSON list, through the driver
        assert store.get_content(layout.image_file(top, 'ancestry')) == \
            json.dumps(whole).encode()
    assert invariants.check(store, jobs=1).damaged == []
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert rep['errors'] == [] and rep['damaged'] == []
    assert set(d['image'] for d in rep['deleted']) == (
        w['garbage'] | {w['crash']})
    assert world.present(store) == w['live'] | set(w['deep'])


def test_rebuild_completes_for_everything_else(ctx, store):
    w = damaged_world(ctx)
    for image in world.folders(store):          # records lost
        for marker in list(records.markers(store, image)):
            records.remove_marker(store, image, marker)
    records.remove(store, layout.STATE)
    rep = rebuild.rebuild(ctx, jobs=2)
    assert rep['initialised'] and rep['errors'] == []
    assert sorted(d['image'] for d in rep['damaged']) == sorted(
        [w['crash'], w['deep'][-1]])
    check = invariants.check(store, jobs=1)
    assert check.r1 == [] and check.s1 == []
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert set(d['image'] for d in rep['deleted']) == w['garbage']


def unreadable_json(store, image):
    """A finished image damaged: its json cannot be read, no ancestry."""
    store.put_content(layout.image_file(image, 'json'), b'{"id": "trunc')
    store.remove(layout.image_file(image, 'ancestry'))


@pytest.mark.parametrize('tagged', [False, True])
def test_unknown_parent_protects_what_the_records_name(ctx, store, tagged):
    """Neither the json nor the ancestry says the parent: gc keeps the
    image and the images whose records name it as a child, with their
    chains, says so, and collects everything else."""
    base, mid, top = chain(ctx, ['base', 'mid', 'top'])
    orphan = chain(ctx, ['orphan1', 'orphan2'])
    unreadable_json(store, top)
    if tagged:
        world.put_tag(ctx, T('ns', 'top', 'v'), top)
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert rep['errors'] == []
    assert set(d['image'] for d in rep['deleted']) == set(orphan)
    assert world.present(store) == {base, mid, top}
    (damage,) = rep['damaged']
    assert damage['image'] == top
    assert damage['protects'] == [top, mid, base]
    assert 'records' in damage['problem']


def test_rebuild_cannot_enable_deletions_when_a_parent_is_unknown(ctx,
                                                                   store):
    """Online deletions would need the lost child marker: rebuild does
    everything else, and says why it leaves deletions off."""
    base, top = chain(ctx, ['base', 'top'])
    records.remove(store, layout.STATE)
    records.remove_marker(store, base, layout.child_marker(top))
    unreadable_json(store, top)
    rep = rebuild.rebuild(ctx, jobs=1)
    assert not rep['initialised']
    assert [d['image'] for d in rep['damaged']] == [top]
    assert any(top in e and 'parent' in e for e in rep['errors'])


def test_a_torn_tag_file_is_the_last_resort(ctx, store):
    """A tag that cannot be read could name any image: nothing is deleted,
    and the report says why."""
    chain(ctx, ['orphan'])
    store.put_content(layout.tag_file(T('ns', 'x', 'v')), b'torn')
    rep = sweep.sweep(ctx, grace_period=0, jobs=1)
    assert rep['deleted'] == [] and rep['errors']
    assert 'could name any image' in rep['stopped']


def test_rebuild_run_again_still_sees_the_unknown_parent(ctx, store):
    """The children phase is not checkpointed past an image whose parent
    is unknown: a second run must not enable deletions behind it."""
    base, top = chain(ctx, ['base', 'top'])
    records.remove(store, layout.STATE)
    unreadable_json(store, top)
    for _ in range(2):
        rep = rebuild.rebuild(ctx, jobs=1)
        assert not rep['initialised'] and rep['errors']
