"""What the extension makes a client wait for on object storage, counted in
round trips: S3 far away costs a round trip per request one after the
other, and none for requests that go together.  The registry's S3 requests
go through a relay on loopback that adds a fixed latency to each
(:class:`~tests.services.Delaying`); the requests a tag write's response
waits for are counted as the longest chain of them that went one after the
other, with the extension and without it (issue 25)."""

from __future__ import absolute_import

import json
import time

import pytest

from ..registry.conftest import refcount_settings
from ..registry.harness import Client, image_id
from ..services import Delaying, sequential

#: The relay's latency: long beside what moto and the registry take on
#: loopback, so that requests in parallel overlap and those in a row do not.
DELAY = 0.05


@pytest.fixture
def relay(moto):
    proxy = Delaying(moto.port, DELAY)
    yield proxy
    proxy.close()


def waited(relay, request):
    """The round trips a request's response waited for, and the lines of
    the requests it made (after the work that follows the requests before
    it is over: it would run beside this one)."""
    relay.quiet(0.5)
    start = time.time()
    r = request()
    end = time.time()
    assert r.status_code == 200, r.text
    requests = relay.between(start, end)
    return sequential(requests), [line for _, _, line in requests]


@pytest.fixture
def pair(make_registry, moto, bucket, relay, redis_server, tmpdir):
    """The registry alone and with the extension, on one bucket behind
    the relay: ``{'plain': client, 'ours': client}``."""
    env = dict(moto.env(bucket), AWS_PORT=str(relay.port))
    plain = make_registry(refcount=None, env=dict(
        env, STORAGE_PATH='/plain')).start()
    ours = make_registry(env=env, refcount=refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        recovery_interval=3600)).start()
    return {'plain': Client(plain.url), 'ours': Client(ours.url)}


def extension_trips(pair, relay, request):
    """The round trips the extension adds to ``request(name, i)`` (the
    registry's name in ``pair``, and the attempt): the fewest of three
    with it, less the fewest of three without."""
    trips = {}
    for name in ('plain', 'ours'):
        got = [waited(relay, lambda: request(name, i)) for i in range(3)]
        trips[name] = min(got)
    assert trips['plain'][0] >= 2, trips     # the registry's own are seen
    return trips['ours'][0] - trips['plain'][0], trips


def test_tag_write_waits_for_two_round_trips_of_the_extension(pair, relay):
    """A tag write's intent and pending marker go together, and the image
    is checked in one listing: two round trips before the registry's own
    part of the request, whatever the storage's latency."""
    image = {}
    for name, client in pair.items():
        image[name] = client.push('ns/app', 'v1', ['rt-%s' % name])[-1]
    added, trips = extension_trips(pair, relay, lambda name, i: (
        pair[name].put_tag('ns/app', 'v%d' % (i + 2), image[name])))
    assert added <= 2, trips


def test_child_json_waits_for_three_round_trips_of_the_extension(
        pair, relay):
    """A child's json PUT: the image's tombstones, the parent's ancestry
    and the image's stored json read at once, then the parent's marker
    and its check: three round trips (each read one request)."""
    base = {}
    for name, client in pair.items():
        base[name] = client.push('ns/base', 'v1', ['rtb-%s' % name])[-1]

    def json_put(name, i):
        image = image_id('rt-child-%s%d' % (name, i))
        doc = {'id': image, 'parent': base[name],
               'created': '2014-10-01T00:00:00Z'}
        return pair[name]._req('PUT', '/v1/images/%s/json' % image,
                           data=json.dumps(doc),
                           headers={'Content-Type': 'application/json'})
    added, trips = extension_trips(pair, relay, json_put)
    assert added <= 3, trips
