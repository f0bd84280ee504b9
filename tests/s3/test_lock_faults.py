"""Issue 20: locks that stop excluding, on two hosts with Redis locks.

* Redis is restarted, and ``FLUSHALL``-ed, again and again while the
  workers of two hosts hold locks under a mixed load (``lock_lease`` 2 s):
  every acknowledged tag keeps its image (S1); after recovery, R1 and L1.
* The CLI pointed at another Redis database than the workers refuses
  (exit 2, saying the locks differ); ``--ignore-lockspace`` runs it.
* Recovery called through the Python API with ``intent_timeout=0`` from
  another host (the test process: the registry runs in a UTS namespace of
  its own), looping while clients tag freshly pushed images.
"""

from __future__ import absolute_import

import threading
import time

import pytest

from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import recovery

from ..registry.conftest import refcount_settings
from ..registry.harness import Client, make_config
from .faults import (STRESS, Model, cli_runs_within_a_round, host_command,
                     lost_tags, model_workload,
                     recover_after_load, run_cli, wait_for)

CLIENTS = 4
ROUNDS = 40 if STRESS else 8
PREFIX = 'registry-refcount:lock:'


def two_hosts(make_registry, tmpdir, redis_server, **overrides):
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60, recovery_interval=1,
                                 lock_lease=2, lock_timeout=5)
    settings.update(overrides)
    hosts = [make_registry(refcount=settings, workers=2,
                           command=host_command('refcount-host-%s' % n))
             for n in 'ab']
    for host in hosts:
        host.start()
    return hosts


def recover_and_check(hosts, redis_server, model):
    """S1 as the clients saw it; then recovery once the requests stopped;
    R1; L1 (an image left unreachable is one whose push or tag write the
    client was refused: gc's to collect)."""
    recover_after_load(hosts, redis_server, model)
    for host in hosts:
        rep = invariants.check(host.store())
        assert rep.s1 == [], rep.s1
        # R1, but for a child whose json never came (design.rst: its
        # marker waits for the push, or for verify --repair)
        r1 = [d for d in rep.r1 if not d.get('dangling')]
        assert r1 == [], r1                                     # R1
        assert rep.unreadable == [] and rep.journal == []
        for key in rep.tags:
            assert Client(host.url).pullable('%s/%s' % (
                key.namespace, key.repository), key.tag) is None, key
        assert rep.intents == []
        leaked = set(rep.unreachable) - model.untagged
        if leaked and any('lost lock' in h.log() for h in hosts):
            # design.rst, *Lost locks*, the known gap: with leases lost
            # an image was left unreachable after recovery; gc takes it
            ctx = protocols.context(host.store(), locks.RedisLocks(
                port=redis_server.port, timeout=10), by='gc')
            from registry_refcount import sweep
            assert sweep.sweep(ctx, 0, jobs=4)['errors'] == []
            leaked = set(invariants.check(host.store()).unreachable) - \
                model.untagged
        assert leaked == set(), leaked                         # L1
    assert lost_tags(model, hosts[1].url) == []
    return rep


def test_redis_restarted_and_flushed_under_load(make_registry, tmpdir,
                                                redis_server):
    hosts = two_hosts(make_registry, tmpdir, redis_server)
    base = Client(hosts[0].url).push('ns/base', 'keep', ['rf-base'])[-1]
    model = Model()
    model.ack('ns/base', 'keep', base)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (model_workload(
        [[h.url for h in hosts]] * CLIENTS, model, base, ROUNDS, seed=5),
        done.set()))
    worker.daemon = True
    worker.start()
    counts = {'flushes': 0, 'restarts': 0, 'held_at_fault': 0}
    try:
        n = 0
        while not done.wait(0.4):
            try:
                held = [k for k in redis_server.client().keys(PREFIX + '*')
                        if not k.endswith(b'identity')]
            except Exception:
                held = []
            counts['held_at_fault'] += len(held)
            if n % 3 == 2:
                redis_server.stop()
                time.sleep(0.3)
                redis_server.start()
                counts['restarts'] += 1
            else:
                redis_server.client().flushall()
                counts['flushes'] += 1
            n += 1
    finally:
        if not redis_server.running:
            redis_server.start()
        worker.join(600)
    print('redis faults: %s; %d operations, %d acknowledged, %d refused, '
          'errors %s' % (counts, model.ops, model.acked,
                         len(model.untagged), model.errors[:3]))
    assert counts['flushes'] + counts['restarts'] >= 3, counts
    assert counts['held_at_fault'] > 0, 'no lock was held at any fault'
    assert model.acked > CLIENTS * ROUNDS // 3, (model.acked, model.errors)
    recover_and_check(hosts, redis_server, model)


