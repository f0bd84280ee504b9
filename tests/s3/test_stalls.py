"""Stalls on the real registry: a worker SIGSTOPped past its Redis lease.

Two hosts (two gunicorn masters) on one moto bucket and one redis-server,
with a lock lease of :data:`LEASE` seconds.  A stopped worker's lease runs
out, so the other host takes the same lock while the stopped one still
thinks it holds it: the storage handshake, not the lock, must keep every
image an acknowledged tag names (docs/design.rst, *the fault model*).

* :func:`test_stall_at_point` - host A runs with
  ``REGISTRY_REFCOUNT_PAUSE_AT=<point>`` and stops itself at the point
  inside an operation the test drives there (a retag, a tag delete, a child
  push); the test waits past the lease while host B does the conflicting
  operations (retags of the same tag back and forth, children pushed onto
  the base A is deleting, deletes), then continues A.
* :func:`test_random_stalls_under_load` - every worker of host A stopped
  and continued at seeded random moments, some past the lease, under a
  mixed load through both hosts.

Afterwards, each checks S1 on every acknowledged tag (a model of what the
clients were told: :class:`.workload.History`), then runs recovery once
(as :func:`.test_several_hosts.settle`, with ``intent_timeout=0``) and
asserts R1 (verify is consistent) and L1 (no unreachable image left),
then runs one gc (grace 0) and asserts them again.
"""

from __future__ import absolute_import, print_function

import errno
import os
import random
import signal
import threading
import time

import pytest

from registry_refcount import crash
from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import sweep

from ..registry.conftest import refcount_settings
from ..registry.harness import image_id
from .test_several_hosts import settle
from .workload import History, RecordingClient, timed_workload

STRESS = os.environ.get('REFCOUNT_STRESS', '') not in ('', '0')
#: The Redis lease (``lock_lease``), and how long a stall lasts.
LEASE = 2.0
HOLD = LEASE * 1.5
#: ``lock_timeout``: a few leases, so that host B gets the lock a stalled
#: holder lost, and does not give up first.
LOCK_TIMEOUT = 6
#: Seconds of mixed load with random stalls.
LOAD_SECONDS = 120 if STRESS else 20
SEED = int(os.environ.get('REFCOUNT_SEED', '7'))

#: What the test process saw, summed over the tests (printed under -s).
TOTALS = {'stalls': 0, 'past_lease': 0, 'operations': 0}


def hosts(make_registry, tmpdir, redis_server, pause_at=None):
    """Host A (with ``pause_at`` armed) and host B, two workers each, on
    this test's bucket and the session's Redis."""
    settings = refcount_settings(
        tmpdir, lock_backend='redis', redis=redis_server.settings(),
        intent_timeout=60, lock_lease=LEASE, lock_timeout=LOCK_TIMEOUT)
    a, b = [make_registry(refcount=settings, workers=2) for _ in range(2)]
    a.start(env={crash.PAUSE_ENV: pause_at} if pause_at else None,
            wait=False)
    b.start(wait=False)
    a.wait_ready()
    b.wait_ready()
    a.siblings = b.siblings = [a, b]
    return a, b


