"""Issue 20: one host's clock is wrong, or jumps, and no live image is lost.

Host A runs under libfaketime (its wall clock +15 min, -15 min, or
stepped forward by an hour mid-run), host B keeps the right time; both
serve one moto bucket and one redis-server, each in a UTS namespace of its
own (another host name: neither can see the other's processes, so the
age of the other's work on the *storage's* clock is all recovery has to go
by).  A runs background recovery every second with the smallest
``intent_timeout`` (60 s) while clients push fresh images and tag, retag
and delete through both hosts.  Then: every tag a client was told 200 for
names its image and pulls (S1); nothing was refused for an image that
exists; after recovery, records equal the truth (R1) and nothing is left
unreachable (L1).

Then gc: ``registry-refcount gc`` with the configured grace period (600 s)
run under +15 min, +1 h and -15 min must keep an unfinished push (json,
layer and checksum stored seconds before, no tag yet) - a host an hour
ahead that measured on its own clock would find it an hour old - and must
delete an orphan older than the grace period on the storage's clock.  (An
image is as old as its newest file, stamped by the storage: an S3 object's
LastModified, a local file's mtime.  Neither can be dated back on S3, so
the orphan is written 20 s before the unfinished push, and the last run
is given a grace between their ages.)
"""

from __future__ import absolute_import

import os
import re
import threading
import time

import pytest

from ..registry.conftest import (assert_invariants, refcount_settings,
                                 registries)
from ..registry.harness import Client, image_id
from .faults import (STRESS, Model, ModelClient, Stall, cli_package_dir, host_command,
                     lost_tags, model_workload, need_faketime,
                     recover_after_load, response_skew, run_cli,
                     skewed_env, wait_for)

CLIENTS = 4
#: seconds between the orphan's push and the unfinished one's (gc and its
#: CLI start well within half of it)
AGES_APART = 20
ROUNDS = 40 if STRESS else 8


def report(what, model, stalls, skewed):
    print('%s: %d operations, %d acknowledged, %d stalls, skewed host\'s '
          'recovery finished %d intents during the load, errors %s' % (
              what, model.ops, model.acked, stalls,
              recovery_finished_intents(skewed.log()), model.errors[:3]))


def recovery_finished_intents(log):
    """How many intents background recovery finished (it logs a report
    whenever it did anything)."""
    return sum(int(n) for n in re.findall(r"'intents_finished': (\d+)", log))


#: Each host's first tag write stops (SIGSTOP) once its pending marker is
#: written, for HOLD seconds: several rounds of the other host's recovery
#: see a live tag write of another host, a few seconds old on the
#: storage's clock (on the skewed host's own clock: 15 min or an hour).
PAUSE = {'REGISTRY_REFCOUNT_PAUSE_AT': 'after_pending'}
HOLD = 4


def two_hosts(make_registry, tmpdir, redis_server, env_a, **overrides):
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60, recovery_interval=1)
    settings.update(overrides)
    a = make_registry(refcount=settings, workers=2,
                      command=host_command('refcount-host-a'))
    b = make_registry(refcount=settings, workers=2,
                      command=host_command('refcount-host-b'))
    a.start(env=dict(env_a, **PAUSE))
    b.start(env=PAUSE)
    return a, b


def final_checks(hosts, redis_server, model):
    """S1 as the clients saw it, then recovery once the requests have
    stopped, then R1 and L1 on storage."""
    recover_after_load(hosts, redis_server, model)
    for host in hosts:
        rep = assert_invariants(host, Client(host.url))   # S1, R1
        assert rep.intents == []
        assert rep.unreachable == [], rep.unreachable     # L1
    assert lost_tags(model, hosts[1].url) == []


@pytest.mark.parametrize('offset', ['+15m', '-15m'])
def test_skewed_host_recovers_often_under_load(make_registry, tmpdir,
                                               redis_server, offset):
    need_faketime()
    a, b = two_hosts(make_registry, tmpdir, redis_server,
                     skewed_env(offset))
    expected = 900 if offset == '+15m' else -900
    assert abs(response_skew(a.url) - expected) < 30, 'faketime not applied'
    assert abs(response_skew(b.url)) < 30
    stall = Stall([a, b], HOLD)
    try:
        base = Client(b.url).push('ns/base', 'keep', ['clk-base'])[-1]
        model = Model()
        model.ack('ns/base', 'keep', base)
        model_workload([[a.url, b.url]] * CLIENTS, model, base, ROUNDS,
                       seed=1 if offset[0] == '+' else 2)
    finally:
        stalls = stall.finish()
    assert len(stall.stalled_hosts()) == 2, 'no stalled tag write on a host'
    assert model.acked > CLIENTS * ROUNDS // 2, (model.acked, model.errors)
    report(offset, model, stalls, a)
    final_checks([a, b], redis_server, model)
    assert 'lost lock' not in a.log() + b.log()