def test_cli_with_another_redis_db_refuses(make_registry, tmpdir,
                                           redis_server):
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(db=0),
                                 intent_timeout=60)
    reg = make_registry(refcount=settings).start()
    Client(reg.url).push('ns/app', 'v', ['rdb-1'])
    reg.settle()
    other = make_config(str(tmpdir.join('other-db.yml')), dict(
        settings, redis=redis_server.settings(db=1)), 's3')
    for args in (['gc'], ['recover'], ['verify', '--repair']):
        code, doc, err = run_cli(other, 's3', reg.env, *args)
        assert code == 2, (args, code, doc, err)
        assert 'refusing to run' in err and 'would not exclude' in err, err
        code, doc, err = run_cli(other, 's3', reg.env, '--ignore-lockspace',
                                 *args)
        assert code == 0, (args, code, doc, err)
    # the registry's own configuration runs
    code, doc, err = run_cli(reg.config, 's3', reg.env, 'verify')
    assert code == 0, (doc, err)


@pytest.mark.parametrize('fault', ['flushall', 'restart'])
def test_cli_runs_after_redis_lost_its_keys(make_registry, tmpdir,
                                            redis_server, fault):
    """After Redis lost its keys (a flush, a restart without persistence)
    the workers and the CLI still lock in the same Redis: the CLI must not
    refuse to run for a lock space that is the same - once a recovery
    round of the workers recorded it again (it refused for good while
    the workers recorded it at start only)."""
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60)
    # one worker, initialised before the fault (a worker started after it
    # records the new identity)
    reg = make_registry(refcount=settings, workers=1).start()
    Client(reg.url).push('ns/app', 'v', ['rlk-1'])
    reg.settle()
    if fault == 'flushall':
        redis_server.client().flushall()
    else:
        redis_server.stop()
        redis_server.start()
    Client(reg.url).push('ns/app', 'w', ['rlk-2'])     # the workers lock on
    cli_runs_within_a_round(lambda: run_cli(reg.config, 's3', reg.env,
                                            'verify'))


def test_api_recovery_with_no_timeout_from_another_host(make_registry,
                                                        tmpdir,
                                                        redis_server):
    """``recovery.recover(ctx, intent_timeout=0)`` in a loop from the test
    process - another host for the registry's workers - while clients push
    fresh images and tag them: no acknowledged tag loses its image, and no
    tag PUT is refused for an image that exists."""
    reg = two_hosts(make_registry, tmpdir, redis_server)[0]
    ctx = protocols.context(reg.store(), locks.RedisLocks(
        port=redis_server.port, timeout=30), by='test')
    model = Model()
    done = threading.Event()
    rounds = [0]

    def recover_loop():
        while not done.is_set():
            try:
                recovery.recover(ctx, intent_timeout=0)
            except Exception as e:
                model.errors.append('recover: %r' % e)
            rounds[0] += 1
    loop = threading.Thread(target=recover_loop)
    loop.daemon = True
    loop.start()
    try:
        model_workload([[reg.url]] * CLIENTS, model, None, ROUNDS,
                       seed=7, fresh_only=True)
    finally:
        done.set()
        loop.join(60)
    print('api recover(0) from another host: %d rounds, %d operations, '
          '%d acknowledged, violations %s' % (rounds[0], model.ops,
                                              model.acked,
                                              model.violations[:3]))
    assert rounds[0] >= 3
    assert model.violations == [], model.violations
    assert lost_tags(model, reg.url) == []


