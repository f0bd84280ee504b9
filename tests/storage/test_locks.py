"""LocalLocks: record locks on one file per kind, plus in-process mutexes.

Exclusion must hold between processes (gunicorn workers), between threads
or greenlets of one process, and between two providers on one folder in
one process; a killed holder must not block anyone."""

from __future__ import absolute_import, unicode_literals

import os
import signal
import threading
import time

import pytest

from registry_refcount import layout
from registry_refcount import locks

ID = 'a' * 64


def test_threads_of_one_process_exclude_each_other(tmpdir):
    provider = locks.LocalLocks(str(tmpdir), timeout=10)
    inside, overlaps = [0], []

    def work():
        for _ in range(50):
            with provider.image(ID):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 200 and max(overlaps) == 1


def test_two_providers_on_one_folder_exclude_each_other(tmpdir):
    a = locks.LocalLocks(str(tmpdir), timeout=0.2)
    b = locks.LocalLocks(str(tmpdir), timeout=0.2)
    with a.tag(layout.TagKey('ns', 'repo', 'v1')):
        with pytest.raises(locks.LockTimeout):
            with b.tag(layout.TagKey('ns', 'repo', 'v1')):
                pass
        with b.image(ID):            # another kind: free
            pass
    with b.tag(layout.TagKey('ns', 'repo', 'v1')):
        pass


def _hold_in_child(lock_dir, ready_path, seconds):
    pid = os.fork()
    if pid == 0:
        try:
            with locks.LocalLocks(lock_dir).image(ID):
                open(ready_path, 'w').close()
                time.sleep(seconds)
        finally:
            os._exit(0)
    deadline = time.time() + 10
    while not os.path.exists(ready_path):
        assert time.time() < deadline, 'the child never took the lock'
        time.sleep(0.01)
    return pid


def test_another_process_is_excluded_until_it_lets_go(tmpdir):
    lock_dir = str(tmpdir.join('locks'))
    provider = locks.LocalLocks(lock_dir, timeout=0.3)
    with provider.image(ID):          # taken here before the fork: the
        pass                          # child must not inherit anything
    pid = _hold_in_child(lock_dir, str(tmpdir.join('ready')), 1.0)
    try:
        with pytest.raises(locks.LockTimeout):
            with provider.image(ID):
                pass
        with provider.image('b' * 64):        # another image: free
            pass
        provider.timeout = 10
        started = time.time()
        with provider.image(ID):
            assert time.time() - started > 0.2
    finally:
        os.waitpid(pid, 0)


def test_a_killed_holder_blocks_nobody(tmpdir):
    lock_dir = str(tmpdir.join('locks'))
    pid = _hold_in_child(lock_dir, str(tmpdir.join('ready')), 60)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    started = time.time()
    with locks.LocalLocks(lock_dir, timeout=5).image(ID):
        assert time.time() - started < 1


def test_released_after_an_exception(tmpdir):
    provider = locks.LocalLocks(str(tmpdir), timeout=0.2)
    with pytest.raises(ValueError):
        with provider.named('gc'):
            raise ValueError('boom')
    with provider.named('gc'):
        pass
