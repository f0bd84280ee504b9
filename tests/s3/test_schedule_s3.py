"""Issue 26: scheduled gc inside the registry (``gc_interval``) on two
hosts sharing a bucket, locking in Redis: garbage goes without any
command, the runs are in the history, and no two gc runs overlap."""

from __future__ import absolute_import

import time

from ..registry.conftest import refcount_settings
from ..registry.harness import Client
from .faults import host_command, run_cli


def test_scheduled_gc_on_two_hosts_never_runs_twice_at_once(
        make_registry, tmpdir, redis_server):
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 gc_interval=2, recovery_interval=1,
                                 grace_period=3, intent_timeout=60)
    hosts = [make_registry(refcount=settings, workers=2, command=host_command(
        'refcount-host-%s' % n)).start() for n in 'ab']
    client = Client(hosts[0].url)
    kept = client.push('team/app', 'v1', ['sg-kept'])
    # never tagged: gc's, once older than the grace period (a push in
    # flight is younger)
    orphans = client.push_chain(['sg-o1', 'sg-o2'])
    deadline = time.time() + 60
    while time.time() < deadline:
        present = hosts[0].images()
        if not set(orphans) & present:
            break
        time.sleep(0.5)
    assert present == set(kept), hosts[0].log()[-3000:]
    time.sleep(5)                   # a few more rounds, on both hosts
    code, doc, err = run_cli(hosts[0].config, 's3', hosts[0].env,
                             'history', '--limit', '200')
    assert code == 0, err
    gcs = sorted((r['started'], r['ended'], r['host'])
                 for r in doc['runs'] if r['command'] == 'gc')
    assert gcs and all(r['by'] == 'worker' for r in doc['runs']
                       if r['command'] == 'gc'), doc
    for (_, ended, _), (started, _, _) in zip(gcs, gcs[1:]):
        assert started >= ended - 1, gcs   # (the clock's second)
    assert sum(r['counts'].get('deleted', 0) for r in doc['runs']
               if r['command'] == 'gc') == len(orphans), doc
    assert client.pullable('team/app', 'v1') is None


def test_a_scheduled_retention_policy_deletes_once_on_two_hosts(
        make_registry, tmpdir, redis_server):
    """The config's retention policy runs with the scheduled gc, under
    its lock: two hosts, every tag it should delete deleted once."""
    settings = refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        gc_interval=2, recovery_interval=1, grace_period=3600,
        intent_timeout=60,
        retention=[{'repository': 'ci/*', 'match': '^build-',
                    'keep_last': 1}])
    hosts = [make_registry(refcount=settings, workers=2, command=host_command(
        'refcount-host-%s' % n)).start() for n in 'ab']
    client = Client(hosts[1].url)
    for n in range(4):
        client.push('ci/app', 'build-%d' % n, ['sr-%d' % n])
    client.push('ci/app', 'keep', ['sr-keep'])
    deadline = time.time() + 60
    while len(client.tags('ci/app')) > 2 and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(5)                   # more rounds, on both hosts
    tags = client.tags('ci/app')
    assert len(tags) == 2 and 'keep' in tags, tags
    code, doc, err = run_cli(hosts[0].config, 's3', hosts[0].env,
                             'history', '--limit', '200')
    retained = [r for r in doc['runs'] if r['command'] == 'retain']
    assert sum(r['counts'].get('deleted', 0) for r in retained) == 3, doc
    assert all(r['outcome'] == 'done' for r in retained), retained
