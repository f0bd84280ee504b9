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
#: until told to let go on stdin, releases, says so.  Told ``verify`` on
#: stdin meanwhile, it answers ``ok`` or ``lost``.
HOLDER = r'''
import sys
sys.path.insert(0, sys.argv[1])
from registry_refcount import locks
lk = locks.RedisLocks(port=int(sys.argv[2]), lease=float(sys.argv[3]),
                      timeout=5)
with lk.image(sys.argv[4]):
    sys.stdout.write('held\n'); sys.stdout.flush()
    while sys.stdin.readline().strip() == 'verify':
        try:
            lk.verify()
            sys.stdout.write('ok\n')
        except locks.LockLost:
            sys.stdout.write('lost\n')
        sys.stdout.flush()
sys.stdout.write('released\n'); sys.stdout.flush()
'''

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
IMAGE = 'a' * 64


def make_locks(server, **kw):
    kw.setdefault('timeout', 5)
    kw.setdefault('lease', 5)
    return locks.RedisLocks(port=server.port, **kw)


class Holder(object):
    """A process holding one image lock."""

    def __init__(self, server, lease, image=IMAGE):
        self.proc = subprocess.Popen(
            [sys.executable, '-c', HOLDER, ROOT, str(server.port), str(lease),
             image], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.strip() == b'held', line

    def verify(self):
        self.proc.stdin.write(b'verify\n')
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def release(self):
        self.proc.stdin.write(b'go\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.proc.wait()
        return line.strip()

    def kill(self):
        if self.proc.poll() is None:
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
    holder = Holder(redis_server, lease=5)
    try:
        with pytest.raises(locks.LockTimeout):
            with make_locks(redis_server, timeout=0.5).image(IMAGE):
                pass
    finally:
        assert holder.release() == b'released'
    with make_locks(redis_server, timeout=0.5).image(IMAGE):
        pass


def test_crashed_holder_expires(redis_server):
    holder = Holder(redis_server, lease=1)
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
    holder = Holder(redis_server, lease=1)
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
    lk = make_locks(redis_server, lease=1)
    conn = redis_server.client()
    with lk.image(IMAGE):
        deadline = time.time() + 3         # three times the lease
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
        lk = locks.RedisLocks(port=server.port, timeout=1, lease=2)
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
    lk = make_locks(redis_server, lease=0.3)
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


# -- lost locks: verify() --------------------------------------------------

def _lost_logged(caplog):
    return [r for r in caplog.records
            if r.levelname == 'ERROR' and 'lost lock' in r.getMessage()]


def test_verify_passes_while_the_lease_is_renewed(redis_server):
    """Held for three leases: renewals keep it, verify never cries wolf,
    and asks Redis only when the last confirmation is a third of a lease
    old."""
    lk = make_locks(redis_server, lease=0.6)
    with lk.image(IMAGE):
        deadline = time.time() + 1.8
        while time.time() < deadline:
            lk.verify()
            time.sleep(0.02)
        lk.verify(strict=True)


def test_stopped_holder_finds_its_lock_lost_after_sigcont(redis_server):
    """The holder is SIGSTOPped past its lease (its renewer with it),
    another process takes the lock, and on SIGCONT the holder's verify
    says lost - before any further destructive step."""
    holder = Holder(redis_server, lease=1)
    try:
        assert holder.verify() == b'ok'
        holder.stop()
        with make_locks(redis_server, timeout=5).image(IMAGE):
            holder.resume()
            assert holder.verify() == b'lost'
            assert holder.verify() == b'lost'         # it stays lost
            assert holder.release() == b'released'
            # its release left our lock alone
            with pytest.raises(locks.LockTimeout):
                with make_locks(redis_server, timeout=0.2).image(IMAGE):
                    pass
    finally:
        holder.resume()
        holder.kill()


def test_stopped_past_most_of_the_lease_is_lost_even_if_untaken(
        redis_server):
    """Stopped for two thirds of the lease or more, a holder cannot know
    whether its key expired meanwhile (or was lost in a failover): lost,
    even though nobody took the lock and a renewal could still succeed."""
    holder = Holder(redis_server, lease=2)
    try:
        holder.stop()
        time.sleep(1.6)                 # > 2/3 of the lease
        holder.resume()
        assert holder.verify() == b'lost'
    finally:
        holder.resume()
        holder.kill()


def test_a_short_stop_is_not_a_lost_lock(redis_server):
    holder = Holder(redis_server, lease=2)
    try:
        holder.stop()
        time.sleep(0.2)
        holder.resume()
        assert holder.verify() == b'ok'
        assert holder.release() == b'released'
    finally:
        holder.kill()


def test_flushall_while_held_is_a_lost_lock(redis_server, caplog):
    lk = make_locks(redis_server, lease=0.9)
    with lk.image(IMAGE):
        lk.verify()
        redis_server.client().flushall()
        with pytest.raises(locks.LockLost):
            lk.verify(strict=True)              # asks Redis at once
    assert _lost_logged(caplog)
    with lk.tag('ns/repo:v1'):
        redis_server.client().flushall()
        time.sleep(0.9 / 3 + 0.1)               # the renewal finds it
        with pytest.raises(locks.LockLost):
            lk.verify()
    with lk.tag('ns/repo:v1'):                  # and afterwards: normal
        lk.verify()


def test_redis_restart_while_held_is_a_lost_lock(tmpdir, caplog):
    server = RedisServer(str(tmpdir.join('redis'))).start()
    try:
        lk = locks.RedisLocks(port=server.port, timeout=1, lease=1.2)
        with lk.image(IMAGE):
            lk.verify()
            server.stop()
            server.start()                       # empty, same port
            time.sleep(0.5)
            with pytest.raises(locks.LockLost):
                lk.verify()
        with lk.image(IMAGE):
            lk.verify()
        assert _lost_logged(caplog)
    finally:
        server.stop()


def test_redis_down_while_held_is_a_lost_lock(tmpdir):
    server = RedisServer(str(tmpdir.join('redis'))).start()
    try:
        lk = locks.RedisLocks(port=server.port, timeout=1, lease=1.2)
        with lk.image(IMAGE):
            server.stop()
            lk.verify()                  # confirmed a moment ago: ok
            time.sleep(0.5)
            started = time.time()
            with pytest.raises(locks.LockLost):
                lk.verify()
            assert time.time() - started < 1
    finally:
        server.stop()


def test_verify_sees_only_the_calling_threads_locks(redis_server):
    lk = make_locks(redis_server, lease=0.9)
    held, checked = threading.Event(), threading.Event()
    result = []

    def holder():
        with lk.image(IMAGE):
            held.set()
            checked.wait(10)
            try:
                lk.verify(strict=True)
                result.append('ok')
            except locks.LockLost:
                result.append('lost')
    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    redis_server.client().delete(holder_key())
    lk.verify(strict=True)                # this thread holds nothing
    with lk.image('b' * 64):
        lk.verify(strict=True)
    checked.set()
    thread.join(10)
    assert result == ['lost']


def test_identity_names_the_redis_lock_space(redis_server):
    first = make_locks(redis_server).identity()
    assert first.startswith('redis:')
    assert make_locks(redis_server).identity() == first
    other_db = locks.RedisLocks(port=redis_server.port, db=1).identity()
    assert other_db != first
    redis_server.client().flushall()        # a new lock space
    second = make_locks(redis_server).identity()
    assert second != first
    assert make_locks(redis_server).identity() == second


def test_lock_lease_must_be_positive():
    for lease in (0, -1):
        with pytest.raises(ValueError):
            locks.RedisLocks(lease=lease)


#: Under gevent (the registry's workers): the renewer is a greenlet, and
#: keeps the lease while the holder's greenlet works; a flush is found.
GEVENT_HOLDER = r'''
from gevent import monkey
monkey.patch_all()
import sys, time
import gevent
sys.path.insert(0, sys.argv[1])
from registry_refcount import locks
lk = locks.RedisLocks(port=int(sys.argv[2]), lease=0.6, timeout=2)
with lk.image('a' * 64):
    deadline = time.time() + 1.8
    while time.time() < deadline:
        lk.verify()
        gevent.sleep(0.02)
    lk._conn.flushall()
    try:
        lk.verify(strict=True)
        print('ok')
    except locks.LockLost:
        print('lost')
'''


def test_renewal_and_verify_under_gevent(redis_server):
    pytest.importorskip('gevent')
    out = subprocess.check_output([sys.executable, '-c', GEVENT_HOLDER,
                                   ROOT, str(redis_server.port)])
    assert out.strip() == b'lost'
