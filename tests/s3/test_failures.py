"""Failures of the shared services: Redis stopped mid-run, S3 unreachable.

The registry keeps serving what it can, the extension deletes nothing while
it cannot lock or read, says so in the log, and recovery catches up once
the service is back."""

from __future__ import absolute_import

import time

from ..registry.conftest import assert_invariants, refcount_settings
from ..registry.harness import Client
from ..services import RedisServer, TcpProxy, bucket_keys

#: boto's own retries, kept short so that a request against unreachable
#: storage fails in seconds (a real deployment keeps boto's defaults).
BOTO_CONFIG = '''[Boto]
num_retries = 1
max_retry_delay = 1
http_socket_timeout = 5
'''


def through(proxy, tmpdir, moto, bucket, boto=BOTO_CONFIG):
    """The environment that sends a registry's S3 requests through
    ``proxy`` (to moto), with boto's retries as ``boto`` says."""
    boto_config = tmpdir.join('boto.cfg')
    boto_config.write(boto)
    return dict(moto.env(bucket), AWS_PORT=str(proxy.port),
                BOTO_CONFIG=str(boto_config))


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
            lock_timeout=2, intent_timeout=60, recovery_interval=1)
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

        def logged(*what):
            log = hosts[0].log() + hosts[1].log()
            return all(s in log for s in what)
        wait_for(lambda: logged('redis unreachable', 'left to recovery'),
                 what='the log to say the work was left')
        for host in hosts:
            assert host.images() == everything
        assert not logged('deleted image')

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


def test_storage_cut_mid_cascade_deletes_nothing_needed(make_registry, tmpdir,
                                                        moto, bucket,
                                                        redis_server):
    """The line to S3 is cut while a tag delete's cascade is tearing a
    long chain down: the registry answers (and keeps answering what needs
    no storage), nothing another tag needs is touched, the deletion is
    left journalled, and once S3 is back recovery finishes it."""
    proxy = TcpProxy(moto.port)
    direct = moto.env(bucket)
    env = through(proxy, tmpdir, moto, bucket)
    settings = refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        intent_timeout=60, recovery_interval=1, lock_timeout=5)
    try:
        reg = make_registry(refcount=settings, env=env).start()
        client = Client(reg.url)
        base = client.push('ns/base', 'keep', ['cut-base'])
        chain = client.push('ns/long', 'v', ['cut-%02d' % i
                                             for i in range(12)], base[-1])
        other = client.push('ns/other', 'v', ['cut-o'], chain[2])
        needed = set(base + chain[:3] + other)
        journal = 'extensions/refcount/deleting/'

        def cut_when_deleting():
            deadline = time.time() + 30
            while time.time() < deadline:
                if any(k.startswith(journal) for k in bucket_keys(direct)):
                    proxy.cut()
                    return
                time.sleep(0.005)

        import threading
        cutter = threading.Thread(target=cut_when_deleting)
        cutter.start()
        started = time.time()
        r = client.delete_tag('ns/long', 'v')
        assert time.time() - started < 60
        cutter.join(30)
        assert not proxy.up, 'the cascade finished before the cut'
        assert r.status_code in (200, 500), r.status_code
        # while S3 is away: the registry answers, storage requests fail
        assert requests_ok(reg.url + '/_ping')
        assert client.pullable('ns/other', 'v') is not None
        keys = bucket_keys(direct)
        for image in needed:
            assert 'images/%s/json' % image in keys, image
            assert 'images/%s/layer' % image in keys, image
        left = set(chain[3:]) & set(k.split('/')[1] for k in keys
                                    if k.startswith('images/'))
        assert left, 'the cut came after the whole cascade'
        # a storage call on the cut line fails only after boto's retries,
        # seconds each: the log says so within a few of them
        time.sleep(2)
        wait_for(lambda: any(s in reg.log() for s in ('left to recovery',
                                                      'recovery failed')),
                 timeout=60, what='the log to say the work was left')
        assert bucket_keys(direct) == keys      # nothing moved meanwhile

        proxy.restore()
        wait_for(lambda: reg.images() == needed, timeout=60,
                 what='recovery to finish the cascade')
        reg.wait_recovered()
        rep = assert_invariants(reg, client)
        assert rep.unreachable == []
        assert client.pullable('ns/other', 'v') is None
        assert client.pullable('ns/base', 'keep') is None
    finally:
        proxy.close()


def requests_ok(url):
    import requests
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:
        return False


def test_a_deletion_a_storage_error_stopped_is_finished_soon(
        make_registry, tmpdir, moto, bucket, redis_server):
    """Issue 21, item 10: a deletion stopped by a storage error after its
    tombstone refused re-pushes of the image (and children of it) until
    recovery came round - 10 to 15 minutes.  Its worker now finishes it
    within seconds, whatever ``recovery_interval``."""
    import os
    import signal
    proxy = TcpProxy(moto.port)
    direct = moto.env(bucket)
    env = through(proxy, tmpdir, moto, bucket)
    settings = refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        intent_timeout=600, recovery_interval=900, lock_timeout=5)
    try:
        reg = make_registry(refcount=settings, env=env, workers=1)
        reg.start(env={'REGISTRY_REFCOUNT_PAUSE_AT': 'teardown_before_json'})
        client = Client(reg.url)
        ids = client.push('ns/app', 'v', ['err-top'])
        assert client.delete_tag('ns/app', 'v').status_code == 200
        wait_for(lambda: 'pause point teardown_before_json' in reg.log(),
                 what='the deletion to reach its json')
        pid = int(reg.log().split('pause point teardown_before_json (pid ')
                  [1].split(')')[0])
        proxy.cut()
        os.kill(pid, signal.SIGCONT)
        wait_for(lambda: 'left to recovery' in reg.log(), timeout=60,
                 what='the deletion to fail')
        assert 'images/%s/json' % ids[0] in bucket_keys(direct)
        proxy.restore()
        started = time.time()
        wait_for(lambda: not any('/_deleting' in k
                                 for k in bucket_keys(direct)), timeout=60,
                 what='the worker to finish the deletion')
        assert time.time() - started < 30       # not recovery_interval
        # the same image pushed again is accepted, and pulls
        assert client.push('ns/app', 'v', ['err-top']) == ids
        assert client.pullable('ns/app', 'v') is None
        reg.wait_recovered()
        assert_invariants(reg, client)
    finally:
        proxy.close()
