"""Issue 20 on local storage: locks that stop excluding, and recovery or
the CLI run while the registry serves.

* One host, three workers, the default lock folder (under the storage):
  its ``*.locks`` files, and now and then the whole folder, are removed
  again and again under a mixed load.  Every acknowledged tag keeps its
  image (S1); after recovery, R1 and L1.
* The CLI run with another ``lock_dir`` than the workers refuses (exit 2,
  saying the locks differ); ``--ignore-lockspace`` runs it; the same
  folder through a symbolic link is the same lock space.
* ``recover --intent-timeout 0`` is refused; ``recover --intent-timeout
  60`` and the Python API's ``recover(ctx, intent_timeout=0)`` looping
  while clients tag freshly pushed images lose no acknowledged tag and
  refuse no tag PUT for an image that exists.
"""

from __future__ import absolute_import

import glob
import os
import shutil
import threading

import pytest

from registry_refcount import protocols
from registry_refcount import recovery
from registry_refcount import settings as settings_mod

from ..s3.faults import (STRESS, Model, cli_package_dir,
                         cli_runs_within_a_round, lost_tags,
                         model_workload, run_cli, wait_for)
from .conftest import assert_invariants, refcount_settings
from .harness import Client, make_config

CLIENTS = 4
ROUNDS = 60 if STRESS else 20


def local_env(reg):
    return {'STORAGE_PATH': reg.storage}


def default_lock_dir(reg):
    return os.path.join(reg.storage, settings_mod.LOCKS_UNDER_STORAGE)


def local_ctx(reg):
    settings = settings_mod.parse(dict(reg.refcount))
    store = reg.store()
    return protocols.context(store, settings_mod.make_locks(
        settings, reg.storage), by='test')


def check_after(reg, model, leaks_to_gc=False):
    """S1 as the clients saw it; recovery once the requests stopped; R1;
    L1 (unreachable only what a client was refused).  ``leaks_to_gc``: an
    unreachable image may also be one the known leak of
    test_a_lock_lost_between_the_last_marker_and_the_tombstone left (or
    its parent, whose child marker it holds): gc (grace 0, requests
    stopped) must take them all."""
    assert model.violations == [], model.violations
    assert lost_tags(model, reg.url) == []                    # S1
    reg.settle(30)
    recovery.recover(local_ctx(reg), intent_timeout=0)
    rep = assert_invariants(reg, Client(reg.url))              # S1, R1
    assert rep.intents == []
    leaked = set(rep.unreachable) - model.untagged
    if leaks_to_gc and leaked:
        print('L1 after recovery: %d unreferenced image(s) left: %s'
              % (len(leaked), sorted(leaked)))
        code, doc, err = run_cli(reg.config, 'local', local_env(reg),
                                 'gc', '--grace', '0')
        assert code == 0, (doc, err)
        rep = assert_invariants(reg, Client(reg.url))
        leaked = set(rep.unreachable)
    assert leaked == set(), leaked                            # L1
    return rep


def test_lock_files_removed_under_load(make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, lock_dir=None, recovery_interval=1), workers=3).start()
    folder = default_lock_dir(reg)
    base = Client(reg.url).push('ns/base', 'keep', ['lf-base'])[-1]
    wait_for(lambda: glob.glob(os.path.join(folder, '*.locks')), 30,
             'the lock files')
    model = Model()
    model.ack('ns/base', 'keep', base)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (model_workload(
        [[reg.url]] * CLIENTS, model, base, ROUNDS, seed=11), done.set()))
    worker.daemon = True
    worker.start()
    removed = {'files': 0, 'folders': 0}
    n = 0
    try:
        while not done.wait(0.1):
            n += 1
            if n % 4 == 2:
                if os.path.isdir(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed['folders'] += 1
                continue
            for path in glob.glob(os.path.join(folder, '*.locks')):
                try:
                    os.remove(path)
                    removed['files'] += 1
                except OSError:
                    pass
    finally:
        worker.join(600)
    print('lock files removed: %s; %d operations, %d acknowledged, '
          'errors %s' % (removed, model.ops, model.acked, model.errors[:3]))
    assert removed['files'] >= 5 and removed['folders'] >= 1, removed
    assert model.acked > CLIENTS * ROUNDS // 2, (model.acked, model.errors)
    # the workers noticed (their held locks were lost, new ones taken on
    # the new files)
    assert 'was removed or replaced' in reg.log()
    check_after(reg, model, leaks_to_gc=True)


def test_cli_runs_after_the_lock_folder_was_wiped(make_registry, tmpdir):
    # one worker, initialised (its lock space recorded) before the wipe; a
    # worker started after it would record the new one
    reg = make_registry(refcount=refcount_settings(
        tmpdir, lock_dir=None), workers=1).start()
    client = Client(reg.url)
    client.push('ns/app', 'v', ['lw-1'])
    reg.settle()
    shutil.rmtree(default_lock_dir(reg))
    client.push('ns/app', 'w', ['lw-2'])        # the workers lock on
    # refused for good while the workers recorded their lock space at
    # start only; now within a recovery round
    cli_runs_within_a_round(lambda: run_cli(reg.config, 'local',
                                            local_env(reg), 'verify'))


def test_cli_with_another_lock_dir_refuses(make_registry, tmpdir):
    settings = refcount_settings(tmpdir, lock_dir=None)
    reg = make_registry(refcount=settings).start()
    client = Client(reg.url)
    client.push('ns/app', 'v', ['ld-1'])
    reg.settle()
    assert cli_package_dir(reg.config, 'local', local_env(reg)) == \
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), 'the CLI runs another package'
    other = make_config(str(tmpdir.join('other-locks.yml')), dict(
        settings, lock_dir=str(tmpdir.join('elsewhere'))))
    for args in (['gc'], ['recover'], ['verify', '--repair']):
        code, doc, err = run_cli(other, 'local', local_env(reg), *args)
        assert code == 2, (args, code, doc, err)
        assert 'refusing to run' in err and 'would not exclude' in err, err
        code, doc, err = run_cli(other, 'local', local_env(reg),
                                 '--ignore-lockspace', *args)
        assert code == 0, (args, code, doc, err)
    # the registry's own folder through a symbolic link: the same locks
    link = str(tmpdir.join('same-locks'))
    os.symlink(default_lock_dir(reg), link)
    same = make_config(str(tmpdir.join('same-locks.yml')), dict(
        settings, lock_dir=link))
    code, doc, err = run_cli(same, 'local', local_env(reg), 'verify')
    assert code == 0, (code, doc, err)
    assert client.pullable('ns/app', 'v') is None


