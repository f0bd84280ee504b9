"""Issue 24 on the registry's S3 driver, with its Redis LRU cache on:
a repository deleted, its tags put back by ``restore`` (through the
registry's cache, which the registry reads them from), pullable; then
deleted again and purged from the bucket."""

from __future__ import absolute_import

from ..registry.conftest import assert_invariants, refcount_settings
from ..registry.harness import Client
from ..services import bucket_keys
from .faults import run_cli


def test_restore_and_purge_on_s3_with_the_registry_cache(
        make_registry, tmpdir, moto, bucket, redis_server):
    settings = refcount_settings(tmpdir, lock_backend='redis',
                                 redis=redis_server.settings(),
                                 undo_window=600, recovery_interval=600)
    cache = dict(redis_server.settings(1), password=None)
    reg = make_registry(refcount=settings,
                        extra={'cache_lru': cache}).start()
    client = Client(reg.url)
    base = client.push_chain(['s3u-base'])
    a = client.push('team/app', 'a', ['s3u-a'], base[-1])
    b = client.push('team/app', 'b', ['s3u-b'], base[-1])
    assert client.tags('team/app') == {'a': a[-1], 'b': b[-1]}  # cached
    assert client.delete_repository('team/app').status_code == 200
    reg.settle()
    assert client.tags('team/app') == {}

    def cli(*args):
        code, doc, err = run_cli(reg.config, 's3', reg.env, *args)
        assert code == 0, (doc, err)
        return doc
    assert set(e['image'] for e in cli('trash')['trash']) == {a[-1], b[-1]}
    assert len(cli('restore', 'team/app')['restored']) == 2
    assert client.tags('team/app') == {'a': a[-1], 'b': b[-1]}
    for tag in ('a', 'b'):
        assert client.pullable('team/app', tag) is None
    assert cli('purge', '--all')['purged'] == []
    assert_invariants(reg, client)

    assert client.delete_repository('team/app').status_code == 200
    reg.settle()
    doc = cli('purge', '--all')
    assert sorted(doc['purged']) == sorted(base + a + b), doc
    assert not [k for k in bucket_keys(reg.env) if k.startswith('images/')]
