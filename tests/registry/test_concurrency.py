"""Issue 3: many clients on several workers; then S1, R1 and L1.

Sizes are bounded for `make test`; REFCOUNT_STRESS=1 (`make stress`)
multiplies the rounds.
"""

from __future__ import absolute_import

import os
import random
import threading
import time
from multiprocessing.pool import ThreadPool

import pytest
import requests

from registry_refcount import invariants
from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import recovery
from registry_refcount import sweep

from .conftest import assert_invariants, file_store, refcount_settings
from .harness import Client, image_id

STRESS = int(os.environ.get('REFCOUNT_STRESS', '0') or 0)
ROUNDS = 6 if not STRESS else 40
CLIENTS = 16 if not STRESS else 32
WORKERS = 4


@pytest.fixture
def make_registry(make_registry, tmpdir):
    """Registries whose background recovery leaves live requests alone
    (intent_timeout 0, as elsewhere in the tests, would let it release the
    pending marker of a tag write in flight); each test runs recovery
    itself once the requests have stopped."""
    def make(**kw):
        kw.setdefault('refcount', refcount_settings(tmpdir,
                                                    intent_timeout=60))
        return make_registry(**kw)
    return make


def present(reg):
    try:
        ids = os.listdir(reg.path('images'))
    except OSError:
        return set()
    return set(i for i in ids if os.path.exists(reg.path('images', i,
                                                          'json')))


def settle(reg):
    """Requests have stopped: their work after the response is let finish
    (as long as a worker lives to do it), then recovery runs."""
    reg.settle(timeout=5)
    store = file_store(reg.storage)
    ctx = protocols.context(store, locks.LocalLocks(
        os.path.join(str(reg.workdir), 'locks'), timeout=30), by='test')
    recovery.recover(ctx, intent_timeout=0)
    return ctx


def parallel(n, fn):
    pool = ThreadPool(n)
    try:
        return pool.map(fn, range(n))
    finally:
        pool.close()


def swallow(fn, *args):
    """A request the race may fail loudly: that is allowed, a broken
    chain is not (checked after)."""
    try:
        return fn(*args)
    except (AssertionError, requests.RequestException) as e:
        return e


def started(make_registry, base_name):
    """A registry with ``WORKERS`` workers and one tagged base image."""
    reg = make_registry(workers=WORKERS).start()
    seed = Client(reg.url)
    return reg, seed, seed.push('ns/base', 'v', [base_name])


def load_then_check(reg, worker):
    """``CLIENTS`` clients at once, then recovery, S1, R1 and L1."""
    parallel(CLIENTS, worker)
    check_l1(reg, settle(reg))


def check_l1(reg, ctx):
    rep = assert_invariants(reg, Client(reg.url))
    extra = present(reg) - rep.reachable
    report = sweep.sweep(ctx, grace_period=0)
    kept = present(reg) - invariants.check(ctx.store, jobs=4).reachable
    assert not kept, (dict((k, v) for k, v in report.items()
                           if k != 'deleted'),
                      [describe(reg, image) for image in sorted(kept)])
    return extra


def describe(reg, image):
    """What is in an image's folder: names, ages, and the markers' bytes
    (what a failure of L1 needs to be understood)."""
    found = {}
    now = time.time()
    top = reg.path('images', image)
    for folder, _, names in os.walk(top):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, top)
            try:
                age = round(now - os.stat(path).st_mtime, 1)
                body = (open(path, 'rb').read(300)
                        if '_references' in rel or '_deleting' in rel
                        else b'')
            except (IOError, OSError) as e:
                age, body = None, repr(e)
            found[rel] = (age, body)
    return image, found


def test_concurrent_pushes_retags_and_deletes(make_registry):
    reg = make_registry(workers=WORKERS).start()
    seed = Client(reg.url)
    bases = [seed.push('ns/base%d' % b, 'v', ['cc-base%d' % b])[0]
             for b in range(2)]

    def worker(n):
        client = Client(reg.url)
        rnd = random.Random(n)
        for r in range(ROUNDS):
            base = bases[rnd.randrange(2)]
            repo = 'ns/app%d' % (n % 6)
            tag = 't%d' % rnd.randrange(3)
            op = rnd.random()
            if op < 0.55:
                swallow(client.push, repo, tag,
                        ['cc-%d-%d-%d' % (n, r, i) for i in range(2)], base)
            elif op < 0.8:
                swallow(client.delete_tag, repo, tag)
            else:
                tags = swallow(client.tags, repo)
                if isinstance(tags, dict) and tags:
                    swallow(client.put_tag, repo, tag,
                            rnd.choice(list(tags.values())))
    load_then_check(reg, worker)


