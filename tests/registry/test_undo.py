"""Issue 24: the undo window.  A tag delete, a retag or a repository
delete puts what it frees into the trash, whole; ``restore`` puts the
tags back, pullable; the purge frees it once the window has passed.
Through the real registry and the real command."""

from __future__ import absolute_import

import json
import os
import subprocess
import time

import pytest

from registry_refcount import crash

from .conftest import assert_invariants, refcount_settings
from .harness import Client
from .test_cli import CLI, images_on_disk, run

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


# -- kill -9 at the points the undo window adds -------------------------------

#: Each point the window adds, and what reaches it.
UNDO_SCENARIOS = [
    ('before_trash_record', 'delete'),
    ('restore_after_pending', 'restore'),
    ('restore_before_finish', 'restore'),
]


def test_a_worker_killed_before_the_trash_record_keeps_the_image_whole(
        make_registry, tmpdir):
    """The tag's marker is off, the record not written: the image stays
    whole.  Recovery finishes the tag delete's intent, and the hold the
    crash left is retired through the cascade, which puts the image into
    the trash now (a marker removed without a hold - a pending one - would
    leave it to gc as an orphan); purge and gc then free it."""
    reg = undo_registry(make_registry, tmpdir)
    client = Client(reg.url)
    base = client.push('team/keep', 'v1', ['k-base'])
    ids = client.push('team/app', 'v1', ['k-app'], base[-1])
    reg.restart(env={crash.ENV: 'before_trash_record'})
    assert client.delete_tag('team/app', 'v1').status_code == 200
    deadline = time.time() + 10
    while 'crash point before_trash_record' not in reg.log():
        assert time.time() < deadline, reg.log()[-2000:]
        time.sleep(0.05)
    reg.restart()
    reg.wait_recovered()
    assert images_on_disk(reg) == set(base + ids)
    assert_invariants(reg, client)
    assert trash_tops(reg) == set(ids)
    for command in (['purge', '--all'], ['gc', '--grace', '0']):
        code, doc, out, err = run(reg, '--json', *command)
        assert code == 0, (out, err)
    assert images_on_disk(reg) == set(base)
    assert client.pullable('team/keep', 'v1') is None


@pytest.mark.parametrize('point', ['restore_after_pending',
                                   'restore_before_finish'])
def test_a_restore_killed_midway_is_finished_by_recovery(make_registry,
                                                         tmpdir, point):
    """The command dies (``os._exit``, as kill -9) with its intent and
    pending marker written: recovery finishes its intent at once (its
    process is gone).  Before the tag file, the image goes back to the
    trash and a second restore works; after it, the tag pulls.  (A window
    of a minute: nothing here waits for it, and under load the steps took
    longer than the suite's 4 s, the history then gone with it.)"""
    reg = undo_registry(make_registry, tmpdir, window=60)
    client = Client(reg.url)
    ids = client.push('team/app', 'v1', ['k-r1', 'k-r2'])
    assert client.delete_tag('team/app', 'v1').status_code == 200
    assert trash_tops(reg) == {ids[-1]}
    env = dict(os.environ, STORAGE_PATH=reg.storage, **{crash.ENV: point,
               'DOCKER_REGISTRY_CONFIG': reg.config,
               'SETTINGS_FLAVOR': 'local'})
    p = subprocess.Popen([CLI, 'restore', 'team/app:v1'], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = p.communicate()[1].decode('utf-8')
    assert p.returncode == 137 and 'crash point %s' % point in err, err
    # (the workers' recovery may finish it first: its owner is gone)
    code, doc, out, err = run(reg, '--json', 'recover')
    assert code == 0 and doc['intents_waiting'] == 0, out
    assert not os.listdir(reg.path('extensions', 'refcount', 'intents'))
    assert images_on_disk(reg) == set(ids)
    if point == 'restore_after_pending':
        assert client.tags('team/app') == {}
        assert trash_tops(reg) == {ids[-1]}
        code, doc, out, err = run(reg, '--json', 'restore', 'team/app:v1')
        assert code == 0, (out, err)
    assert client.tags('team/app') == {'v1': ids[-1]}
    assert client.pullable('team/app', 'v1') is None
    code, doc, out, err = run(reg, '--json', 'purge', '--all')
    assert code == 0 and doc['purged'] == [], (out, err)
    assert images_on_disk(reg) == set(ids)
    assert_invariants(reg, client)


def _registry_side(error):
    """A failure the registry alone has under this load, as in
    test_concurrency's ``swallow``: a 500 of its own views (a push into a
    repository its DELETE is removing), or a keep-alive connection a
    worker closed when it ended after ``--max-requests 100``."""
    import requests
    return isinstance(error, requests.ConnectionError) or (
        isinstance(error, AssertionError) and error.args and
        isinstance(error.args[0], tuple) and 500 in error.args[0])


def test_concurrent_deletes_restores_and_purges(make_registry, tmpdir):
    """Clients push, retag and delete tags and repositories while the
    command restores and purges (everything, due or not) in a loop: every
    tag the registry lists pulls, and at the end purge and gc leave only
    what the tags reach (S1, R1, L1)."""
    import random
    import threading
    reg = undo_registry(make_registry, tmpdir, recovery_interval=1)
    repos = ['team/a', 'team/b']
    stop, errors, runs = threading.Event(), [], []
    Client(reg.url).push('team/base', 'keep', ['cc-base'])

    def client_loop(n):
        rnd, client = random.Random(n), Client(reg.url)
        try:
            for i in range(300):       # until the command's rounds end
                if stop.is_set():
                    break
                repo = rnd.choice(repos)
                op = rnd.choice(['push', 'push', 'retag', 'delete',
                                 'delrepo'])
                if op == 'push':
                    client.push(repo, rnd.choice(['v1', 'latest']),
                                ['cc-%d-%d' % (n, i)])
                elif op == 'retag':
                    tags = client.tags(repo)
                    if tags:
                        client.put_tag(repo, rnd.choice(['v1', 'latest']),
                                       rnd.choice(sorted(tags.values())))
                elif op == 'delete':
                    client.delete_tag(repo, rnd.choice(['v1', 'latest']))
                else:
                    client.delete_repository(repo)
        except Exception as e:
            if not _registry_side(e):
                errors.append('client %d: %r' % (n, e))

    def command_loop():
        env = dict(os.environ, STORAGE_PATH=reg.storage,
                   DOCKER_REGISTRY_CONFIG=reg.config, SETTINGS_FLAVOR='local')
        for repo in repos * 2:
            for args in (['restore', repo], ['purge', '--all']):
                runs.append(subprocess.call([CLI, '--quiet'] + args,
                                            env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE))
        stop.set()
    threads = [threading.Thread(target=client_loop, args=(n,))
               for n in range(3)]
    command = threading.Thread(target=command_loop)
    command.start()
    for t in threads:
        t.start()
    command.join(300)
    for t in threads:
        t.join(300)
    assert errors == [], (errors, reg.log()[-6000:])
    assert len(runs) == 8 and set(runs) <= {0, 1}, runs   # 1: refused
    reg.wait_recovered()
    rep = assert_invariants(reg, Client(reg.url))          # S1, R1
    for command in (['recover'], ['purge', '--all'], ['gc', '--grace', '0']):
        code, doc, out, err = run(reg, '--json', *command)
        assert code == 0, (command, out, err)
    assert images_on_disk(reg) == rep.reachable             # L1
    assert_invariants(reg, Client(reg.url))
