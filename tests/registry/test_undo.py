"""Issue 24: the undo window.  A tag delete, a retag or a repository
delete puts what it frees into the trash, whole; ``restore`` puts the
tags back, pullable; the purge frees it once the window has passed.
Through the real registry and the real command."""

from __future__ import absolute_import

import json
import os
import time

from .conftest import refcount_settings
from .harness import Client
from .test_cli import images_on_disk, run

WINDOW = 4


def undo_registry(make_registry, tmpdir, recovery_interval=600,
                  window=WINDOW):
    """A registry with an undo window of ``window`` seconds; its recovery
    (and so its purge) runs at start and then every ``recovery_interval``
    seconds."""
    return make_registry(refcount=refcount_settings(
        tmpdir, undo_window=window,
        recovery_interval=recovery_interval)).start()


def audit_events(reg):
    path = reg.path('extensions', 'refcount', 'audit', 'deletions.log')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def trash_tops(reg):
    code, doc, out, err = run(reg, '--json', 'trash')
    assert code == 0, (out, err)
    return set(e['image'] for e in doc['trash'])


def test_a_deleted_repository_stays_whole_comes_back_then_is_purged(
        make_registry, tmpdir):
    """Two tags on a shared base: the repository DELETE leaves every
    image on disk; ``restore`` brings both tags back, pullable; deleted
    again, the workers' purge frees it all once the window has passed."""
    reg = undo_registry(make_registry, tmpdir, recovery_interval=1)
    client = Client(reg.url)
    base = client.push_chain(['u-base'])
    a = client.push('team/app', 'a', ['u-a'], base[-1])
    b = client.push('team/app', 'b', ['u-b'], base[-1])
    before = images_on_disk(reg)
    assert before == set(base + a + b)
    assert client.delete_repository('team/app').status_code == 200
    assert client.tags('team/app') == {}
    assert images_on_disk(reg) == before
    assert trash_tops(reg) == {a[-1], b[-1]}

    code, doc, out, err = run(reg, '--json', 'restore', 'team/app')
    assert code == 0, (out, err)
    assert sorted(r['tag'] for r in doc['restored']) == ['team/app:a',
                                                         'team/app:b']
    assert client.tags('team/app') == {'a': a[-1], 'b': b[-1]}
    for tag in ('a', 'b'):
        assert client.pullable('team/app', tag) is None
    r = client._req('GET', '/v1/repositories/team/app/images')
    assert r.status_code == 200 and set(i['id'] for i in r.json()) >= set(
        base + a + b), r.text
    assert trash_tops(reg) == set()
    time.sleep(WINDOW + 2)          # the records' time passes: no purge
    assert images_on_disk(reg) == before
    events = [e.get('event') for e in audit_events(reg)]
    assert events.count('trashed') == 2 and events.count('restored') == 2

    assert client.delete_repository('team/app').status_code == 200
    deadline = time.time() + WINDOW + 15
    while images_on_disk(reg) and time.time() < deadline:
        time.sleep(0.2)
    assert images_on_disk(reg) == set(), reg.log()[-3000:]
    deleted = [e['image'] for e in audit_events(reg) if 'event' not in e]
    assert sorted(deleted) == sorted(base + a + b)


def test_restore_at_a_time_between_two_retags(make_registry, tmpdir):
    """``latest`` retagged twice; ``restore --at`` a time between the two
    puts back the image of the middle, and the one it replaces goes to
    the trash in turn."""
    reg = undo_registry(make_registry, tmpdir)
    client = Client(reg.url)
    first = client.push('team/app', 'latest', ['r-1'])
    middle = client.push('team/app', 'latest', ['r-2'])
    reg.settle()
    time.sleep(0.3)
    between = time.time()
    time.sleep(0.3)
    last = client.push('team/app', 'latest', ['r-3'])
    reg.settle()
    assert trash_tops(reg) == {first[-1], middle[-1]}
    code, doc, out, err = run(reg, '--json', 'restore', 'team/app:latest',
                              '--at', '%.3f' % between)
    assert code == 0, (out, err)
    assert client.tags('team/app') == {'latest': middle[-1]}
    assert client.pullable('team/app', 'latest') is None
    assert trash_tops(reg) == {first[-1], last[-1]}
    # without --at: as before the last change (the restore itself)
    code, doc, out, err = run(reg, '--json', 'restore', 'team/app:latest')
    assert code == 0, (out, err)
    assert client.tags('team/app') == {'latest': last[-1]}


def test_restore_refuses_once_the_chain_was_purged(make_registry, tmpdir):
    """gc keeps what waits in the trash; ``purge --all`` frees it; then
    ``restore`` refuses and says why, and writes no tag."""
    reg = undo_registry(make_registry, tmpdir, window=600)
    client = Client(reg.url)
    ids = client.push('team/app', 'v1', ['p-1', 'p-2'])
    assert client.delete_tag('team/app', 'v1').status_code == 200
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert code == 0, (out, err)
    assert doc['kept_trash'] == 1 and doc['deleted'] == [], doc
    assert images_on_disk(reg) == set(ids)
    code, doc, out, err = run(reg, '--json', 'purge', '--dry-run')
    assert code == 0 and doc['purged'] == [], (out, err)
    code, doc, out, err = run(reg, '--json', 'purge', '--all')
    assert code == 0, (out, err)
    assert sorted(doc['purged']) == sorted(ids), doc
    assert images_on_disk(reg) == set()
    code, doc, out, err = run(reg, 'restore', 'team/app:v1')
    assert code == 1, (out, err)
    assert 'purged' in out, out
    assert client.tags('team/app') == {}


def test_a_child_pushed_onto_a_trashed_base_rescues_it(make_registry,
                                                       tmpdir):
    reg = undo_registry(make_registry, tmpdir)
    client = Client(reg.url)
    base = client.push('team/base', 'v1', ['c-base'])
    assert client.delete_tag('team/base', 'v1').status_code == 200
    assert trash_tops(reg) == set(base)
    child = client.push('team/app', 'v1', ['c-child'], base[-1])
    assert trash_tops(reg) == set()
    code, doc, out, err = run(reg, '--json', 'purge', '--all')
    assert code == 0, (out, err)
    assert doc['purged'] == [] and doc['rescued'] == base, doc
    assert images_on_disk(reg) == set(base + child)
    assert client.pullable('team/app', 'v1') is None
    assert 'rescued' in [e.get('event') for e in audit_events(reg)]