def test_clock_jumps_forward_mid_run(make_registry, tmpdir, redis_server):
    need_faketime()
    offset_file = str(tmpdir.join('faketime-offset'))
    with open(offset_file, 'w') as f:
        f.write('+0\n')
    a, b = two_hosts(make_registry, tmpdir, redis_server,
                     skewed_env(timestamp_file=offset_file))
    assert abs(response_skew(a.url)) < 30
    # the first tag write on each host stalls before the jump, and stays
    # stopped until the skewed host's recovery ran a few rounds after it
    stall = Stall([a, b], hold=None)
    # (the base's tag write is B's first: it waits for the resume)
    base_ids = []
    pusher = threading.Thread(target=lambda: base_ids.extend(Client(
        b.url).push('ns/base', 'keep', ['jmp-base'])))
    pusher.daemon = True
    pusher.start()
    wait_for(lambda: Client(b.url)._req('GET', '/v1/images/%s/json' % (
        image_id('jmp-base'))).status_code == 200, 30, 'the base')
    base = image_id('jmp-base')
    model = Model()
    done = []
    worker = threading.Thread(target=lambda: done.append(model_workload(
        [[a.url, b.url]] * CLIENTS, model, base, ROUNDS, seed=3)))
    worker.daemon = True
    worker.start()
    try:
        wait_for(lambda: len(stall.stalled_hosts()) == 2, 120,
                 'a stalled tag write on each host')
        with open(offset_file, 'w') as f:
            f.write('+1h\n')
        jumped_at = model.ops
        # (libfaketime re-reads the file every second: A's running worker
        # recovers on the new clock meanwhile)
        time.sleep(HOLD + 1)
        stall.resume_all()
        wait_for(lambda: (response_skew(a.url) or 0) > 3000, 30, 'the jump')
    finally:
        stalls = stall.finish()
        worker.join(600)
        pusher.join(60)
    assert done, 'workload failed'
    assert base_ids[-1] == base
    model.ack('ns/base', 'keep', base)
    assert stalls >= 2
    assert jumped_at < CLIENTS * ROUNDS, 'the jump came after the load'
    report('jump', model, stalls, a)
    final_checks([a, b], redis_server, model)


# -- gc under a skewed clock --------------------------------------------------

GRACE = 600


def unfinished_push(client, name, parent):
    """json, layer and checksum of a new image: the client has not sent
    its tag yet."""
    image = image_id(name)
    r = client.push_image(image, parent)
    assert r.status_code == 200, r.text
    return image


def gc_under_skew(reg, flavor_env):
    """The gc story on one registry; ``flavor_env`` is what the CLI needs
    besides the config (the bucket's variables, or STORAGE_PATH)."""
    need_faketime()
    client = ModelClient(reg.url, Model())
    assert cli_package_dir(reg.config, reg.flavor, flavor_env) == \
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), 'the CLI runs another package'
    base = client.push('ns/base', 'keep', ['gcs-base'])[-1]
    orphan = unfinished_push(client, 'gcs-orphan', base)
    time.sleep(AGES_APART)
    unfinished = unfinished_push(client, 'gcs-unfinished', base)
    pushed = time.time()
    runs = []

    def gc(offset, grace=GRACE, dry=False):
        env = dict(flavor_env)
        if offset:
            env.update(skewed_env(offset))
        reg.settle()
        code, doc, err = run_cli(reg.config, reg.flavor, env, 'gc',
                                 *(['--grace', '%d' % grace]
                                   if grace != GRACE else []) +
                                 (['--dry-run'] if dry else []))
        assert code == 0, (offset, doc, err)
        assert doc['grace_period'] == grace
        deleted = set(d['image'] for d in doc['deleted'])
        runs.append((offset, sorted(deleted)))
        assert unfinished not in deleted, (offset, doc)
        assert client.has(unfinished), offset
        return deleted

    # ages on the storage's clock: a host an hour ahead, or behind, finds
    # both young
    for offset in ('+1h', None, '+15m', '+1h', '-15m', None, '+1h',
                   '+15m'):
        assert gc(offset) == set()
    # a dry run writes nothing, not even the clock object: it reads the
    # storage's time all the same
    for offset in ('+1h', '-15m'):
        assert gc(offset, dry=True) == set()
    # the orphan, AGES_APART older than the unfinished push, goes under a
    # grace between their ages, also by the host whose clock is behind
    grace = int(time.time() - pushed + AGES_APART // 2)
    assert gc('-15m', grace) == {orphan}
    assert not client.has(orphan)
    assert gc('+1h') == set()
    # the client finishes its push: the image is whole
    client.tag('ns/app', 'v', unfinished)
    assert client.pullable('ns/app', 'v') is None
    rep = assert_invariants(reg, client)
    assert rep.unreachable == []
    return runs


def test_gc_under_skewed_clocks_s3(make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, grace_period=GRACE, intent_timeout=60)).start()
    runs = gc_under_skew(reg, reg.env)
    assert len(runs) == 12


def test_gc_under_skewed_clocks_local(tmpdir):
    """The same on local storage (the storage's clock is the kernel's, read
    from a new file's mtime: libfaketime does not shift it)."""
    with registries(tmpdir) as make:
        reg = make(refcount=refcount_settings(
            tmpdir, grace_period=GRACE, intent_timeout=60)).start()
        runs = gc_under_skew(reg, {'STORAGE_PATH': reg.storage})
    assert len(runs) == 12
