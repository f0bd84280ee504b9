"""Issue 26: ``registry-refcount metrics`` in Prometheus's text format,
read by the official parser (``prometheus_client``, in the Python 3
environment), agrees with ``status --json``; ``metrics_file`` is kept
current by the workers."""

from __future__ import absolute_import

import json
import os
import subprocess
import time

from .conftest import refcount_settings
from .harness import ROOT, Client
from .test_cli import run

PARSE = '''
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
'''


def parsed(text):
    """The samples, as the official parser reads them."""
    p = subprocess.Popen([os.path.join(ROOT, '.venv3', 'bin', 'python'),
                          '-c', PARSE], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(text.encode('utf-8'))
    assert p.returncode == 0, err
    return json.loads(out.decode('utf-8'))


def test_metrics_parse_and_agree_with_status(make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, undo_window=600)).start()
    client = Client(reg.url)
    base = client.push_chain(['mt-base'])
    client.push('team/app', 'v1', ['mt-1'], base[-1])
    client.push('team/app', 'v2', ['mt-2'], base[-1])
    client.push_chain(['mt-orphan'])
    assert client.delete_tag('team/app', 'v1').status_code == 200
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert code == 0, (out, err)
    code, _, text, err = run(reg, 'metrics')
    assert code == 0, err
    got = parsed(text)
    code, status, out, err = run(reg, '--json', 'status')
    for metric, fact in (('images', 'images'), ('tags', 'tags'),
                         ('layers_bytes', 'layer_bytes'),
                         ('reclaimable_bytes', 'reclaimable_bytes'),
                         ('trash_images', 'trash_images'),
                         ('trash_bytes', 'trash_bytes'),
                         ('pending_intents', 'pending_intents'),
                         ('unfinished_deletions', 'unfinished_deletions')):
        assert got['registry_refcount_%s{}' % metric] == status[fact], metric
    assert status['trash_images'] == 1 and status['images'] == 3
    assert got['registry_refcount_deletions_total{"by": "gc"}'] == 1
    assert abs(got['registry_refcount_last_gc_timestamp_seconds{}'] -
               status['last_gc']['ended']) < 0.01
    for name in got:            # Prometheus's naming rules
        assert name.startswith('registry_refcount_'), name


def test_metrics_file_is_kept_current_by_the_workers(make_registry, tmpdir):
    path = str(tmpdir.join('refcount.prom'))
    reg = make_registry(refcount=refcount_settings(
        tmpdir, metrics_file=path, recovery_interval=1)).start()
    Client(reg.url).push('team/app', 'v1', ['mf-1'])
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(path) and parsed(open(path).read()).get(
                'registry_refcount_images{}') == 1:
            break
        time.sleep(0.5)
    got = parsed(open(path).read())
    assert got['registry_refcount_images{}'] == 1, reg.log()[-2000:]
    assert not [n for n in os.listdir(str(tmpdir)) if
                n.startswith('.metrics-')]       # written atomically


def test_online_deletions_are_counted_across_workers_and_restarts(
        make_registry, tmpdir):
    """The workers' own counters: what tag deletes freed online, summed
    over workers and a restart (each round's counts on storage, folded by
    recovery)."""
    reg = make_registry(refcount=refcount_settings(
        tmpdir, recovery_interval=1)).start()
    client = Client(reg.url)
    for n in range(3):
        client.push('team/app', 'v%d' % n, ['oc-%d' % n])
    for n in range(2):
        assert client.delete_tag('team/app', 'v%d' % n).status_code == 200

    def online():
        code, _, text, err = run(reg, 'metrics')
        got = parsed(text)
        return (got['registry_refcount_deletions_total{"by": "online"}'],
                got['registry_refcount_freed_bytes_total{"by": "online"}'],
                got['registry_refcount_lock_timeouts_total{}'])
    deadline = time.time() + 30
    while online()[0] < 2 and time.time() < deadline:
        time.sleep(0.5)
    deleted, freed, timeouts = online()
    assert deleted == 2 and freed > 0 and timeouts == 0
    reg.restart()
    assert client.delete_tag('team/app', 'v2').status_code == 200
    deadline = time.time() + 30
    while online()[0] < 3 and time.time() < deadline:
        time.sleep(0.5)
    assert online()[0] == 3
    assert online()[1] == freed * 3 / 2