# 0 deleted the image (404 "Image not found") until recovery.abandoned
# took at least 60 s for another host's work, through the API too
@pytest.mark.parametrize('timeout', [60, 0])
def test_api_recovery_meets_a_stalled_tag_write_of_another_host(
        make_registry, tmpdir, redis_server, timeout):
    """The deterministic form of the loop above: a tag write of a fresh
    image stops (SIGSTOP) between its pending marker and the tag file, on
    a registry host the test process cannot see into; recovery runs from
    the test process with ``intent_timeout`` 60 s (the minimum the config
    and the CLI accept) or 0 (the Python API takes it); the writer
    resumes.  Its tag PUT must answer 200 and the tag pull whole."""
    from .faults import Stall, stopped_workers
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60, recovery_interval=3600)
    reg = make_registry(refcount=settings, workers=1,
                        command=host_command('refcount-host-s'))
    reg.start(env={'REGISTRY_REFCOUNT_PAUSE_AT': 'after_pending'})
    client = Client(reg.url)
    image = client.push_chain(['st-fresh'])[-1]
    stall = Stall([reg], hold=None)
    answer = []
    writer = threading.Thread(target=lambda: answer.append(
        client.put_tag('ns/app', 'v', image)))
    writer.daemon = True
    writer.start()
    try:
        wait_for(lambda: stopped_workers(reg), 30, 'the stalled tag write')
        ctx = protocols.context(reg.store(), locks.RedisLocks(
            port=redis_server.port, timeout=30), by='test')
        report = recovery.recover(ctx, intent_timeout=timeout)
    finally:
        stall.finish()
        writer.join(60)
    print('recover(%s) next to a stalled tag write of another host: %s'
          % (timeout, report))
    assert answer and answer[0].status_code == 200, (
        report, answer and (answer[0].status_code, answer[0].text))
    assert Client(reg.url).pullable('ns/app', 'v') is None, report


def test_a_hold_released_while_redis_is_down(make_registry, tmpdir,
                                             redis_server):
    """Minimised from test_redis_restarted_and_flushed_under_load: a
    retag's reconcile stops at ``reconcile_before_drop`` (its hold on the
    old image written); another process (here the test process, another
    host; under load another worker) reconciles the tag meanwhile; Redis
    goes down for longer than the lease; the worker resumes; Redis comes
    back; requests stop; recovery.  The hold went by itself (its cascade
    could not lock), and the tag was reconciled by another process: only
    the retag's intent, which noted the image before its hold, leads
    recovery back to it (it was left to gc before the notes)."""
    from .faults import Stall, stopped_workers
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60, recovery_interval=1,
                                 lock_lease=2, lock_timeout=5)
    reg = make_registry(refcount=settings, workers=1,
                        command=host_command('refcount-host-h'))
    reg.start(env={'REGISTRY_REFCOUNT_PAUSE_AT': 'reconcile_before_drop'})
    client = Client(reg.url)
    old = client.push('ns/app', 'v', ['hd-old'])[-1]
    new = client.push_chain(['hd-new'])[-1]
    ctx = protocols.context(reg.store(), locks.RedisLocks(
        port=redis_server.port, timeout=30, lease=2), by='test')
    stall = Stall([reg], hold=None)
    try:
        client.tag('ns/app', 'v', new)             # answered; then stops
        wait_for(lambda: stopped_workers(reg), 30, 'the stalled reconcile')
        protocols.reconcile_tag(ctx, layout.TagKey('ns', 'app', 'v'))
        redis_server.stop()
        time.sleep(3)                               # past the 2 s lease
        stall.resume_all()
        wait_for(lambda: 'left to recovery' in reg.log(), 30,
                 'the reconcile to stop')
    finally:
        stall.finish()
        if not redis_server.running:
            redis_server.start()
    reg.settle(30)
    report = recovery.recover(ctx, intent_timeout=0)
    rep = invariants.check(reg.store())
    print('after recovery: %s; r1 %s; unreachable %s' % (
        report, rep.r1, rep.unreachable))
    assert rep.s1 == []
    assert client.pullable('ns/app', 'v') is None
    assert rep.r1 == [], rep.r1                                # R1
    assert rep.unreachable == [] and old not in reg.images()   # L1
