"""The run history, the facts and their Prometheus text, and space per
repository, at the storage level (Python 2 and 3)."""

from __future__ import absolute_import, unicode_literals

from registry_refcount import layout
from registry_refcount import metrics
from registry_refcount import records
from registry_refcount import runs
from registry_refcount import usage

from .test_protocols import chain
from .world import delete_tag, put_tag

T = layout.TagKey


def test_the_history_keeps_the_newest_runs(store):
    for n in range(5):
        runs.record(store, 'gc', 'command', 100.0 + n, 101.0 + n,
                    'done' if n != 3 else 'failed',
                    {'deleted': [1] * n, 'errors': ['x'] if n == 3 else []})
    runs.prune(store, limit=3)
    got = runs.recent(store)
    assert [r['started'] for r in got] == [104.0, 103.0, 102.0]
    assert got[0]['counts'] == {'deleted': 4, 'errors': 0}
    assert runs.last(got, failed=True)['error'] == 'x'
    assert runs.outcome(0, {'errors': ['e']}) == 'failed'
    assert runs.outcome(0, {}, interrupted=True) == 'interrupted'


def test_facts_render_and_usage(ctx, store):
    base = chain(ctx, ['m-base'])
    a = chain(ctx, ['m-a'], base[-1])
    b = chain(ctx, ['m-b'], base[-1])
    put_tag(ctx, T('team', 'a', 'v1'), a[-1])
    put_tag(ctx, T('team', 'b', 'v1'), b[-1])
    put_tag(ctx, T('team', 'c', 'v1'), b[-1])
    delete_tag(ctx, T('team', 'c', 'v1'))
    rep, doc = metrics.facts(store, jobs=1)
    assert doc['images'] == 3 and doc['tags'] == 2
    text = metrics.render(doc)
    assert 'registry_refcount_images 3\n' in text
    assert '# TYPE registry_refcount_deletions_total counter' in text
    du = usage.usage(store, jobs=1)['repositories']
    assert sorted(du) == ['team/a', 'team/b']
    assert du['team/a']['exclusive_images'] == 1
    assert du['team/a']['images'] == 2
    assert records.exists(store, layout.image_file(base[-1], 'json'))


def test_the_workers_counters_fold_into_one_total(store, monkeypatch):
    import collections
    from registry_refcount import tally
    # (this process's own deletions by other tests are not this test's)
    monkeypatch.setattr(tally, '_counts', collections.Counter())
    tally.add('deleted_online', 2)
    tally.flush(store)
    tally.add('deleted_online')
    tally.add('lock_timeouts')
    tally.flush(store)
    tally.flush(store)                      # nothing new: no record
    assert len(list(records.listing(store, layout.COUNTERS))) == 2
    assert tally.totals(store) == {'deleted_online': 3, 'lock_timeouts': 1}
    tally.fold(store)
    assert list(records.listing(store, layout.COUNTERS)) == ['total']
    tally.add('deleted_online')
    tally.flush(store)
    assert tally.totals(store) == {'deleted_online': 4, 'lock_timeouts': 1}
