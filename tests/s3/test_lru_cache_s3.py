"""The registry's Redis LRU cache (``cache_lru``) on S3, with PUTs that
fail on the way to S3.

The cache's ``set`` writes Redis before S3 and skips the S3 write when
Redis already holds the same bytes: a PUT that failed once is "done" by
its retry without reaching S3.  The extension's records must reach S3
whatever the cache holds, and its truth must be what S3 holds."""

from __future__ import absolute_import

import random
import threading
import time

import pytest

from ..registry.conftest import assert_invariants, refcount_settings
from ..registry.harness import Client, image_id
from ..services import FailingPuts, bucket_keys
from .test_failures import through, wait_for

#: boto without retries: a PUT the proxy cuts fails for its caller.
BOTO_CONFIG = '''[Boto]
num_retries = 0
http_socket_timeout = 5
'''

CACHE_DB = 1
#: The extension's PUTs the proxy fails in the concurrent test.
FAILURES = 12


def cached_registry(make_registry, tmpdir, moto, bucket, redis_server,
                    **overrides):
    """A registry of the s3 flavor with ``cache_lru`` on the test's
    redis-server, reaching S3 through a :class:`FailingPuts` proxy."""
    proxy = FailingPuts(moto.port)
    env = through(proxy, tmpdir, moto, bucket, BOTO_CONFIG)
    settings = refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        recovery_interval=1, **overrides)
    cache = dict(redis_server.settings(CACHE_DB), password=None)
    reg = make_registry(refcount=settings, env=env,
                        extra={'cache_lru': cache}).start()
    return reg, proxy


def test_failed_tag_marker_put_reaches_s3_on_its_retry(
        make_registry, tmpdir, moto, bucket, redis_server):
    """The tag's marker PUT fails once; recovery writes it again, and it
    must reach S3 (the cache holds the same bytes, and would skip it):
    else the pending marker goes and the tagged image with it."""
    reg, proxy = cached_registry(make_registry, tmpdir, moto, bucket,
                                 redis_server)
    try:
        client = Client(reg.url)
        ids = client.push_chain(['lru-s3-base', 'lru-s3-top'])
        proxy.fail(r'/_references/tag-')
        client.tag('ns/app', 'v', ids[-1])
        wait_for(lambda: proxy.failed, what='the marker PUT to fail')
        reg.wait_recovered(timeout=40)
        assert reg.images() == set(ids)
        assert client.pullable('ns/app', 'v') is None
        keys = bucket_keys(moto.env(bucket))
        assert [k for k in keys if k.startswith(
            'images/%s/_references/tag-' % ids[-1])], sorted(keys)
        assert_invariants(reg, client)
    finally:
        proxy.close()


def answer(request, *args):
    """A request's answer, or None when the connection failed (a request
    that got no answer acknowledged nothing)."""
    import requests
    try:
        return request(*args)
    except requests.RequestException:
        return None


def push_with_retries(client, names, tries=FAILURES + 1):
    """Push a chain as docker does when a request fails: each image again
    until it goes through (a child whose registration failed is refused
    loudly, and pushed again).  One more try than the proxy fails PUTs:
    one image may meet every failure.  A push whose answer was lost (a
    worker recycled by ``--max-requests`` closes its connections) may
    have gone through: then its retry is told the image exists."""
    ids, parent = [], None
    for name in names:
        image = image_id(name)
        unanswered = False
        for _ in range(tries):
            r = answer(client.push_image, image, parent)
            if r is not None and r.status_code == 409 and unanswered:
                break       # it went through; its answer was lost
            if r is not None and r.status_code == 200:
                break
            unanswered = unanswered or r is None
        assert r is not None and (r.status_code == 200 or (
            r.status_code == 409 and unanswered)), (
            name, r, r is not None and r.text)
        ids.append(image)
        parent = image
    return ids


