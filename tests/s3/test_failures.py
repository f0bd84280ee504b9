"""Failures of the shared services: Redis stopped mid-run, S3 unreachable.

The registry keeps serving what it can, the extension deletes nothing while
it cannot lock or read, says so in the log, and recovery catches up once
the service is back."""

from __future__ import absolute_import

import time

from ..registry.conftest import assert_invariants, refcount_settings
from ..registry.harness import Client
from ..services import RedisServer


def wait_for(predicate, timeout=30, what='condition'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError('timed out waiting for %s' % what)


def test_redis_down_serves_deletes_nothing_then_catches_up(make_registry,
                                                           tmpdir):
    redis = RedisServer(str(tmpdir.join('own-redis'))).start()
    try:
        settings = refcount_settings(
            tmpdir, lock_backend='redis', redis=redis.settings(),
            lock_timeout=2, intent_timeout=3, recovery_interval=1)
        hosts = [make_registry(refcount=settings).start() for _ in range(2)]
        one, two = Client(hosts[0].url), Client(hosts[1].url)
        base = one.push_chain(['rd-base'])
        a = one.push('ns/a', 'v1', ['rd-a1', 'rd-a2'], base[-1])
        b = two.push('ns/b', 'v1', ['rd-b1'], base[-1])
        everything = set(base + a + b)

        redis.stop()
        # pushes (child registration falls back to a lock-free marker) and
        # pulls go on, through both hosts
        c = two.push('ns/c', 'v1', ['rd-c1', 'rd-c2'], base[-1])
        d = one.push('ns/d', 'v1', ['rd-d1'], c[-1])
        everything |= set(c + d)
        for client in (one, two):
            for repo in ('ns/a', 'ns/b', 'ns/c', 'ns/d'):
                assert client.pullable(repo, 'v1') is None, repo
        # deletes and retags answer the clients, but delete nothing
        assert one.delete_tag('ns/a', 'v1').status_code == 200
        two.tag('ns/b', 'v1', c[-1])              # rd-b1 loses its tag
        assert two.delete_repository('ns/d').status_code == 200
        time.sleep(3)                  # background recovery tried, too
        for host in hosts:
            assert host.images() == everything
        log = hosts[0].log() + hosts[1].log()
        assert 'redis unreachable' in log
        assert 'left to recovery' in log
        assert 'deleted image' not in log

        redis.start()                  # same port, empty: no locks survive
        gone = set(a + b + d)
        wait_for(lambda: not (hosts[0].images() & gone), timeout=40,
                 what='recovery to delete what lost its tags')
        for host in hosts:
            host.wait_recovered()
            rep = assert_invariants(host, Client(host.url))
            assert rep.unreachable == [], rep.unreachable
        assert hosts[0].images() == set(base + c)
        assert one.pullable('ns/b', 'v1') is None
        assert two.pullable('ns/c', 'v1') is None
    finally:
        redis.stop()
