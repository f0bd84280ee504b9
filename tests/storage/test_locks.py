"""LocalLocks: record locks on one file per kind, plus in-process mutexes.

Exclusion must hold between processes (gunicorn workers), between threads
or greenlets of one process, and between two providers on one folder in
one process; a killed holder must not block anyone."""

from __future__ import absolute_import, unicode_literals

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from registry_refcount import layout
from registry_refcount import locks

ID = 'a' * 64
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


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


# -- lost locks: verify() --------------------------------------------------

def test_lock_lost_is_a_lock_timeout():
    """Callers that already leave the work to recovery on LockTimeout do
    the same on LockLost."""
    assert issubclass(locks.LockLost, locks.LockTimeout)


def test_verify_passes_while_the_lock_file_stays(tmpdir):
    provider = locks.LocalLocks(str(tmpdir), timeout=1)
    provider.verify()                      # holding nothing
    with provider.tag(layout.TagKey('ns', 'repo', 'v1')):
        with provider.image(ID):
            provider.verify()
            provider.verify(strict=True)
        provider.verify()
    provider.verify()


def _child(work):
    """Run ``work()`` in a forked child; its exit code is 0 if it
    returned True, 1 if False, 2 if it raised."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if work() else 1
        finally:
            os._exit(code)
    return pid


def _exit_code(pid):
    return os.waitpid(pid, 0)[1] >> 8


def _can_lock(lock_dir, timeout=0.2, name=ID):
    """Whether a fresh process can take ``name``'s image lock now."""
    def work():
        try:
            with locks.LocalLocks(lock_dir, timeout=timeout).image(name):
                return True
        except locks.LockTimeout:
            return False
    return _exit_code(_child(work)) == 0


@pytest.mark.parametrize('how', ['file', 'folder'])
def test_removed_lock_file_is_a_lost_lock(tmpdir, how, caplog):
    """tmpreaper removes the lock file (or rm -rf the folder) while a lock
    is held: the holder's verify() raises, and a process that opens the
    path now locks a new file - which everyone then converges on."""
    lock_dir = str(tmpdir.join('locks'))
    provider = locks.LocalLocks(lock_dir, timeout=0.3)
    with provider.image(ID):
        assert not _can_lock(lock_dir)
        if how == 'file':
            os.unlink(os.path.join(lock_dir, 'image.locks'))
        else:
            shutil.rmtree(lock_dir)
        with pytest.raises(locks.LockLost):
            provider.verify(strict=True)          # at once
        with pytest.raises(locks.LockLost):      # and it stays lost
            provider.verify()
        assert _can_lock(lock_dir)                # the new file
    assert [r for r in caplog.records if r.levelname == 'ERROR' and
            'lost lock' in r.getMessage()]
    provider.verify()                             # released: nothing held
    # this process converges on the new file too
    with provider.image(ID):
        assert not _can_lock(lock_dir)
        provider.verify()
    assert os.path.exists(os.path.join(lock_dir, 'image.locks'))


def test_a_new_holder_in_another_process_gets_the_new_file(tmpdir):
    lock_dir = str(tmpdir.join('locks'))
    path = os.path.join(lock_dir, 'image.locks')
    provider = locks.LocalLocks(lock_dir, timeout=0.3)
    start, ready, go = (str(tmpdir.join(name))
                        for name in ('start', 'ready', 'go'))

    def hold_new_file():
        _wait_for(start)
        other = locks.LocalLocks(lock_dir, timeout=5)
        with other.image(ID):
            open(ready, 'w').close()
            _wait_for(go)
            other.verify()                 # its file is the path's
            return os.stat(path).st_ino == os.fstat(
                locks._process_tables()['files'][path].fd).st_ino
    pid = _child(hold_new_file)            # (forked holding nothing)
    with provider.image(ID):
        os.rename(path, path + '.old')     # replaced under our feet
        open(start, 'w').close()
        _wait_for(ready)
        time.sleep(locks.RECHECK)
        with pytest.raises(locks.LockLost):
            provider.verify()              # found within RECHECK seconds
    with pytest.raises(locks.LockTimeout):  # the child holds the new file
        with provider.image(ID):
            pass
    open(go, 'w').close()
    assert _exit_code(pid) == 0


def _wait_for(path, seconds=10):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        assert time.time() < deadline, 'the child never said %s' % path
        time.sleep(0.01)


def _open_descriptors_of(path):
    ino = os.stat(path).st_ino
    found = 0
    for name in os.listdir('/proc/self/fd'):
        try:
            if os.stat('/proc/self/fd/' + name).st_ino == ino:
                found += 1
        except OSError:
            pass
    return found