def test_recover_with_no_timeout_while_serving(make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, lock_dir=None), workers=3).start()
    code, doc, err = run_cli(reg.config, 'local', local_env(reg),
                             'recover', '--intent-timeout', '0')
    assert code == 2 and 'at least 60' in err, (code, doc, err)
    code, doc, err = run_cli(reg.config, 'local', local_env(reg),
                             'recover', '--intent-timeout', '59')
    assert code == 2, (code, doc, err)
    bad = make_config(str(tmpdir.join('zero.yml')), dict(
        reg.refcount, intent_timeout=0))
    code, doc, err = run_cli(bad, 'local', local_env(reg), 'recover')
    assert code == 2 and 'intent_timeout' in err, (code, doc, err)

    model = Model()
    done = threading.Event()
    rounds = {'cli': 0, 'api': 0}

    def cli_loop():
        while not done.is_set():
            code, doc, err = run_cli(reg.config, 'local', local_env(reg),
                                     'recover', '--intent-timeout', '60')
            if code != 0:
                model.errors.append('recover: %s %s' % (code, err[-200:]))
            rounds['cli'] += 1

    def api_loop():
        ctx = local_ctx(reg)
        while not done.is_set():
            try:
                recovery.recover(ctx, intent_timeout=0)
            except Exception as e:
                model.errors.append('recover: %r' % e)
            rounds['api'] += 1
    loops = [threading.Thread(target=cli_loop),
             threading.Thread(target=api_loop)]
    for t in loops:
        t.daemon = True
        t.start()
    try:
        model_workload([[reg.url]] * CLIENTS, model, None, ROUNDS * 2,
                       seed=13, fresh_only=True)
    finally:
        done.set()
        for t in loops:
            t.join(60)
    print('recover while serving: %s rounds, %d operations, %d '
          'acknowledged, errors %s' % (rounds, model.ops, model.acked,
                                       model.errors[:3]))
    assert rounds['cli'] >= 2 and rounds['api'] > 5, rounds
    assert [e for e in model.errors if e.startswith('recover')] == []
    check_after(reg, model)


def test_a_lock_lost_between_the_last_marker_and_the_tombstone(
        make_registry, tmpdir):
    """Minimised from test_lock_files_removed_under_load: a tag write of X
    is answered and reconciled; the tag moves to Y through another
    registry process; the first write releases its pending marker on X
    (X's last) and stops before X's tombstone; its image lock file is
    removed meanwhile; it resumes.  The deletion stopped on the lost
    lock and recovery, finding the marker gone, never came back to X (L1
    until gc); a deletion now goes on whatever the locks."""
    from ..s3.faults import Stall, stopped_workers
    import time
    settings = refcount_settings(tmpdir, lock_dir=None,
                                 recovery_interval=1)
    one = make_registry(refcount=settings, workers=1)
    one.start(env={'REGISTRY_REFCOUNT_PAUSE_AT':
                   'finish_before_release,before_tombstone'})
    two = make_registry(refcount=settings, workers=1,
                        storage=one.storage).start()
    c1, c2 = Client(one.url), Client(two.url)
    x = c2.push_chain(['ll-x'])[-1]
    y = c2.push_chain(['ll-y'])[-1]
    stall = Stall([one], hold=None)
    try:
        c1.tag('ns/app', 'v', x)           # answered; stops before release
        wait_for(lambda: stopped_workers(one), 30, 'finish_before_release')
        c2.tag('ns/app', 'v', y)
        wait_for(lambda: glob.glob(two.path('images', y, '_references',
                                            'tag-*')), 30, 'the retag')
        stall.resume_all()                 # ... and stops before tombstone
        wait_for(lambda: 'pause point before_tombstone' in one.log(), 30,
                 'before_tombstone')
        wait_for(lambda: stopped_workers(one), 30, 'the second stop')
        for path in glob.glob(os.path.join(default_lock_dir(one),
                                           'image.locks')):
            os.remove(path)
        time.sleep(0.5)
        stall.resume_all()
    finally:
        stall.finish()
    one.settle(30)
    recovery.recover(local_ctx(one), intent_timeout=0)
    rep = assert_invariants(one, c2)                        # S1, R1
    assert c2.pullable('ns/app', 'v') is None
    assert rep.unreachable == [], rep.unreachable           # L1
    assert x not in one.images()
