"""The registry's Redis LRU cache (``cache_lru``) caches small files per
path: a deleted image must not go on being served from it, and pushing
the same image again after its deletion must work.

(With ``cache_lru`` on, docker-registry 0.9.1's own tag DELETE fails with
a 500 - ``store.get_content(path=...)`` meets the cache's ``*args``-only
wrapper - so images are orphaned here by a retag.)"""

from __future__ import absolute_import

import pytest

from .conftest import assert_invariants
from .harness import Client


@pytest.fixture
def redis_server(tmpdir):
    from tests.services import RedisServer
    server = RedisServer(str(tmpdir.join('redis'))).start()
    yield server
    server.stop()


def test_deleted_images_are_not_served_from_the_lru(make_registry,
                                                    redis_server):
    reg = make_registry(extra={'cache_lru': {
        'host': '127.0.0.1', 'port': redis_server.port, 'db': 0,
        'password': None}}).start()
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