def test_old_file_stays_open_while_a_holder_uses_it(tmpdir):
    """Closing any descriptor of a file drops all of the process's record
    locks on it: a replaced file is closed only once its last holder in
    this process let go."""
    lock_dir = str(tmpdir.join('locks'))
    path = os.path.join(lock_dir, 'image.locks')
    keep = str(tmpdir.join('kept'))
    provider = locks.LocalLocks(lock_dir, timeout=1)
    other = 'b' * 64
    held, done = threading.Event(), threading.Event()

    def holder():
        with provider.image(ID):
            held.set()
            done.wait(10)
    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        os.link(path, keep)                # the old file, still reachable
        os.unlink(path)
        time.sleep(locks.RECHECK)
        with provider.image(other):        # retires the old file
            pass
        # the thread's record lock on the old file still holds
        assert _open_descriptors_of(keep) == 1
        assert not _can_lock_file(keep, ID)
    finally:
        done.set()
        thread.join()
    assert _open_descriptors_of(keep) == 0     # closed by its last user
    assert _open_descriptors_of(path) == 1     # the new one stays open


def _can_lock_file(path, name):
    """Whether another process can lock ``name``'s byte of ``path``."""
    import fcntl
    offset = locks._stripe('image', name, 1 << 20)

    def work():
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            return True
        except (IOError, OSError):
            return False
    return _exit_code(_child(work)) == 0


def test_verify_sees_only_the_calling_tasks_locks(tmpdir):
    lock_dir = str(tmpdir.join('locks'))
    provider = locks.LocalLocks(lock_dir, timeout=1)
    held, checked = threading.Event(), threading.Event()
    result = []

    def holder():
        with provider.image(ID):
            held.set()
            checked.wait(10)
            try:
                provider.verify()
                result.append('ok')
            except locks.LockLost:
                result.append('lost')
    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    os.unlink(os.path.join(lock_dir, 'image.locks'))
    provider.verify(strict=True)          # this thread holds nothing
    with provider.tag('ns/repo:v1'):      # nor anything lost
        provider.verify()
    time.sleep(locks.RECHECK)
    checked.set()
    thread.join()
    assert result == ['lost']


def test_a_lock_taken_before_a_fork_is_lost_in_the_child(tmpdir):
    provider = locks.LocalLocks(str(tmpdir), timeout=1)
    with provider.named('gc'):
        def work():
            try:
                provider.verify()
            except locks.LockLost:
                return True
            return False
        assert _exit_code(_child(work)) == 0
        provider.verify()


# -- identity ---------------------------------------------------------------

def test_identity_names_the_lock_space(tmpdir):
    one, two = str(tmpdir.join('one')), str(tmpdir.join('two'))
    first = locks.LocalLocks(one).identity()
    assert first == locks.LocalLocks(one).identity()   # stable
    assert first == locks.LocalLocks(one).identity()
    assert first != locks.LocalLocks(two).identity()   # another folder
    with open('/proc/sys/kernel/random/boot_id') as f:
        assert f.read().strip() in first
    # seen from another process: the same
    child_says = str(tmpdir.join('child'))

    def work():
        with open(child_says, 'w') as f:
            f.write(locks.LocalLocks(one).identity())
        return True
    assert _exit_code(_child(work)) == 0
    with open(child_says) as f:
        assert f.read() == first
    provider = locks.LocalLocks(one)
    shutil.rmtree(one)                  # wiped: a new lock space
    second = provider.identity()
    assert second != first
    assert locks.LocalLocks(one).identity() == second


def test_identity_is_made_once_when_many_ask_at_once(tmpdir):
    lock_dir = str(tmpdir.join('locks'))
    answers = str(tmpdir.join('answers'))
    os.mkdir(answers)

    def work(n):
        def ask():
            found = locks.LocalLocks(lock_dir).identity()
            with open(os.path.join(answers, str(n)), 'w') as f:
                f.write(found)
            return True
        return ask
    pids = [_child(work(n)) for n in range(6)]
    assert [_exit_code(pid) for pid in pids] == [0] * 6
    found = set()
    for name in os.listdir(answers):
        with open(os.path.join(answers, name)) as f:
            found.add(f.read())
    assert len(found) == 1
    assert sorted(os.listdir(lock_dir)) == ['identity']


def test_monotonic_clock_advances():
    first = locks.monotonic()
    time.sleep(0.05)
    second = locks.monotonic()
    assert 0.04 < second - first < 1


#: Under gevent (the registry's workers), as a process of its own: a
#: greenlet whose lock file was removed finds its lock lost; another
#: greenlet, holding another lock, does not.
GEVENT_TASKS = r'''
from gevent import monkey
monkey.patch_all()
import os, sys
import gevent
sys.path.insert(0, sys.argv[1])
from registry_refcount import locks
provider = locks.LocalLocks(sys.argv[2], timeout=2)
results = {}

def first():
    with provider.image('a' * 64):
        gevent.sleep(0.1)
        try:
            provider.verify()
            results['first'] = 'ok'
        except locks.LockLost:
            results['first'] = 'lost'

def second():
    with provider.tag('ns/repo:v1'):
        os.unlink(os.path.join(sys.argv[2], 'image.locks'))
        gevent.sleep(0.2)
        provider.verify()
        results['second'] = 'ok'

gevent.joinall([gevent.spawn(first), gevent.spawn(second)])
print('%(first)s %(second)s' % results)
'''


def test_verify_is_per_greenlet_under_gevent(tmpdir):
    pytest.importorskip('gevent')
    out = subprocess.check_output([sys.executable, '-c', GEVENT_TASKS,
                                   ROOT, str(tmpdir.join('locks'))])
    assert out.split() == [b'lost', b'ok']