def test_concurrent_pushes_retags_and_failing_puts(
        make_registry, tmpdir, moto, bucket, redis_server):
    """Pushes, retags and deletes from several clients at once, pulls
    filling the cache meanwhile, and a share of the extension's PUTs
    failing: every acknowledged tag stays pullable, the records agree
    with the truth, and no deleted image is served from the cache."""
    reg, proxy = cached_registry(make_registry, tmpdir, moto, bucket,
                                 redis_server)
    try:
        proxy.fail(r'/extensions/refcount/|/_references/', times=FAILURES)
        pushed, acknowledged = set(), {}
        lock = threading.Lock()
        errors = []

        def worker(n):
            client = Client(reg.url)
            rnd = random.Random(n)
            try:
                for round_ in range(6):
                    repo, tag = 'ns/r%d' % rnd.randrange(3), 'v'
                    ids = push_with_retries(
                        client, ['cc-%d-%d-%d' % (n, round_, i)
                                 for i in range(2)])
                    with lock:
                        pushed.update(ids)
                    r = answer(client.put_tag, repo, tag, ids[-1])
                    with lock:
                        if r is not None and r.status_code == 200:
                            acknowledged[(repo, tag)] = ids[-1]
                    answer(client.pullable, repo, tag)  # fills the cache
                    if rnd.random() < 0.3:      # a tag of its own, deleted
                        own = 'ns/w%d' % n
                        answer(client.put_tag, own, tag, ids[0])
                        answer(client.pullable, own, tag)
                        answer(client.delete_tag, own, tag)
            except Exception as e:  # reported below, with the thread's
                errors.append(e)
        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        time.sleep(2)                    # recovery's next round
        reg.wait_recovered(timeout=60)
        client = Client(reg.url)
        assert_invariants(reg, client)
        present = reg.images()
        for (repo, tag) in acknowledged:
            assert client.pullable(repo, tag) is None, (repo, tag)
        gone = pushed - present
        assert gone, 'nothing was deleted: the test tests nothing'
        for image in gone:
            for what in ('json', 'ancestry'):
                # a worker recycled (--max-requests) closes its connections
                for _ in range(5):
                    r = answer(client.http.get, reg.url + '/v1/images/%s/%s'
                               % (image, what))
                    if r is not None:
                        break
                assert r.status_code == 404, (image, what, r.status_code)
    finally:
        proxy.close()


def test_a_tag_write_retried_after_a_failed_put_reaches_s3(
        make_registry, tmpdir, moto, bucket, redis_server):
    """The registry's own tag write fails on S3 after its cache took the
    new value; the client's retry answered 200 without writing S3 (the
    cache held the same bytes), so S3 kept the old image while the client
    was told the new one is tagged - and the extension, following S3,
    released the new image.  The entry is dropped before the write."""
    reg, proxy = cached_registry(make_registry, tmpdir, moto, bucket,
                                 redis_server)
    try:
        client = Client(reg.url)
        old = client.push('ns/app', 'v', ['lru-tw-old'])
        new = client.push_chain(['lru-tw-new'])
        proxy.fail(r'/repositories/ns/app/tag_v$')
        first = answer(client.put_tag, 'ns/app', 'v', new[-1])
        assert first is None or first.status_code != 200
        assert proxy.failed
        assert client.put_tag('ns/app', 'v', new[-1]).status_code == 200
        reg.wait_recovered(timeout=40)
        keys = bucket_keys(moto.env(bucket))
        tag = [k for k in keys if k.endswith('repositories/ns/app/tag_v')]
        assert tag, sorted(keys)
        assert reg.store().get_content(tag[0][tag[0].index(
            'repositories/'):]).decode() == new[-1]
        assert client.pullable('ns/app', 'v') is None
        assert new[-1] in reg.images() and old[-1] not in reg.images()
        assert_invariants(reg, client)
    finally:
        proxy.close()


@pytest.mark.parametrize('failing', ['json', 'ancestry'])
def test_an_image_json_write_retried_after_a_failed_put_reaches_s3(
        make_registry, tmpdir, moto, bucket, redis_server, failing):
    """A file of the json PUT (the json, or the ancestry written after it)
    fails on S3 after the registry's cache took its bytes; the client's
    retry of the same json was answered 200 without writing S3 (the cache
    held the same bytes): no json in S3, and the checksum PUT answered
    404 on every retry, for ever; no ancestry in S3, the extension's
    truth.  The entries are dropped before the registry writes them."""
    reg, proxy = cached_registry(make_registry, tmpdir, moto, bucket,
                                 redis_server)
    try:
        client = Client(reg.url)
        image = image_id('lru-json')
        proxy.fail(r'/images/%s/%s$' % (image, failing))
        first = answer(client.push_image, image)
        assert first is None or first.status_code != 200
        assert proxy.failed
        r = client.push_image(image)
        assert r.status_code == 200, (r.status_code, r.text)
        keys = bucket_keys(moto.env(bucket))
        for name in ('json', 'ancestry'):
            assert [k for k in keys if k.endswith(
                'images/%s/%s' % (image, name))], (name, sorted(keys))
        assert client.put_tag('ns/app', 'v', image).status_code == 200
        assert client.pullable('ns/app', 'v') is None
        assert_invariants(reg, client)
    finally:
        proxy.close()
