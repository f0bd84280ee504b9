"""The operator CLI (``gc``, ``verify``, ``status``) on the ``s3`` flavor:
the same configuration as the hosts, the registry's S3 driver, Redis
locks - while a registry serves the bucket."""

from __future__ import absolute_import

import json
import os
import subprocess

from ..registry.conftest import assert_invariants
from ..registry.harness import BIN

CLI = os.path.join(BIN, 'registry-refcount')


def run(reg, *args):
    reg.settle()
    env = dict(os.environ, DOCKER_REGISTRY_CONFIG=reg.config,
               SETTINGS_FLAVOR=reg.flavor, **reg.env)
    p = subprocess.Popen([CLI, '--json'] + list(args), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    return p.returncode, json.loads(out.decode('utf-8')), err.decode('utf-8')


def test_gc_and_verify_on_s3(registry, client):
    base = client.push_chain(['g-base'])
    kept = client.push('ns/app', 'v1', ['g-k1'], base[-1])
    abandoned = client.push_chain(['g-x1', 'g-x2'], base[-1])  # never tagged
    lone = client.push_chain(['g-lone'])
    assert registry.images() == set(base + kept + abandoned + lone)
    code, doc, err = run(registry, 'verify')
    assert code == 0, (doc, err)
    assert sorted(doc['unreachable']) == sorted(abandoned + lone)
    code, doc, err = run(registry, 'gc', '--dry-run', '--grace', '0')
    assert code == 0, (doc, err)
    assert set(d['image'] for d in doc['deleted']) == set(abandoned + lone)
    assert registry.images() == set(base + kept + abandoned + lone)
    code, doc, err = run(registry, 'gc', '--grace', '0')
    assert code == 0, (doc, err)
    assert registry.images() == set(base + kept)
    code, doc, err = run(registry, 'status')
    assert code == 0 and doc['initialised'] is True, doc
    assert doc['storage'] == 's3://%s/%s' % (
        registry.env['AWS_BUCKET'], registry.env['STORAGE_PATH'].lstrip('/'))
    assert doc['images'] == 2 and doc['orphan_candidates'] == 0
    rep = assert_invariants(registry, client)
    assert rep.unreachable == []
    # the registry goes on: a child of the base the gc kept
    more = client.push('ns/app', 'v2', ['g-k2'], base[-1])
    assert client.pullable('ns/app', 'v2') is None
    assert registry.images() == set(base + kept + more)
