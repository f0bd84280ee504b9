"""Issue 3: kill the worker at every named point inside the protocols,
restart, let recovery run, then check S1, S2, L1 and R1."""

from __future__ import absolute_import

import os
import time

import pytest
import requests

from registry_refcount import crash
from registry_refcount import invariants
from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import sweep

from .conftest import assert_invariants, file_store
from .harness import Client, image_id

SCENARIOS = [
    ('after_intent', 'delete'),
    ('after_intent', 'retag'),
    ('after_pending', 'retag'),
    ('after_tag_reference', 'retag'),
    ('before_ledger', 'retag'),
    ('before_ledger', 'delete'),
    ('after_tombstone', 'delete'),
    ('after_json_removed', 'retag'),
    ('between_cascade_steps', 'delete'),
    ('between_cascade_steps', 'repo_delete'),
    ('before_finalize', 'delete'),
    ('after_child_marker', 'push'),
]


def test_every_crash_point_is_covered():
    from .test_undo import UNDO_SCENARIOS
    assert set(p for p, _ in SCENARIOS + UNDO_SCENARIOS) == set(
        crash.POINTS)


def setup_state(client):
    base = client.push('ns/keep', 'v', ['cr-base'])
    client.push('ns/app', 'v1', ['cr-a1', 'cr-a2'], base[-1])
    client.push('ns/app', 'v2', ['cr-v2'], base[-1])
    client.push_chain(['cr-b1'], base[-1])        # the retag target


def act(client, operation):
    if operation == 'delete':
        return client.delete_tag('ns/app', 'v1')
    if operation == 'retag':
        return client.put_tag('ns/app', 'v1', image_id('cr-b1'))
    if operation == 'repo_delete':
        return client.delete_repository('ns/app')
    return client.push_image(image_id('cr-c1'), image_id('cr-a2'))


def present(store):
    from docker_registry.core import exceptions
    try:
        ids = [i.rsplit('/', 1)[-1] for i in store.list_directory('images')]
    except exceptions.FileNotFoundError:
        return set()
    return set(i for i in ids if store.exists('images/%s/json' % i))


@pytest.mark.parametrize('point,operation', SCENARIOS)
def test_crash_point(make_registry, point, operation):
    reg = make_registry(workers=2).start()
    client = Client(reg.url)
    setup_state(client)
    reg.restart(env={crash.ENV: point})
    before = invariants.outside_listing(reg.storage)
    try:
        act(client, operation)
    except requests.ConnectionError:
        pass
    # inside the request, or in the work it leaves for after its response
    deadline = time.time() + 10
    while 'crash point %s' % point not in reg.log():
        assert time.time() < deadline, 'the worker did not reach %s' % point
        time.sleep(0.05)
    reg.stop()
    reg.start()            # no crash point; recovery runs at start-up
    reg.wait_recovered()
    store = file_store(reg.storage)
    ctx = protocols.context(store, locks.LocalLocks(
        os.path.join(str(reg.workdir), 'locks'), timeout=10))
    if operation == 'push':
        # the child's json never came: its registration is dropped by
        # `verify --repair` once older than the intent timeout (0 here)
        rep = invariants.check(store, jobs=2)
        assert [d.get('dangling') for d in rep.r1] == [True]
        assert invariants.repair(ctx, rep, min_age=0) == 1
    rep = assert_invariants(reg, client)                      # S1, R1
    # L1: what the operation made unreachable is gone; only the untagged
    # top of a push (the retag target, never referenced) waits for gc
    assert present(store) - rep.reachable <= {image_id('cr-b1')}
    sweep.sweep(ctx, grace_period=0)
    assert present(store) == invariants.check(store, jobs=2).reachable
    after = invariants.outside_listing(reg.storage)           # S2
    changed = set(p for p in set(before) | set(after)
                  if before.get(p) != after.get(p))
    assert all(p.startswith('repositories/ns/app/') for p in changed), \
        changed
    # the client can redo what failed, and it works
    if operation == 'push':
        assert act(client, operation).status_code == 200
    elif operation == 'retag':
        assert client.put_tag('ns/app', 'v1', image_id('cr-b1')).ok or \
            image_id('cr-b1') not in present(store)
    assert_invariants(reg, client)
