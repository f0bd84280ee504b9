"""Locks per image and per tag, and knowing when one was lost.

A lock provider has three methods, ``image(image_id)``, ``tag(key)`` and
``named(name)``, each returning a context manager that holds the lock for
the ``with`` block or raises :class:`LockTimeout` when it cannot be had
within ``timeout`` seconds.  The protocols take a tag lock, then image
locks one at a time, never two image locks at once, so no ordering between
two locks of the same kind is ever needed and there is no deadlock.

A lock can stop excluding while it is held: a Redis lease runs out while
its holder is stalled, Redis restarts or is flushed, a lock file is
removed.  So a provider also has ``verify()``, called before each
destructive step: it raises :class:`LockLost` (a :class:`LockTimeout`, so
callers leave the work to recovery) if any lock the calling task (thread
or greenlet) holds is known or suspected lost.  It is cheap while nothing
is suspicious.  And ``identity()`` names the lock space, so that two
processes can find out whether they share locks at all.

Backends:

* :class:`LocalLocks` - fcntl record locks on one file per kind, which
  hold across the gunicorn workers of one host, plus an in-process mutex
  for the greenlets of one worker.  Locks are striped over byte offsets,
  so the folder does not grow with the registry.  It never blocks the
  gevent hub: it polls non-blocking locks with a (monkey-patched,
  cooperative) sleep.  A held lock is lost when its file's path no longer
  names the file it locked (removed or replaced).
* :class:`RedisLocks` - for several registry hosts on shared storage:
  ``SET NX PX`` with an owner token and a lease, released by
  compare-and-delete, renewed while held.  A held lock is lost when a
  renewal finds the token gone, or when its last confirmation is older
  than the lease allows (measured on a monotonic clock).
"""

from __future__ import absolute_import, unicode_literals

import contextlib
import errno
import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid

from . import durable
from . import ownership

logger = logging.getLogger(__name__)


class LockTimeout(Exception):
    """The lock could not be had in time: keep the data, retry later."""


class LockUnavailable(LockTimeout):
    """The lock service (Redis) cannot be reached: not "somebody else holds
    it" - said apart, so that an operator looks at the right thing."""


class LockLost(LockTimeout):
    """A lock this task holds no longer excludes others, or may not: take
    no further destructive step under it; leave the work to recovery."""


# -- a monotonic clock on Python 2 and 3 ------------------------------------

def _clock_gettime():
    """``clock_gettime`` through ctypes (Python 2 has no time.monotonic),
    or None where it cannot be had."""
    try:
        import ctypes
        import ctypes.util
    except ImportError:   # pragma: no cover - a Python without ctypes
        return None

    class Timespec(ctypes.Structure):
        _fields_ = [('tv_sec', ctypes.c_long), ('tv_nsec', ctypes.c_long)]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6',
                           use_errno=True)
        call = libc.clock_gettime
    except (OSError, AttributeError):   # pragma: no cover - not Linux/BSD
        return None
    spec = Timespec()
    ref = ctypes.byref(spec)

    def clock(clock_id):
        if call(clock_id, ref) != 0:
            raise OSError(ctypes.get_errno(), 'clock_gettime')
        return spec.tv_sec + spec.tv_nsec * 1e-9
    return clock


#: Linux's clock ids: CLOCK_BOOTTIME also counts a suspended machine (a
#: lease runs out in Redis while the holder's host sleeps);
#: CLOCK_MONOTONIC is the fallback.
CLOCK_MONOTONIC, CLOCK_BOOTTIME = 1, 7


def _monotonic_clock():
    """The best clock that never jumps: time.clock_gettime/monotonic on
    Python 3, clock_gettime through ctypes on Python 2, time.time (with a
    warning) where neither exists.  A lease's age is never measured on the
    wall clock: NTP or an operator may move it any way."""
    own = getattr(time, 'clock_gettime', None)
    clock = (own if own is not None else _clock_gettime())
    if clock is not None:
        for clock_id in (getattr(time, 'CLOCK_BOOTTIME', CLOCK_BOOTTIME),
                         getattr(time, 'CLOCK_MONOTONIC', CLOCK_MONOTONIC)):
            try:
                clock(clock_id)
            except (OSError, ValueError):
                continue
            return lambda: clock(clock_id)
    if hasattr(time, 'monotonic'):   # pragma: no cover - not Linux
        return time.monotonic
    logger.warning('refcount: no monotonic clock; lock leases are '
                   'measured on the wall clock')   # pragma: no cover
    return time.time   # pragma: no cover


