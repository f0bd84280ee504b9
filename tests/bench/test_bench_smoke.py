"""Smoke test of the benchmark scripts (bench/): tiny sizes, a few
seconds.  The benchmarks themselves run with `make bench`, not here."""

from __future__ import absolute_import, unicode_literals

import io
import json

import pytest

from docker_registry.drivers import file as file_driver

from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import locks

from bench import common
from bench import counting
from bench import flow
from bench import synth


@pytest.fixture(autouse=True)
def results_elsewhere(tmpdir, monkeypatch):
    """Never overwrite bench/results of a real run."""
    monkeypatch.setattr(common, 'RESULTS', str(tmpdir.join('results')))
    monkeypatch.setattr(common, 'WORK', str(tmpdir.join('work')))


def consistent(root):
    rep = invariants.check(file_driver.Storage(path=root), jobs=2)
    assert rep.s1 == [] and rep.r1 == [], rep.as_dict()
    assert rep.unreadable == [] and rep.legacy == []
    return rep


def test_synthetic_registries_are_what_the_protocols_build(tmpdir):
    root = str(tmpdir.join('fleet'))
    fleet = synth.Fleet(synth.local_writer(root), 'refcount')
    fleet.grow(5)
    assert len(consistent(root).tags) == 5
    root = str(tmpdir.join('gc'))
    summary = synth.gc_registry(synth.local_writer(root), 60, bases=2)
    rep = consistent(root)
    assert len(rep.tags) == summary['tags']
    assert len(rep.unreachable) == summary['unreachable']


def test_flow_counts_and_keeps_invariants(tmpdir):
    figures = {}
    for design in ('refcount', 'baseline'):
        root = str(tmpdir.join(design))
        store = file_driver.Storage(path=root)
        fleet = synth.Fleet(synth.local_writer(root), design)
        counted = counting.CountingStore(store)
        f = flow.Flow(counted, design,
                      locks.LocalLocks(str(tmpdir.join('l-' + design))))
        for size in (3, 3, 30):      # the first: warm-up (state cached)
            fleet.grow(size)
            counted.reset()
            n = fleet.new_app()
            f.push_image(fleet.image(n), fleet.base)
            f.put_tag(fleet.key(n), fleet.image(n))
            fleet.live.append(n)
            push = counted.snapshot('ext')
            counted.reset()
            victim = fleet.live.pop(0)
            f.delete_tag(fleet.key(victim))
            figures[design, size] = (push, counted.snapshot('ext'))
            assert not store.exists(layout.image_file(fleet.image(victim),
                                                      'json'))
        if design == 'refcount':
            consistent(root)
    for i in (0, 1):
        small, big = figures['refcount', 3][i], figures['refcount', 30][i]
        assert small['ops'] == big['ops'] > 0
        assert figures['baseline', 30][i]['bytes'] > \
            5 * figures['baseline', 3][i]['bytes']


def test_storage_cost_script(tmpdir):
    from bench import storage_cost
    out = storage_cost.main(['--backends', 'file', '--sizes', '5,20',
                             '--reps', '1'])
    res = out['backends']['file']['results']
    assert res['refcount'][20]['push']['ext']['ops'] == \
        res['refcount'][5]['push']['ext']['ops']
    with open(str(tmpdir.join('results', 'storage_cost.json'))) as f:
        assert json.load(f)['backends']['file']['sizes'] == [5, 20]


def test_undo_cost_script(tmpdir):
    """Part 5: with the undo window a tag DELETE does less storage work
    online than one that deletes at once; the purge does the rest."""
    from bench import undo_cost
    out = undo_cost.main(['--size', '5', '--reps', '1'])
    assert out['window']['delete']['ops'] < out['immediate']['delete'][
        'ops'], out
    assert out['window']['purge']['ops'] > out['immediate']['purge']['ops']


def test_gc_script(tmpdir):
    from bench import gc_bench
    out = gc_bench.main(['--sizes', '120', '--rounds', '1', '--jobs', '2'])
    r = out['results']['120']
    assert r['runs']['sweep'][0]['errors'] == []
    assert r['deleting_sweep']['deleted'] == r['registry']['unreachable']
    assert r['ratio_to_limit'] > 0 and r['sweep_bytes_per_image'] > 0


def test_online_script():
    from bench import online
    out = online.main(['--concurrency', '1,2', '--seconds', '4'])
    assert set(out['runs']) == {'1', '2'}
    assert out['enabled_log_errors'] == 0, out['enabled_log_error_lines']
    for conc, run in out['runs'].items():
        for name, window in run['window'].items():
            assert window['iterations'] >= 1, (conc, name)
            assert window['cpu_seconds'] > 0, (conc, name)
        assert set(run['p50_ratio']) == set(online.ENDPOINTS)


def test_timed_ab_measures_both_modes_and_each_checkout():
    from bench import instructions
    summary = instructions.main(['--timed', '--pairs', '1', '--iterations',
                                 '5', '--code', common.ROOT])['modes']
    assert set(summary) == set(['off', 'on', 'other'])
    for figures in summary.values():
        assert figures['cpu_ms'] > 0
    # the base image stays; each iteration's image goes, except without
    # the extension (10 + 5 of them: warm-up and measured iterations)
    assert summary['off']['images_left'] == 1 + 10 + 5
    for label in ('on', 'other'):
        assert summary[label]['images_left'] == 1, label


def test_report_from_the_parts(tmpdir):
    """The report's goals table from tiny runs of parts 1 and 3."""
    from bench import gc_bench, report, storage_cost
    storage_cost.main(['--backends', 'file', '--sizes', '5,20', '--reps',
                       '1'])
    gc_bench.main(['--sizes', '120', '--rounds', '1', '--jobs', '2'])
    path = str(tmpdir.join('RESULTS.md'))
    report.main(path)
    with io.open(path, encoding='utf-8') as f:
        text = f.read()
    assert '1. refcount push operations constant' in text
    assert '3. sweep speed' in text


def test_instructions_counts_what_the_extension_adds():
    """Counts, not timings: the same code counted twice gives the same
    instructions to a fraction of a percent (system calls to a few), and
    the extension adds work."""
    from bench import instructions
    result = instructions.main(['--lengths', '5,15', '--code', common.ROOT])
    modes = result['modes']
    for kind in ('instructions', 'syscalls'):
        if kind in result['not_counted']:
            continue
        assert modes['off'][kind] > 0
        assert modes['on']['added'][kind] > 0, kind
        on, other = modes['on'][kind], modes['other'][kind]
        tolerance = 0.01 if kind == 'instructions' else 0.05
        assert abs(on - other) <= tolerance * on, (kind, on, other)
