"""The registry's Redis LRU cache (``cache_lru``) caches small files per
path: a deleted image must not go on being served from it, and pushing
the same image again after its deletion must work.

(With ``cache_lru`` on, docker-registry 0.9.1's own tag DELETE fails with
a 500 - ``store.get_content(path=...)`` meets the cache's ``*args``-only
wrapper - so images are orphaned here by a retag.)"""

from __future__ import absolute_import

import os
import re
import signal
import time

import pytest

from .conftest import assert_invariants
from .harness import Client


@pytest.fixture
def redis_server(tmpdir):
    from tests.services import RedisServer
    server = RedisServer(str(tmpdir.join('redis'))).start()
    yield server
    server.stop()


def cache_config(redis_server):
    return {'cache_lru': {'host': '127.0.0.1', 'port': redis_server.port,
                          'db': 0, 'password': None}}


def cached_key(redis_server, path):
    """The cache's key of a registry file ``path``, and its value (the
    cache's keys are its prefix, then the path)."""
    conn = redis_server.client()
    keys = [k for k in conn.keys('cache_path:*')
            if k.decode('utf-8').endswith(path)]
    assert len(keys) == 1, (path, keys)
    return keys[0], conn.get(keys[0])


def paused_worker(reg, point, timeout=30):
    """The pid of the worker stopped at pause ``point``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.search(r'pause point %s \(pid (\d+)\)' % point,
                          reg.log())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError('no worker reached %s:\n%s'
                         % (point, reg.log()[-3000:]))


def retag(client, repo, tag, names):
    """Push ``names`` and move the tag to the top: the tag PUT is the last
    request, so none waits on the worker its reconcile then stops."""
    ids = client.push_chain(names)
    client.tag(repo, tag, ids[-1])
    return ids


def paused_registry(make_registry, redis_server, point):
    return make_registry(extra=cache_config(redis_server)).start(
        env={'REGISTRY_REFCOUNT_PAUSE_AT': point})


def test_deleted_images_are_not_served_from_the_lru(make_registry,
                                                    redis_server):
    reg = make_registry(extra=cache_config(redis_server)).start()
    client = Client(reg.url)
    ids = client.push('ns/app', 'v', ['lru-1', 'lru-2'])
    assert client.pullable('ns/app', 'v') is None      # fills the cache
    assert redis_server.client().dbsize() > 0
    assert client.delete_tag('ns/app', 'v').status_code == 500  # 0.9.1
    other = client.push('ns/app', 'v', ['lru-other'])          # a retag
    assert reg.settle()           # the old chain goes after the response
    assert client.pullable('ns/app', 'v') is None
    for image in ids:
        for what in ('json', 'ancestry'):
            r = client.http.get(reg.url + '/v1/images/%s/%s' % (image, what))
            assert r.status_code == 404, (what, r.status_code)
    # the same images pushed again are whole again
    assert client.push('ns/app', 'v', ['lru-1', 'lru-2']) == ids
    assert other
    assert client.pullable('ns/app', 'v') is None
    assert_invariants(reg, client)


def test_json_put_back_in_the_cache_during_a_deletion_is_not_served(
        make_registry, redis_server):
    """A reader that read an image's json from storage before the
    deletion removed it stores it in the cache after: the deletion drops
    it again once the image's files are gone (here the reader's late
    write is made while the deleting worker stands after the json's
    removal)."""
    reg = paused_registry(make_registry, redis_server, 'after_json_removed')
    client = Client(reg.url)
    old = client.push('ns/app', 'v', ['late-1', 'late-2'])
    assert client.pullable('ns/app', 'v') is None      # fills the cache
    key, stale = cached_key(redis_server, 'images/%s/json' % old[-1])
    retag(client, 'ns/app', 'v', ['late-new'])         # the old chain goes
    pid = paused_worker(reg, 'after_json_removed')
    redis_server.client().set(key, stale)             # the late reader
    os.kill(pid, signal.SIGCONT)
    assert reg.settle()
    assert not (reg.images() & set(old))
    for image in old:
        r = client.http.get(reg.url + '/v1/images/%s/json' % image)
        assert r.status_code == 404, (image, r.status_code)
    assert client.pullable('ns/app', 'v') is None
    assert_invariants(reg, client)


def test_old_tag_value_put_back_in_the_cache_is_not_served(make_registry,
                                                           redis_server):
    """A reader puts a tag's old value back in the cache while the
    retag's reconcile takes the tag's marker off the old image: the
    registry must not go on serving the tag as the old image, which the
    reconcile then deletes (it reads the tag file from storage, and the
    cache's copy goes)."""
    reg = paused_registry(make_registry, redis_server,
                          'reconcile_before_drop')
    client = Client(reg.url)
    old = client.push('ns/app', 'v', ['told-1'])
    assert client.pullable('ns/app', 'v') is None      # fills the cache
    key, stale = cached_key(redis_server, 'repositories/ns/app/tag_v')
    new = retag(client, 'ns/app', 'v', ['tnew-1'])
    pid = paused_worker(reg, 'reconcile_before_drop')
    redis_server.client().set(key, stale)             # the late reader
    os.kill(pid, signal.SIGCONT)
    assert reg.settle()
    assert not (reg.images() & set(old))
    r = client.http.get(reg.url + '/v1/repositories/ns/app/tags/v')
    assert r.json() == new[-1]
    assert client.pullable('ns/app', 'v') is None
    assert_invariants(reg, client)