monotonic = _monotonic_clock()


# -- what each task holds -----------------------------------------------------

try:
    from greenlet import getcurrent as _current_task
except ImportError:   # no gevent here: tasks are threads
    try:
        from threading import get_ident as _current_task
    except ImportError:   # Python 2
        from thread import get_ident as _current_task

#: task (greenlet, or thread where there is no greenlet) -> the claims it
#: holds, in the order taken.  Only a task changes its own list; a task
#: holding nothing has no entry.
_held = {}


class _Claim(object):
    """A lock held by one task, as :func:`verify_held` sees it."""

    __slots__ = ('what', 'pid', 'task', 'lost')

    def _claimed(self, what, pid):
        """Called once the lock is had (by process ``pid``): the task now
        holds it."""
        self.what, self.pid, self.lost = what, pid, None
        self.task = _current_task()
        claims = _held.get(self.task)
        if claims is None:
            claims = _held[self.task] = []
        claims.append(self)

    def _unclaimed(self):
        claims = _held.get(self.task)
        if claims is not None:
            claims.remove(self)
            if not claims:
                del _held[self.task]

    def _mark_lost(self, reason):
        """Known lost from now on: logged once, raised by every verify."""
        if self.lost is None:
            self.lost = reason
            logger.error('refcount: lost lock %s while holding it: %s',
                         self.what, reason)

    def verify(self, pid, strict):
        if self.lost is None:
            if self.pid != pid:
                self._mark_lost('taken before this process was forked')
            else:
                self._check(strict)
        if self.lost is not None:
            raise LockLost('lost lock %s: %s' % (self.what, self.lost))

    def _check(self, strict):
        """Mark the claim lost if it is (a backend's own test)."""
        raise NotImplementedError


def verify_held(strict=False):
    """Raise :class:`LockLost` if a lock the calling task holds is lost or
    may be.  ``strict``: ask the lock's backend now, even where a recent
    confirmation would do."""
    claims = _held.get(_current_task())
    if claims:
        pid = os.getpid()
        for claim in claims:
            claim.verify(pid, strict)


class _Provider(object):
    """What every provider offers beside its locks."""

    def verify(self, strict=False):
        """Before a destructive step: raise :class:`LockLost` if any lock
        the calling task holds (of any provider) is lost or suspected
        lost.  Cheap when nothing is suspicious; ``strict`` asks the
        backend every time."""
        verify_held(strict)

    def identity(self):
        """A string naming this lock space: two providers exclude each
        other exactly when their identities are equal."""
        raise NotImplementedError


class NoLocks(_Provider):
    """For a command that only reads (``status``, ``verify``, a dry run):
    locks that exclude nobody, and make no lock file.  Its storage is
    open read-only, so nothing done under them can change a thing."""

    def image(self, image_id):
        return _NOTHING

    tag = named = image

    def identity(self):
        return 'none'