def state(pid):
    """The process's state letter (``T``: stopped), or None if gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except (IOError, OSError, IndexError):
        return None


def wait_for(what, timeout, message, interval=0.05):
    deadline = time.time() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError('%s (after %ss)' % (message, timeout))
        time.sleep(interval)


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise


class Pauses(object):
    """Host A's processes that stopped themselves at a pause point (from
    its log).  The first is the test's: it continues it.  Any later one
    (another worker reaching the point in its turn) is continued by a
    watcher thread :data:`HOLD` seconds after it stopped - one more stall
    past the lease."""

    def __init__(self, reg):
        self.reg = reg
        self.seen = []            # [point, pid, when seen, continued]
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._watch)
        self.thread.daemon = True
        self.thread.start()

    def _scan(self):
        with self.lock:
            for n, (point, pid) in enumerate(self.reg.pauses()):
                if n >= len(self.seen):
                    self.seen.append([point, pid, time.time(), False])
            return [list(s) for s in self.seen]

    def _watch(self):
        while not self.done.is_set():
            for n, (point, pid, when, cont) in enumerate(self._scan()):
                if n > 0 and not cont and time.time() - when >= HOLD:
                    self.resume(n)
            self.done.wait(0.05)

    def first(self, timeout=60):
        """``(point, pid)`` of the first pause, once it is stopped."""
        wait_for(lambda: self._scan(), timeout,
                 'host A never reached its pause point:\n' +
                 self.reg.log()[-3000:])
        point, pid = self.seen[0][:2]
        wait_for(lambda: state(pid) == 'T', 10,
                 'pid %d logged its pause but did not stop' % pid)
        return point, pid

    def resume(self, n):
        """Continue the ``n``-th pause (once it really is stopped: the
        line is logged just before the SIGSTOP)."""
        pid = self.seen[n][1]
        deadline = time.time() + 5
        while state(pid) not in ('T', None) and time.time() < deadline:
            time.sleep(0.01)
        signal_pid(pid, signal.SIGCONT)
        with self.lock:
            self.seen[n][3] = True

    def settled(self):
        """Every pause so far continued (and none stopped now)."""
        return all(s[3] for s in self._scan())

    def close(self):
        self.done.set()
        self.thread.join(5)
        for s in self.seen:
            signal_pid(s[1], signal.SIGCONT)


def outstanding(store, but=()):
    """Intents and deletions in flight whose owner's pid is not in
    ``but``."""
    found = []
    for folder in (layout.INTENTS, layout.JOURNAL):
        for name in records.listing(store, folder):
            if layout.is_scratch(name):
                continue
            try:
                doc = records.read(store, '%s/%s' % (folder, name)) or {}
            except records.Unreadable:
                doc = {}
            if (doc.get('owner') or {}).get('pid') not in but:
                found.append('%s/%s' % (folder, name))
    return found


def problems_now(reg, client, half_pushes=()):
    """S1, R1 and L1 on the bucket as it is, as a list of problems.  (A
    child marker whose child's json never came is R1's one exception by
    design, design.rst: a push a stall made its client give up on; it
    waits for the push to come again, or for verify --repair once older
    than the intent timeout.)"""
    rep = invariants.check(reg.store(), jobs=4)
    problems = []
    if rep.s1:
        problems.append('S1 %s' % rep.s1)
    r1 = [d for d in rep.r1 if not d.get('dangling')]
    if r1:
        problems.append('R1 %s' % r1)
    unreachable = [i for i in rep.unreachable if i not in half_pushes]
    if unreachable:                                        # L1
        problems.append('L1 unreachable %s' % unreachable)
    if rep.intents or rep.journal or rep.unreadable:
        problems.append('left %s' % rep.as_dict())
    for key in rep.tags:
        repo = '%s/%s' % (key.namespace, key.repository)
        problem = client.pullable(repo, key.tag)
        if problem:
            problems.append('S1 %s not pullable: %s' % (key, problem))
    return problems


def context(redis_server, reg):
    return protocols.context(reg.store(), locks.RedisLocks(
        port=redis_server.port, timeout=30), by='test')


def recover_then_gc(a, redis_server, client):
    """Requests have stopped: let the hosts finish their work, run
    recovery once (``intent_timeout=0``, as the CLI's ``recover``), note
    what R1 and L1 say then, run one gc (grace 0) and return both lists
    of problems: ``(after recovery, after gc)``.

    Recovery alone leaves nothing since the intents note the images their
    reconciles touch (design.rst, "Notes"): the tests assert R1 and L1
    both after recovery and after the gc."""
    assert a.settle(40), 'work still in flight:\n' + a.log()[-3000:]
    report = settle(a, redis_server)
    assert report['errors'] == [] and report['unreadable'] == [], report
    after_recovery = problems_now(a, client)
    done = sweep.sweep(context(redis_server, a), 0, jobs=4)
    assert done['errors'] == [], done
    # design.rst, *Half pushes*, a known L1 gap of the registry's own: a
    # worker that gunicorn recycled (or that died) between its write of an
    # image's json and of its ancestry leaves a push that never finished,
    # which gc keeps as damaged (nothing is deleted on a damaged record)
    halves = [d['image'] for d in done['damaged']
              if layout.IN_PROGRESS in d['problem']]
    if halves:
        print('half pushes kept by gc (a worker recycled mid-push): %s'
              % halves)
    return after_recovery, problems_now(a, client, halves)


def describe(a, history):
    """What a failure report needs: the logs, every tag operation, and
    each image's markers."""
    store = a.store()
    lines = ['logs: %s' % ' '.join(r.log_path for r in a.siblings)]
    lines += ['  %r' % op for op in sorted(history.ops,
                                           key=lambda o: o.start)]
    names = dict((image_id(n), n) for n in NAMES)
    for image in sorted(records.listing(store, 'images')):
        refs = sorted(records.listing(store, layout.references_dir(image)))
        files = sorted(records.listing(store, layout.image_dir(image)))
        lines.append('  image %s (%s): %s; markers %s' % (
            image[:12], names.get(image, '?'), files, refs))
    return '\n'.join(lines)


# -- the operations that reach each point, and the ones that conflict --------

ROOT = image_id('root')
#: Image names the scenarios use (for the failure report).
NAMES = ['root', 'X', 'Y', 'Z', 'P', 'C', 'CA'] + [
    '%s-%d' % (k, n) for k in ('K', 'KB') for n in range(200)]


def chain(*names):
    """A chain of image names on the root, as push_tolerant takes it."""
    return [(names[0], ROOT)] + [(n, None) for n in names[1:]]


class Scenario(object):
    """``setup`` through host B, ``trigger`` through host A (it reaches
    the pause point), ``conflict(step)`` through host B while A stands
    still (and a little after)."""

    def __init__(self, ca, cb, rnd):
        self.ca, self.cb, self.rnd = ca, cb, rnd

    def base(self):
        assert self.cb.push_tagged('ns/base', 'keep', [('root', None)])


class Retag(Scenario):
    """A moves tag T from X to Y; B retags T among X, Y, Z (re-pushing
    whichever was deleted meanwhile), deletes it, and moves a second tag
    over the same images."""

    def setup(self):
        self.base()
        assert self.cb.push_tagged('ns/app', 't', chain('X'))
        # Y and Z untagged, as images docker pushed before their tags
        self.cb.push_chain(['Y'], ROOT)
        self.cb.push_chain(['Z'], ROOT)

    def trigger(self):
        assert self.ca.put('ns/app', 't', image_id('Y'))

    def conflict(self, step):
        name = ('X', 'Z', 'Y')[step % 3] if step < 3 else \
            self.rnd.choice('XYZ')
        if step < 3 or self.rnd.random() < 0.6:
            self.cb.push_tagged('ns/app', 't', chain(name), tries=3)
        elif self.rnd.random() < 0.5:
            self.cb.delete('ns/app', 't')
        elif self.rnd.random() < 0.5:
            self.cb.push_tagged('ns/app', 'u', chain(name), tries=3)
        else:
            self.cb.delete('ns/app', 'u')


class DeleteBase(Scenario):
    """A deletes the only tag of P (no children); B pushes children onto
    P, retags P's tag back to it, deletes children's tags."""

    def setup(self):
        self.base()
        assert self.cb.push_tagged('ns/base', 'p', chain('P'))

    def trigger(self):
        assert self.ca.delete('ns/base', 'p')

    def conflict(self, step):
        r = self.rnd.random()
        if step % 3 == 0 or r < 0.4:
            self.cb.push_tagged('ns/kid', 'k%d' % (step % 4),
                                chain('P', 'K-%d' % step), tries=3)
        elif r < 0.7:
            self.cb.push_tagged('ns/base', 'p', chain('P'), tries=3)
        elif r < 0.85:
            self.cb.delete('ns/base', 'p')
        else:
            self.cb.delete('ns/kid', 'k%d' % self.rnd.randrange(4))


class DeleteCascade(Scenario):
    """A deletes the only tag of C, whose parent P has no tag and no other
    child (the cascade will take P too); B pushes children onto P, retags
    C's tag back, deletes."""

    def setup(self):
        self.base()
        assert self.cb.push_tagged('ns/app', 'c', chain('P', 'C'))

    def trigger(self):
        assert self.ca.delete('ns/app', 'c')

    def conflict(self, step):
        r = self.rnd.random()
        if step % 2 == 0 or r < 0.4:
            self.cb.push_tagged('ns/kid', 'k%d' % (step % 4),
                                chain('P', 'K-%d' % step), tries=3)
        elif r < 0.7:
            self.cb.push_tagged('ns/app', 'c', chain('P', 'C'), tries=3)
        else:
            self.cb.delete('ns/kid', 'k%d' % self.rnd.randrange(4))


class ChildPush(Scenario):
    """A pushes a child of P (stopping inside the child's json PUT); B
    deletes P's only tag first, then pushes other children onto P
    (pushing P again once it is gone), deletes them, retags P."""

    def setup(self):
        self.base()
        assert self.cb.push_tagged('ns/base', 'p', chain('P'))

    def trigger(self):
        # the answer may be a refusal (P went meanwhile): a push retries
        # from the root, as docker's user would
        self.ca.push_tagged('ns/kid', 'a', chain('P', 'CA'), tries=8)

    def conflict(self, step):
        r = self.rnd.random()
        if step == 0:
            self.cb.delete('ns/base', 'p')
        elif r < 0.5:
            self.cb.push_tagged('ns/kid', 'b%d' % (step % 3),
                                chain('P', 'KB-%d' % step), tries=3)
        elif r < 0.7:
            self.cb.push_tagged('ns/base', 'p', chain('P'), tries=3)
        elif r < 0.85:
            self.cb.delete('ns/base', 'p')
        else:
            self.cb.delete('ns/kid', 'b%d' % self.rnd.randrange(3))


#: Each named point, and the operation of host A that reaches it.
POINTS = [
    ('reconcile_read_truth', Retag),
    ('reconcile_before_drop', Retag),
    ('finish_before_release', Retag),
    ('teardown_before_check', DeleteBase),
    ('teardown_before_json', DeleteBase),
    ('after_tombstone', DeleteCascade),
    ('child_before_marker', ChildPush),
    ('add_before_check', ChildPush),
]


def test_points_are_known():
    for point, _ in POINTS:
        assert point in crash.ALL_POINTS


@pytest.mark.parametrize('point,scenario', POINTS,
                         ids=[p for p, _ in POINTS])
def test_stall_at_point(make_registry, tmpdir, redis_server, point,
                        scenario):
    began = time.time()
    a, b = hosts(make_registry, tmpdir, redis_server, pause_at=point)
    history = History()
    ca = RecordingClient(a.url, history)
    cb = RecordingClient(b.url, history)
    case = scenario(ca, cb, random.Random('%s-%d' % (point, SEED)))
    pauses = Pauses(a)
    trigger = threading.Thread(target=case.trigger)
    trigger.daemon = True
    failure = []
    try:
        case.setup()
        # the setup's own work after its responses done, before A begins
        wait_for(lambda: not outstanding(b.store()), 40,
                 'the setup\'s work did not finish')
        assert a.pauses() == [], 'host A paused during the setup'
        trigger.start()
        seen, pid = pauses.first()
        assert seen == point
        stopped = time.time()
        # host B, while A stands still: the conflicting operations, for
        # at least the lease and a half ...
        step = 0
        while step < 4 or time.time() - stopped < HOLD:
            case.conflict(step)
            step += 1
        # ... and B's own work after its responses done (it needed the
        # locks A held: it got them once A's lease ran out)
        wait_for(lambda: not outstanding(b.store(), but=(pid,)), 40,
                 'host B did not finish its work while A stood still')
        assert state(pid) == 'T', 'host A was not stopped all along'
        stall = time.time() - stopped
        pauses.resume(0)
        # more of B's operations while A goes on from where it stood
        resumed = time.time()
        while time.time() - resumed < 1.0:
            case.conflict(step)
            step += 1
        trigger.join(120)
        assert not trigger.is_alive(), 'host A\'s request never ended'
        wait_for(pauses.settled, 30, 'a pause was never continued')
        assert a.settle(40), 'work still in flight:\n' + a.log()[-3000:]
        counts = history.counts()
        TOTALS['stalls'] += len(pauses.seen)
        TOTALS['past_lease'] += len(pauses.seen)
        TOTALS['operations'] += counts['ops']
        print('\n%s: %d stall(s) past the %gs lease (the first %.1fs), '
              '%d tag operations (%d acknowledged), %d of them by B '
              'while A stood still; lost-lock lines on A: %d' % (
                  point, len(pauses.seen), LEASE, stall, counts['ops'],
                  counts['acknowledged'], step,
                  a.log().count('lost lock')))
        # S1 on every acknowledged tag, before any recovery
        lost = history.violations(cb)
        assert lost == [], 'S1: %s' % lost
        left, problems = recover_then_gc(a, redis_server, cb)
        assert left == [], 'after recovery: %s' % left
        assert problems == [], problems
    except Exception:
        failure.append(True)
        raise
    finally:
        pauses.close()
        if failure:
            print(describe(a, history))
    assert time.time() - began < 120


class Stopper(object):
    """Stops every worker of a registry (SIGSTOP) at seeded random moments
    and continues them (SIGCONT) after a random while: half of the stalls
    short, half past the lease."""

    def __init__(self, reg, seed):
        self.reg = reg
        self.rnd = random.Random(seed)
        self.stalls = self.past_lease = 0
        self.done = threading.Event()
        self.stopped = set()
        self.thread = threading.Thread(target=self._run)
        self.thread.daemon = True

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.done.wait(self.rnd.uniform(0.2, 1.5)):
            try:
                pids = self.reg.worker_pids()
            except Exception:
                continue
            for pid in pids:
                self.stopped.add(pid)
                signal_pid(pid, signal.SIGSTOP)
            hold = (self.rnd.uniform(0.1, LEASE / 2) if self.rnd.random()
                    < 0.5 else self.rnd.uniform(LEASE * 1.2, LEASE * 2.5))
            time.sleep(hold)
            for pid in pids:
                signal_pid(pid, signal.SIGCONT)
                self.stopped.discard(pid)
            self.stalls += 1
            self.past_lease += hold > LEASE

    def stop(self):
        self.done.set()
        self.thread.join(30)
        for pid in list(self.stopped):
            signal_pid(pid, signal.SIGCONT)


def test_random_stalls_under_load(make_registry, tmpdir, redis_server):
    a, b = hosts(make_registry, tmpdir, redis_server)
    history = History()
    cb = RecordingClient(b.url, history)
    base = cb.push_tagged('ns/base', 'keep', [('h-base', None)])
    assert base
    stopper = Stopper(a, SEED)
    until = time.time() + LOAD_SECONDS
    stopper.start()
    try:
        operations, errors = timed_workload(
            [a.url, b.url, a.url, b.url], base[-1], until, history,
            seed=SEED)
    finally:
        stopper.stop()
    counts = history.counts()
    TOTALS['stalls'] += stopper.stalls
    TOTALS['past_lease'] += stopper.past_lease
    TOTALS['operations'] += operations
    print('\nrandom stalls (seed %d, %ds): %d stalls of all of host A\'s '
          'workers (%d past the %gs lease); %d client operations, %d tag '
          'operations (%d acknowledged, %d refused); lost-lock lines on A: '
          '%d, on B: %d; client errors: %d' % (
              SEED, LOAD_SECONDS, stopper.stalls, stopper.past_lease, LEASE,
              operations, counts['ops'], counts['acknowledged'],
              counts['refused'], a.log().count('lost lock'),
              b.log().count('lost lock'), len(errors)))
    assert stopper.stalls >= 5 and stopper.past_lease >= 1
    assert counts['acknowledged'] >= 20, counts
    lost = history.violations(cb)
    assert lost == [], 'S1: %s' % lost
    left, problems = recover_then_gc(a, redis_server, cb)
    if a.log().count('lost lock'):
        # design.rst, *Lost locks*, the known gap: with leases lost an
        # image was left unreachable after recovery; gc takes it
        # (asserted below)
        left = [p for p in left if not p.startswith('L1 unreachable')]
    assert left == [], 'after recovery: %s' % left
    assert problems == [], problems
    print('totals so far: %s' % TOTALS)


# -- what the tests above found, each reduced to its shortest form ------------

def stall_once(make_registry, tmpdir, redis_server, point, conflicts):
    """T names X (Y and Z pushed, untagged).  Host A retags T to Y and
    stops at ``point``; host B runs ``conflicts(cb)``, its work finishes
    (it takes the lock A's lease lost); then A goes on.  Returns the hosts
    and the client of B, once everything settled, before recovery."""
    a, b = hosts(make_registry, tmpdir, redis_server, pause_at=point)
    history = History()
    ca = RecordingClient(a.url, history)
    cb = RecordingClient(b.url, history)
    Retag(ca, cb, random.Random(0)).setup()
    wait_for(lambda: not outstanding(b.store()), 40, 'setup did not end')
    pauses = Pauses(a)
    try:
        assert ca.put('ns/app', 't', image_id('Y'))
        seen, pid = pauses.first()
        stopped = time.time()
        conflicts(cb)
        wait_for(lambda: not outstanding(b.store(), but=(pid,)), 40,
                 'host B did not finish its work while A stood still')
        wait_for(lambda: time.time() - stopped > HOLD, 10, '')
        assert state(pid) == 'T'
        pauses.resume(0)
        wait_for(pauses.settled, 30, 'a pause was never continued')
        assert a.settle(40)
    finally:
        pauses.close()
    assert history.violations(cb) == []                       # S1
    return a, b, cb


def test_a_hold_on_a_lost_lock_still_goes_through_the_cascade(make_registry, tmpdir, redis_server):
    """T names X.  A retags T to Y: its reconcile puts its hold on X and
    stops before taking T's marker off.  B retags T to Z; B's reconcile
    (A's lease has run out) takes T's marker off X and, seeing A's hold,
    keeps X.  A goes on and finds its lock lost.  It removed its hold
    without the cascade, leaving the rest to recovery - which found the
    ledger right (B wrote it) and never looked at X again: X stayed, with
    no marker and no tag, until gc (seen every time).  The hold now goes
    through the cascade whatever stops the reconcile."""
    a, b, cb = stall_once(make_registry, tmpdir, redis_server,
                          'reconcile_before_drop',
                          lambda cb: cb.put('ns/app', 't', image_id('Z')))
    left, after_gc = recover_then_gc(a, redis_server, cb)
    assert after_gc == []
    assert left == []
