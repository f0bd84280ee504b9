"""``RedisLocks`` against a real redis-server: mutual exclusion, expiry of a
crashed holder, safe release, renewal for long holders, bounded waits.

Holders that crash or stall are real processes (killed with SIGKILL,
paused with SIGSTOP), not simulations."""

from __future__ import absolute_import

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from registry_refcount import locks

from ..services import RedisServer, free_port

PREFIX = 'registry-refcount:lock:'

#: A lock holder in a process of its own: takes the lock, says so, holds it
#: until told to let go on stdin, releases, says so.
HOLDER = r'''
import sys
sys.path.insert(0, sys.argv[1])
from registry_refcount import locks
lk = locks.RedisLocks(port=int(sys.argv[2]), ttl=float(sys.argv[3]),
                      timeout=5)
with lk.image(sys.argv[4]):
    sys.stdout.write('held\n'); sys.stdout.flush()
    sys.stdin.readline()
sys.stdout.write('released\n'); sys.stdout.flush()
'''

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
IMAGE = 'a' * 64


def make_locks(server, **kw):
    kw.setdefault('timeout', 5)
    kw.setdefault('ttl', 5)
    return locks.RedisLocks(port=server.port, **kw)


class Holder(object):
    """A process holding one image lock."""

    def __init__(self, server, ttl, image=IMAGE):
        self.proc = subprocess.Popen(
            [sys.executable, '-c', HOLDER, ROOT, str(server.port), str(ttl),
             image], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.strip() == b'held', line

    def release(self):
        self.proc.stdin.write(b'go\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.proc.wait()
        return line.strip()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def holder_key(image=IMAGE):
    return PREFIX + 'image:' + image


def test_mutual_exclusion_between_threads_and_tags(redis_server):
    lk = make_locks(redis_server)
    state = {'inside': 0, 'most': 0, 'counter': 0}
    errors = []

    def work(n):
        try:
            for _ in range(15):
                with lk.image(IMAGE):
                    state['inside'] += 1
                    state['most'] = max(state['most'], state['inside'])
                    value = state['counter']
                    time.sleep(0.001)
                    state['counter'] = value + 1
                    state['inside'] -= 1
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert state['most'] == 1
    assert state['counter'] == 6 * 15
    # distinct names do not exclude each other, and nothing is left behind
    with lk.image(IMAGE):
        with lk.tag('ns/repo:latest'):
            with make_locks(redis_server).image('b' * 64):
                pass
    assert redis_server.client().keys(PREFIX + '*') == []


def test_mutual_exclusion_between_processes(redis_server):
    holder = Holder(redis_server, ttl=5)
    try:
        with pytest.raises(locks.LockTimeout):
            with make_locks(redis_server, timeout=0.5).image(IMAGE):
                pass
    finally:
        assert holder.release() == b'released'
    with make_locks(redis_server, timeout=0.5).image(IMAGE):
        pass


def test_crashed_holder_expires(redis_server):
    holder = Holder(redis_server, ttl=1)
    holder.kill()                       # SIGKILL: no release, no renewal
    assert redis_server.client().exists(holder_key())
    started = time.time()
    with make_locks(redis_server, timeout=5).image(IMAGE):
        waited = time.time() - started
    assert 0.1 < waited < 2.5, waited


def test_stalled_holder_does_not_release_the_next_holders_lock(redis_server):
    """A holder paused past its lock's expiry (a long GC pause, a frozen
    VM) loses the lock to another; when it wakes up and releases, the other
    holder's lock stays."""
    holder = Holder(redis_server, ttl=1)
    conn = redis_server.client()
    os.kill(holder.proc.pid, signal.SIGSTOP)
    try:
        with make_locks(redis_server, timeout=5).image(IMAGE):
            mine = conn.get(holder_key())
            os.kill(holder.proc.pid, signal.SIGCONT)
            assert holder.release() == b'released'
            # the stalled holder's release and renewal left our lock alone
            assert conn.get(holder_key()) == mine
            assert conn.pttl(holder_key()) > 0
            with pytest.raises(locks.LockTimeout):
                with make_locks(redis_server, timeout=0.3).image(IMAGE):
                    pass
    finally:
        if holder.proc.poll() is None:
            os.kill(holder.proc.pid, signal.SIGCONT)
            holder.kill()
    assert conn.get(holder_key()) is None


def test_long_holder_keeps_its_lock_by_renewal(redis_server):
    lk = make_locks(redis_server, ttl=1)
    conn = redis_server.client()
    with lk.image(IMAGE):
        deadline = time.time() + 3         # three times the ttl
        while time.time() < deadline:
            assert 0 < conn.pttl(holder_key()) <= 1000
            with pytest.raises(locks.LockTimeout):
                with make_locks(redis_server, timeout=0.1).image(IMAGE):
                    pass
    assert conn.get(holder_key()) is None


def test_wait_is_bounded_when_busy(redis_server):
    lk = make_locks(redis_server, timeout=0.5)
    with make_locks(redis_server).image(IMAGE):
        started = time.time()
        with pytest.raises(locks.LockTimeout):
            with lk.image(IMAGE):
                pass
        assert 0.5 <= time.time() - started < 3


def test_unreachable_redis_is_a_timeout_not_a_hang(tmpdir):
    # nothing listens there
    lk = locks.RedisLocks(port=free_port(), timeout=30)
    started = time.time()
    with pytest.raises(locks.LockTimeout):
        with lk.image(IMAGE):
            pass
    assert time.time() - started < 2
    # a server that stopped answering (SIGSTOP): bounded by the socket
    # timeout, not by the lock timeout
    server = RedisServer(str(tmpdir.join('redis'))).start()
    try:
        lk = locks.RedisLocks(port=server.port, timeout=30,
                              socket_timeout=0.5)
        os.kill(server.proc.pid, signal.SIGSTOP)
        started = time.time()
        with pytest.raises(locks.LockTimeout):
            with lk.image(IMAGE):
                pass
        assert time.time() - started < 3
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def test_redis_restart_between_locks(tmpdir):
    """Locks work again once Redis is back (same port, empty)."""
    server = RedisServer(str(tmpdir.join('redis'))).start()
    try:
        lk = locks.RedisLocks(port=server.port, timeout=1, ttl=2)
        with lk.image(IMAGE):
            pass
        server.stop()
        with pytest.raises(locks.LockTimeout):
            with lk.image(IMAGE):
                pass
        server.start()
        with lk.image(IMAGE):
            with lk.tag('ns/repo:v1'):
                pass
    finally:
        server.stop()


def test_lost_lock_is_logged_once_and_release_is_quiet(redis_server,
                                                       caplog):
    """A holder whose key was taken over logs that it lost the lock; a
    normal release logs nothing."""
    lk = make_locks(redis_server, ttl=0.3)
    conn = redis_server.client()
    with lk.image(IMAGE):
        time.sleep(0.05)
    time.sleep(0.3)
    assert not [r for r in caplog.records if 'lost lock' in r.getMessage()]
    with lk.image(IMAGE):
        conn.set(holder_key(), 'someone-else')    # as if expired and taken
        time.sleep(1)
    assert conn.get(holder_key()) == b'someone-else'
    lost = [r for r in caplog.records if 'lost lock' in r.getMessage()]
    assert len(lost) == 1