class _Nothing(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NOTHING = _Nothing()


def _stripe(kind, name, stripes):
    digest = hashlib.sha1(('%s:%s' % (kind, name)).encode('utf-8'))
    return int(digest.hexdigest()[:8], 16) % stripes


#: Polling a busy lock: first wait, and the longest (a hot lock, such as
#: a base image's while many children are pushed, changes hands every
#: fraction of a millisecond: a long sleep would leave it idle).
FIRST_WAIT, LONGEST_WAIT = 0.0002, 0.002


def _backoff(deadline, delay, what):
    if time.time() >= deadline:
        raise LockTimeout('could not lock %s in time' % what)
    time.sleep(delay * (0.5 + random.random()))
    return min(delay * 2, LONGEST_WAIT)


# -- local locks ------------------------------------------------------------

class LocalLocks(_Provider):
    """fcntl locks in ``lock_dir``; one host, any number of workers.

    One file per kind of lock, and a lock is one byte of it (a POSIX
    record lock at the offset of its stripe): taking a lock costs one
    ``fcntl`` call, not an ``open`` of a lock file.  (A/B against a file
    per lock: 14 system calls of 304 per bench iteration, 1.7% of the
    instructions, under 5%; kept because the alternative is not simpler -
    a file per name ever locked, and their removal, which races with
    lockers of the removed file; bench/NOTES.md.)

    Record locks belong to the process, so a lock taken in this process
    is also held in-process, which keeps the greenlets and threads of one
    worker (and several providers on one folder) apart; the files stay
    open while the process uses them, because closing any descriptor of a
    file drops the process's record locks on it.

    A record lock belongs to an inode, not a path: once the file is
    removed or replaced (a cleaner, ``rm -rf`` of the folder), another
    process opening the path locks another file.  So a lock is had only
    when, after locking, the path still names the locked file (else the
    path is opened again: everyone converges on the new file), and a held
    lock whose path no longer names its file is lost.
    """

    def __init__(self, lock_dir, timeout=30, stripes=1 << 20):
        import fcntl  # POSIX only; imported here so the module loads anywhere
        self._fcntl = fcntl
        self.lock_dir = lock_dir
        self.timeout = timeout
        self.stripes = stripes
        self._paths = dict((kind, os.path.join(lock_dir, '%s.locks' % kind))
                           for kind in ('image', 'tag', 'named'))
        durable.make_folders(lock_dir, ownership.of(lock_dir))

    def image(self, image_id):
        return self._lock('image', image_id)

    def tag(self, key):
        return self._lock('tag', str(key))

    def named(self, name):
        """A lock of its own (recovery, gc)."""
        return self._lock('named', name)

    def _lock(self, kind, name):
        return _Held(self, self._paths[kind],
                     _stripe(kind, name, self.stripes), kind, name)

    def identity(self):
        """``local:<boot id>:<id of lock_dir>``: the folder's id is made
        once (a new one if the folder was wiped: a new lock space), and the
        boot id tells two hosts (or two boots) apart on a shared folder."""
        return 'local:%s:%s' % (_boot_id(), _read_or_create(
            os.path.join(self.lock_dir, 'identity')))


class _Held(_Claim):
    """One local lock, held for a ``with`` block.  (A class rather than a
    generator-based context manager: several locks are taken for every
    tag request.)"""

    __slots__ = ('locks', 'path', 'offset', 'kind', 'name', 'file', 'mutex')

    def __init__(self, locks, path, offset, kind, name):
        self.locks, self.path, self.offset = locks, path, offset
        self.kind, self.name = kind, name

    def __enter__(self):
        what = '%s %s' % (self.kind, self.name)
        tables = _process_tables()
        mutex = self.mutex = _local_mutex(tables, self.path, self.offset)
        deadline = time.time() + self.locks.timeout
        _acquire(mutex, deadline, what)
        try:
            self.file = _lock_named_file(self.locks._fcntl, tables,
                                         self.path, self.offset, deadline,
                                         what)
        except BaseException:
            mutex.release()
            raise
        self._claimed(what, tables['pid'])

    def __exit__(self, *exc):
        self._unclaimed()
        try:
            self.locks._fcntl.lockf(self.file.fd, self.locks._fcntl.LOCK_UN,
                                    1, self.offset)
        finally:
            _unuse_file(self.file)
            self.mutex.release()

    def _check(self, strict):
        if not _still_named(self.path, self.file, time.time(), strict):
            self._mark_lost('its file %s was removed or replaced'
                            % self.path)
            _retire_file(_files, self.file)    # the next lock reopens it


def _acquire(mutex, deadline, what):
    """Take an in-process mutex by ``deadline`` (else :class:`LockTimeout`):
    waiting on it where the lock can wait with a timeout (gevent's, Python
    3's), so a greenlet is woken the moment it is free; polling where it
    cannot (Python 2's)."""
    if mutex.acquire(False):
        return
    try:
        got = mutex.acquire(True, max(0.0, deadline - time.time()))
    except TypeError:
        delay = FIRST_WAIT
        while not mutex.acquire(False):
            delay = _backoff(deadline, delay, what)
        return
    if not got:
        raise LockTimeout('could not lock %s in time' % what)


def _lock_named_file(fcntl, tables, path, offset, deadline, what):
    """Lock ``offset`` of the file ``path`` names, and return that file
    (counted as used).  Locking a file that was removed or replaced would
    exclude nobody who opens the path afresh: such a file is retired and
    the path opened again."""
    while True:
        lock_file = _use_file(tables, path)
        try:
            _lock_byte(fcntl, lock_file.fd, offset, deadline, what)
        except BaseException:
            _unuse_file(lock_file)
            raise
        if _still_named(path, lock_file, time.time()):
            return lock_file
        fcntl.lockf(lock_file.fd, fcntl.LOCK_UN, 1, offset)
        _retire_file(tables, lock_file)
        _unuse_file(lock_file)
        if time.time() >= deadline:
            raise LockTimeout('could not lock %s in time' % what)


def _lock_byte(fcntl, fd, offset, deadline, what):
    delay = FIRST_WAIT
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            return
        except (IOError, OSError) as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        delay = _backoff(deadline, delay, what)


class _LockFile(object):
    """An open lock file: its descriptor, the file it is (``(st_dev,
    st_ino)``: the open descriptor keeps the inode alive, so its number
    cannot be reused by a new file meanwhile), the holders in this process
    using it, and whether the path has moved on to another file."""

    __slots__ = ('path', 'fd', 'ident', 'users', 'retired', 'checked')

    def __init__(self, path):
        self.path, self.users, self.retired = path, 0, False
        self.checked = time.time()     # opened by its path just now
        # (opened once per process: the stat of the folder a root process
        # asks for here is no cost worth caching)
        owner = ownership.of(os.path.dirname(path))
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            # (was removed)
            durable.make_folders(os.path.dirname(path), owner)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if owner is not None:
            owner.give_file(self.fd)
        st = os.fstat(self.fd)
        self.ident = (st.st_dev, st.st_ino)


#: Seconds a lock file found to be its path's is believed to stay so: a
#: ``stat`` (1.5-4 us) is most of the cost of taking a lock or of a
#: verify, and a cleaner removing the file is not timed to a few
#: milliseconds.  ``verify(strict=True)`` always looks.
RECHECK = 0.02


def _still_named(path, lock_file, now, strict=False):
    """Whether ``path`` names ``lock_file``, as seen within ``RECHECK``
    seconds (on the wall clock, but a clock gone backwards looks again)."""
    if not strict and 0 <= now - lock_file.checked < RECHECK:
        return True
    if _names(path, lock_file):
        lock_file.checked = now
        return True
    return False


def _names(path, lock_file):
    """Whether ``path`` still names ``lock_file`` (one ``stat``, ~1.5 us).
    An error other than "no such file" is raised, not taken for a new file
    (see :func:`_unuse_file`)."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
    return (st.st_dev, st.st_ino) == lock_file.ident


#: Per process: lock file path -> its current :class:`_LockFile`, every
#: open :class:`_LockFile` (current or retired), and (path, offset) ->
#: in-process mutex.  Reset in a forked child, which inherits neither the
#: record locks nor the holders of the mutexes.  ``_files_guard`` makes
#: "use the current file" and "close a retired file nobody uses"
#: exclusive (never held across anything that yields).
_files = {'pid': None, 'files': {}, 'open': [], 'mutexes': {}}
_files_guard = threading.Lock()


def _process_tables():
    if _files['pid'] != os.getpid():
        with _files_guard:
            if _files['pid'] != os.getpid():
                _files.update(pid=os.getpid(), files={}, open=[],
                              mutexes={})
    return _files


def _use_file(tables, path):
    """The file ``path`` currently means in this process (opened on first
    use or after the last one was retired), counted as used."""
    with _files_guard:
        lock_file = tables['files'].get(path)
        if lock_file is None:
            lock_file = tables['files'][path] = _LockFile(path)
            tables['open'].append(lock_file)
        lock_file.users += 1
    return lock_file


def _unuse_file(lock_file):
    """One user less; a retired file is closed by its last user.  Closing
    any descriptor of a file drops all of this process's record locks on
    it: so never while a holder uses it, nor while another descriptor of
    this process names the same file (a path moved away and back)."""
    tables = _files
    with _files_guard:
        lock_file.users -= 1
        if lock_file.retired and not lock_file.users and \
                lock_file in tables['open']:    # (not after a fork)
            tables['open'].remove(lock_file)
            if not any(other.ident == lock_file.ident
                       for other in tables['open']):
                os.close(lock_file.fd)


def _retire_file(tables, lock_file):
    """``lock_file``'s path names another file (or none): the next user
    opens the path again."""
    with _files_guard:
        retired = tables['files'].get(lock_file.path) is lock_file
        if retired:
            lock_file.retired = True
            del tables['files'][lock_file.path]
    if retired:
        logger.error('refcount: lock file %s was removed or replaced; '
                     'locks held on the old file are lost, opening the new '
                     'one', lock_file.path)


#: In-process mutexes per lock file (stripes of the stripes: a bounded
#: table, and sharing one is safe: a caller never holds two locks of one
#: kind at once).
MUTEXES = 4096


def _local_mutex(tables, path, offset):
    mutexes = tables['mutexes']
    key = (path, offset % MUTEXES)
    mutex = mutexes.get(key)
    if mutex is None:
        mutex = mutexes.setdefault(key, threading.Lock())
    return mutex


_boot = []


def _boot_id():
    """This boot of this host (Linux's boot_id; the host name elsewhere)."""
    if not _boot:
        try:
            with open('/proc/sys/kernel/random/boot_id', 'rb') as f:
                _boot.append(f.read().decode('ascii').strip())
        except (IOError, OSError):
            _boot.append(socket.gethostname())
    return _boot[0]


def _read_or_create(path):
    """The id stored in ``path``, made (once, atomically) if absent."""
    for _ in range(5):
        try:
            with open(path, 'rb') as f:
                found = f.read().decode('ascii').strip()
            if found:
                return found
        except (IOError, OSError) as e:
            if e.errno != errno.ENOENT:
                raise
        _create_once(path, uuid.uuid4().hex)
    raise LockTimeout('cannot read the lock space identity %s' % path)


def _create_once(path, content):
    """Write ``content`` to a file of its own, then link it as ``path``
    unless ``path`` exists (a reader never sees a half-written id; the
    first writer wins)."""
    draft = '%s.%s' % (path, uuid.uuid4().hex)
    owner = ownership.of(os.path.dirname(path))
    # (the folder may be wiped)
    durable.make_folders(os.path.dirname(path), owner)
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    durable.fill(fd, content.encode('ascii'), owner)
    try:
        os.link(draft, path)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    finally:
        os.unlink(draft)


# -- Redis locks ------------------------------------------------------------

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class RedisLocks(_Provider):
    """Redis locks with a lease, owner token and renewal; several hosts.

    A lock expires ``lease`` seconds after it was last confirmed (taken or
    renewed), so a crashed holder never blocks others for long; a live
    holder renews it every ``lease / 3`` seconds.  Release deletes the key
    only if it still holds this owner's token.  An unreachable Redis is a
    :class:`LockTimeout`: the caller keeps the data.

    The holder counts a lock lost when a renewal finds its token gone
    (expired, FLUSHALL, a restart or failover of Redis), or when its last
    confirmation is ``lease - lease / 3`` old on this host's monotonic
    clock (a stopped process resumes with a lease that may have run out
    in Redis: its renewer was stopped too).  :meth:`verify` confirms
    against Redis itself once the last confirmation is ``lease / 3`` old;
    after it returns, the lock is ours for at least ``lease / 3`` more.
    ``ttl`` is the former name of ``lease``.
    """

    def __init__(self, host='127.0.0.1', port=6379, db=0, password=None,
                 timeout=30, lease=30, prefix='registry-refcount:lock:',
                 socket_timeout=5, ttl=None):
        import redis
        lease = float(lease if ttl is None else ttl)
        if not lease > 0:
            raise ValueError('lock lease must be more than 0, got %r'
                             % lease)
        self._redis_errors = (redis.exceptions.RedisError,)
        # A request that takes a third of the lease is one the lease
        # cannot wait for.
        socket_timeout = min(socket_timeout, lease / 3.0)
        self._conn = redis.StrictRedis(host=host, port=int(port), db=int(db),
                                       password=password,
                                       socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout)
        self.timeout = timeout
        self.lease = lease
        self.prefix = prefix

    @property
    def ttl(self):
        return self.lease

    @property
    def renew_every(self):
        return self.lease / 3.0

    @property
    def confirm_after(self):
        """verify() asks Redis once the last confirmation is this old."""
        return self.lease / 3.0

    @property
    def lost_after(self):
        """The age of the last confirmation at which the lock is lost:
        the lease less a margin for the step that follows a verify."""
        return self.lease - self.lease / 3.0

    def image(self, image_id):
        return self._hold('image:%s' % image_id)

    def tag(self, key):
        return self._hold('tag:%s' % hashlib.sha256(
            str(key).encode('utf-8')).hexdigest())

    def named(self, name):
        return self._hold('named:%s' % name)

    @contextlib.contextmanager
    def _hold(self, name):
        lease = _Lease(self, self.prefix + name)
        lease.acquire(name)
        try:
            yield
        finally:
            lease.release()

    def _release(self, key, token, quiet=False):
        """Compare-and-delete: only a key holding our token goes."""
        try:
            self._conn.eval(_RELEASE, 1, key, token)
        except self._redis_errors as e:
            if not quiet:
                logger.warning('refcount: could not release lock %s (%s); '
                               'it expires in %ss', key, e, self.lease)

    def identity(self):
        """``redis:<id>``, the id stored at ``<prefix>identity`` by the
        first provider that asked (a flushed or restarted Redis gets a new
        one: a new lock space)."""
        key = self.prefix + 'identity'
        for _ in range(3):
            try:
                self._conn.set(key, uuid.uuid4().hex, nx=True)
                found = self._conn.get(key)
            except self._redis_errors as e:
                raise LockUnavailable('redis unreachable for the lock '
                                      'space identity: %s' % e)
            if found:
                return 'redis:%s' % found.decode('ascii')
        raise LockTimeout('the lock space identity %s keeps vanishing' % key)


class _Lease(_Claim):
    """One Redis lock: its key, its owner token and the monotonic time of
    its last confirmation (taken just *before* the request that confirmed
    it, so the lease in Redis never ends before ``confirmed + lease``)."""

    __slots__ = ('locks', 'key', 'token', 'confirmed', 'stop')

    def __init__(self, locks, key):
        self.locks, self.key = locks, key
        self.token = uuid.uuid4().hex
        self.stop = threading.Event()

    def _ms(self):
        return int(self.locks.lease * 1000)

    def acquire(self, name):
        locks = self.locks
        deadline = time.time() + locks.timeout
        delay = FIRST_WAIT
        while True:
            sent = monotonic()
            try:
                if locks._conn.set(self.key, self.token, nx=True,
                                   px=self._ms()):
                    break
            except locks._redis_errors as e:
                # The SET may have been applied and only its answer lost:
                # drop our token if it is there (best effort; else it
                # expires after the lease).
                locks._release(self.key, self.token, quiet=True)
                raise LockUnavailable('redis unreachable for lock %s: %s'
                                      % (name, e))
            delay = _backoff(deadline, delay, name)
        self.confirmed = sent
        renewer = threading.Thread(target=self._renew_until_released)
        renewer.daemon = True
        renewer.start()
        self._claimed(self.key, os.getpid())

    def release(self):
        self._unclaimed()
        self.stop.set()
        self.locks._release(self.key, self.token)

    def renew(self):
        """Confirm the token is still ours and extend it by a lease, or
        mark the lock lost.  Raises the client's error if Redis does not
        answer."""
        sent = monotonic()
        age = sent - self.confirmed
        if age >= self.locks.lost_after:
            self._mark_lost('its lease may have run out: last confirmed '
                            '%.2fs ago, lease %ss' % (age, self.locks.lease))
            return
        renewed = self.locks._conn.eval(_RENEW, 1, self.key, self.token,
                                        self._ms())
        if not renewed:
            if not self.stop.is_set():   # not just released under our feet
                self._mark_lost('its key is gone or has another owner '
                                '(expired, flushed, or Redis restarted or '
                                'failed over)')
        elif sent > self.confirmed:
            self.confirmed = sent

    def _renew_until_released(self):
        while not self.stop.wait(self.locks.renew_every):
            try:
                self.renew()
            except self.locks._redis_errors as e:
                logger.warning('refcount: could not renew lock %s: %s',
                               self.key, e)
                continue
            if self.lost is not None:
                return

    def _check(self, strict):
        if not strict and \
                monotonic() - self.confirmed < self.locks.confirm_after:
            return
        try:
            self.renew()
        except self.locks._redis_errors as e:
            self._mark_lost('redis unreachable: %s' % e)
            return
        age = monotonic() - self.confirmed
        if self.lost is None and age >= self.locks.lost_after:
            self._mark_lost('confirming it took %.2fs' % age)
