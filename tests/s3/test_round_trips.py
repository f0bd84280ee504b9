"""What the extension makes a client wait for on object storage, counted in
round trips: S3 far away costs a round trip per request one after the
other, and none for requests that go together.  The registry's S3 requests
go through a relay on loopback that adds a fixed latency to each
(:class:`~tests.services.Delaying`); the requests a tag write's response
waits for are counted as the longest chain of them that went one after the
other, with the extension and without it (issue 25)."""

from __future__ import absolute_import

import time

import pytest

from ..registry.conftest import refcount_settings
from ..registry.harness import Client
from ..services import Delaying, sequential

#: The relay's latency: long beside what moto and the registry take on
#: loopback, so that requests in parallel overlap and those in a row do not.
DELAY = 0.05


@pytest.fixture
def relay(moto):
    proxy = Delaying(moto.port, DELAY)
    yield proxy
    proxy.close()


def chain_of_tag_write(client, relay, repo, tag, image):
    """The round trips a tag write's response waited for, and the lines of
    the requests it made (after the work that follows the requests before
    it is over: it would run beside this one)."""
    relay.quiet(0.5)
    start = time.time()
    r = client.put_tag(repo, tag, image)
    end = time.time()
    assert r.status_code == 200, r.text
    requests = relay.between(start, end)
    return sequential(requests), [line for _, _, line in requests]


def test_tag_write_waits_for_two_round_trips_of_the_extension(
        make_registry, moto, bucket, relay, redis_server, tmpdir):
    """A tag write's intent and pending marker go together, and the image
    is checked in one listing: two round trips before the registry's own
    part of the request, whatever the storage's latency."""
    env = dict(moto.env(bucket), AWS_PORT=str(relay.port))
    plain = make_registry(refcount=None, env=dict(
        env, STORAGE_PATH='/plain')).start()
    ours = make_registry(env=env, refcount=refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        recovery_interval=3600)).start()
    chains = {}
    for name, reg in (('plain', plain), ('ours', ours)):
        client = Client(reg.url)
        image = client.push('ns/app', 'v1', ['rt-%s' % name])[-1]
        chains[name] = [chain_of_tag_write(client, relay, 'ns/app',
                                           'v%d' % i, image)
                        for i in range(2, 5)]
    plain_trips = min(trips for trips, _ in chains['plain'])
    for trips, lines in chains["ours"]:
        assert trips - plain_trips <= 2, (trips, plain_trips, lines)
    # and the count means something: the registry's own are there
    assert plain_trips >= 3, chains['plain']
