"""Fixtures of the s3 flavor: moto's S3 server and redis-server, started
once per session on free 127.0.0.1 ports; a fresh bucket per test; the
registry's ``s3`` flavor from ``config_sample.yml`` with Redis locks."""

from __future__ import absolute_import

import pytest

from registry_refcount import locks
from registry_refcount import protocols

from ..registry.conftest import client, registries, registry  # noqa: F401
from ..services import MotoServer, RedisServer


@pytest.fixture(scope='session')
def moto(tmpdir_factory):
    server = MotoServer(str(tmpdir_factory.mktemp('moto'))).start()
    yield server
    server.stop()


@pytest.fixture(scope='session')
def redis_service(tmpdir_factory):
    server = RedisServer(str(tmpdir_factory.mktemp('redis'))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_service):
    """The session's redis-server, running and empty."""
    if not redis_service.running:
        redis_service.start()
    redis_service.client().flushall()
    return redis_service


@pytest.fixture
def bucket(moto):
    return moto.new_bucket()


def redis_settings(redis_server):
    return {'lock_backend': 'redis', 'redis': redis_server.settings()}


@pytest.fixture
def make_registry(tmpdir, moto, bucket, redis_server):
    """Registries of the ``s3`` flavor on this test's bucket, locking in
    Redis (what several hosts need)."""
    with registries(tmpdir, settings=redis_settings(redis_server),
                    flavor='s3', env=moto.env(bucket)) as make:
        yield make


# -- storage level: the protocols on the registry's S3 driver ---------------

@pytest.fixture
def store(moto, bucket):
    s = moto.store(bucket)
    protocols.initialise(s)
    return s


@pytest.fixture
def ctx(store, redis_server):
    return protocols.context(store, locks.RedisLocks(
        port=redis_server.port, timeout=5, lease=5))
