"""Two registry hosts - separate gunicorn masters on their own ports - on
one bucket and one Redis (``lock_backend: redis``), with clients pushing,
retagging and deleting through both at once; then S1, R1 and L1 on the
bucket's contents."""

from __future__ import absolute_import

from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import recovery

from ..registry.conftest import assert_invariants, refcount_settings
from .workload import PatientClient, mixed_workload

CLIENTS = 4
ROUNDS = 5


def settle(reg, redis_server):
    """Requests have stopped: let their work after the response finish,
    then run recovery once, as the CLI would, with the hosts' own storage
    and Redis."""
    reg.settle()
    ctx = protocols.context(reg.store(), locks.RedisLocks(
        port=redis_server.port, timeout=30), by='test')
    return recovery.recover(ctx, intent_timeout=0)


def two_hosts(make_registry, tmpdir, redis_server, **overrides):
    # background recovery leaves live tag writes alone (intent_timeout 60);
    # the test recovers once the requests have stopped
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 intent_timeout=60)
    settings.update(overrides)
    hosts = [make_registry(refcount=settings, workers=2) for _ in range(2)]
    for host in hosts:
        host.start()
    return hosts


def test_two_hosts_one_bucket_one_redis(make_registry, tmpdir, redis_server):
    hosts = two_hosts(make_registry, tmpdir, redis_server)
    assert hosts[0].port != hosts[1].port
    assert hosts[0].env['AWS_BUCKET'] == hosts[1].env['AWS_BUCKET']
    base = PatientClient(hosts[0].url).push('ns/base', 'keep', ['h-base'])
    urls = [hosts[n % 2].url for n in range(CLIENTS)]
    logs, errors = mixed_workload(urls, base[-1], ROUNDS)
    assert errors == []
    settle(hosts[0], redis_server)
    for host in hosts:
        rep = assert_invariants(host, PatientClient(host.url))
        assert rep.intents == []
        assert rep.unreachable == []               # L1
    assert ('ns', 'base', 'keep') in rep.tags
    # the work really was split: both hosts served pushes and deletes
    for host in hosts:
        log = host.log()
        assert 'PUT /v1/images/' in log and 'DELETE /v1/repositories/' in log
    assert 'deleted image' in hosts[0].log() + hosts[1].log()
    # a tag written through one host is deleted through the other
    client0, client1 = PatientClient(hosts[0].url), PatientClient(hosts[1].url)
    ids = client0.push_tolerant('ns/cross', 'v', [('x-1', base[-1]),
                                                   ('x-2', None)])
    assert client1.delete_tag('ns/cross', 'v').status_code == 200
    assert not (set(ids) & hosts[0].images())
    assert_invariants(hosts[1], client0)
