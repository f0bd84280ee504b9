"""``config_sample.yml`` as shipped: its ``s3`` flavor and its
``extensions.refcount`` block, driven only by environment variables."""

from __future__ import absolute_import

import os

import yaml

from ..registry.conftest import assert_invariants
from ..registry.harness import ROOT, Client


def test_sample_s3_flavor_and_redis_keys(make_registry, moto, bucket,
                                         redis_server):
    with open(os.path.join(ROOT, 'config_sample.yml')) as f:
        block = yaml.safe_load(f)['s3']['extensions']['refcount']
    assert block['lock_backend'].startswith('_env:REFCOUNT_LOCK_BACKEND:')
    conn = redis_server.client()
    conn.config_resetstat()
    env = dict(moto.env(bucket), REFCOUNT_LOCK_BACKEND='redis',
               REFCOUNT_REDIS_HOST='127.0.0.1',
               REFCOUNT_REDIS_PORT=str(redis_server.port),
               REFCOUNT_REDIS_DB='3', REFCOUNT_LOCK_TIMEOUT='10',
               REFCOUNT_UNDO_WINDOW='0',
               REFCOUNT_RECOVERY_INTERVAL='2')
    reg = make_registry(refcount=block, env=env).start()
    client = Client(reg.url)
    base = client.push('ns/base', 'v', ['cfg-base'])
    ids = client.push('ns/app', 'v', ['cfg-1', 'cfg-2'], base[-1])
    assert client.delete_tag('ns/app', 'v').status_code == 200
    assert reg.images() == set(base)
    assert_invariants(reg, client)
    assert 'lock_backend=redis' in reg.log()
    stats = conn.info('commandstats')
    # the locks went to this Redis: SET NX PX to take, EVAL to release
    assert stats['cmdstat_set']['calls'] >= 2 * len(ids)
    assert stats['cmdstat_eval']['calls'] >= 2 * len(ids)