def test_same_tag_written_concurrently(make_registry):
    reg, seed, base = started(make_registry, 'hot-base')
    tops = [seed.push_chain(['hot-%d' % n], base[-1])[0]
            for n in range(CLIENTS)]

    def worker(n):
        client = Client(reg.url)
        for r in range(3):
            swallow(client.put_tag, 'ns/hot', 'latest',
                    tops[(n + r) % len(tops)])
    parallel(CLIENTS, worker)
    ctx = settle(reg)
    final = Client(reg.url).tags('ns/hot')['latest']
    rep = assert_invariants(reg, Client(reg.url))
    # the reference is where the tag file says, and only there
    key = [k for k in rep.tags if k.repository == 'hot'][0]
    holders = [i for i in present(reg) if os.path.exists(
        reg.path('images', i, '_references', key.marker))]
    assert holders == [final]
    check_l1(reg, ctx)


def test_push_on_parent_whose_last_tag_is_deleted(make_registry):
    reg = make_registry(workers=WORKERS).start()
    seed = Client(reg.url)
    outcomes = {'kept': 0, 'refused': 0}
    for r in range(ROUNDS):
        parent = seed.push('ns/p%d' % r, 'only', ['race-p%d' % r])[0]
        barrier = threading.Barrier(2) if hasattr(threading, 'Barrier') \
            else None
        results = {}

        def delete():
            results['delete'] = Client(reg.url).delete_tag('ns/p%d' % r,
                                                           'only')

        def build():
            client = Client(reg.url)
            child = image_id('race-c%d' % r)
            resp = client.push_image(child, parent)
            if resp.status_code == 200:
                resp = client.put_tag('ns/c%d' % r, 'v', child)
            results['push'] = resp
        threads = [threading.Thread(target=delete),
                   threading.Thread(target=build)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert barrier is None or True
        if results['push'].status_code == 200:
            outcomes['kept'] += 1
            assert Client(reg.url).pullable('ns/c%d' % r, 'v') is None
        else:
            outcomes['refused'] += 1
            assert results['push'].status_code in (400, 404), \
                results['push'].text
    ctx = settle(reg)
    check_l1(reg, ctx)
    assert sum(outcomes.values()) == ROUNDS


def test_repository_delete_races_pushes(make_registry):
    reg, seed, base = started(make_registry, 'rr-base')

    def worker(n):
        client = Client(reg.url)
        for r in range(ROUNDS):
            if n % 4 == 0:
                swallow(client.delete_repository, 'ns/racy')
                time.sleep(0.01)
            else:
                swallow(client.push, 'ns/racy', 't%d' % (n % 3),
                        ['rr-%d-%d' % (n, r)], base[-1])
    load_then_check(reg, worker)


def test_kill_workers_under_load(make_registry):
    """kill -9 of random workers under load; then S1, R1 and L1 (gc
    --grace 0 takes every unreachable image: a worker killed between a
    marker's temporary file and its rename once left the image kept for
    ever, 1 run in 12)."""
    reg, seed, base = started(make_registry, 'kl-base')
    stop = threading.Event()
    killed = []

    def killer():
        rnd = random.Random(7)
        while not stop.is_set() and len(killed) < (3 if not STRESS else 20):
            time.sleep(rnd.uniform(0.2, 0.6))
            try:
                killed.append(reg.kill_worker(rnd.choice(reg.worker_pids())))
            except (OSError, IndexError):
                pass

    def worker(n):
        client = Client(reg.url)
        rnd = random.Random(n)
        for r in range(ROUNDS):
            repo, tag = 'ns/k%d' % (n % 4), 't%d' % rnd.randrange(2)
            if rnd.random() < 0.7:
                swallow(client.push, repo, tag, ['kl-%d-%d' % (n, r)],
                        base[-1])
            else:
                swallow(client.delete_tag, repo, tag)
    k = threading.Thread(target=killer)
    k.start()
    parallel(CLIENTS, worker)
    stop.set()
    k.join()
    assert killed, 'no worker was killed'
    reg.restart()
    ctx = settle(reg)
    # a worker killed between registering a child and storing its json
    # leaves the registration: dropped by `verify --repair` (or gc) once
    # older than the intent timeout - nothing else may differ
    rep = invariants.check(ctx.store, jobs=4)
    assert [d for d in rep.r1 if not d.get('dangling')] == [], rep.r1
    invariants.repair(ctx, rep, min_age=0)
    assert_invariants(reg, Client(reg.url))
    check_l1(reg, ctx)


@pytest.mark.skipif(not STRESS, reason='make stress')
def test_stress_all(make_registry):
    for fn in (test_concurrent_pushes_retags_and_deletes,
               test_repository_delete_races_pushes):
        fn(make_registry)
