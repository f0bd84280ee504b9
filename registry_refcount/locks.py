"""Locks per image and per tag.

A lock provider has two methods, ``image(image_id)`` and ``tag(key)``, each
returning a context manager that holds the lock for the ``with`` block or
raises :class:`LockTimeout` when it cannot be had within ``timeout``
seconds.  The protocols take a tag lock, then image locks one at a time,
never two image locks at once, so no ordering between two locks of the same
kind is ever needed and there is no deadlock.

Backends:

* :class:`LocalLocks` - fcntl record locks on one file per kind, which
  hold across the gunicorn workers of one host, plus an in-process mutex
  for the greenlets of one worker.  Locks are striped over byte offsets,
  so the folder does not grow with the registry.  It never blocks the
  gevent hub: it polls non-blocking locks with a (monkey-patched,
  cooperative) sleep.
* :class:`RedisLocks` - for several registry hosts on shared storage:
  ``SET NX PX`` with an owner token, released by compare-and-delete,
  renewed while held.
"""

from __future__ import absolute_import, unicode_literals

import contextlib
import errno
import hashlib
import logging
import os
import random
import threading
import time
import uuid

logger = logging.getLogger(__name__)


class LockTimeout(Exception):
    """The lock could not be had in time: keep the data, retry later."""


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


class LocalLocks(object):
    """fcntl locks in ``lock_dir``; one host, any number of workers.

    One file per kind of lock, and a lock is one byte of it (a POSIX
    record lock at the offset of its stripe): taking a lock costs one
    ``fcntl`` call, not an ``open`` of a lock file (40 us on this kind of
    disk, several per request).  Record locks belong to the process, so
    a lock taken in this process is also held in-process, which keeps the
    greenlets and threads of one worker (and several providers on one
    folder) apart; the files stay open for the life of the process,
    because closing any descriptor of a file drops the process's record
    locks on it.
    """

    def __init__(self, lock_dir, timeout=30, stripes=1 << 20):
        import fcntl  # POSIX only; imported here so the module loads anywhere
        self._fcntl = fcntl
        self.lock_dir = lock_dir
        self.timeout = timeout
        self.stripes = stripes
        self._paths = dict((kind, os.path.join(lock_dir, '%s.locks' % kind))
                           for kind in ('image', 'tag', 'named'))
        if not os.path.isdir(lock_dir):
            try:
                os.makedirs(lock_dir)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise

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


class _Held(object):
    """One local lock, held for a ``with`` block.  (A class rather than a
    generator-based context manager: several locks are taken for every
    tag request.)"""

    __slots__ = ('locks', 'path', 'offset', 'kind', 'name', 'fd', 'mutex')

    def __init__(self, locks, path, offset, kind, name):
        self.locks, self.path, self.offset = locks, path, offset
        self.kind, self.name = kind, name

    def __enter__(self):
        fcntl = self.locks._fcntl
        what = '%s %s' % (self.kind, self.name)
        tables = _process_tables()
        mutex = self.mutex = _local_mutex(tables, self.path, self.offset)
        deadline = time.time() + self.locks.timeout
        _acquire(mutex, deadline, what)
        try:
            fd = self.fd = _shared_fd(tables, self.path)
            delay = FIRST_WAIT
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1,
                                self.offset)
                    return
                except (IOError, OSError) as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                delay = _backoff(deadline, delay, what)
        except BaseException:
            mutex.release()
            raise

    def __exit__(self, *exc):
        try:
            self.locks._fcntl.lockf(self.fd, self.locks._fcntl.LOCK_UN, 1,
                                    self.offset)
        finally:
            self.mutex.release()


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


#: Per process: lock file path -> open descriptor, and (path, offset) ->
#: in-process mutex.  Reset in a forked child, which inherits neither the
#: record locks nor the holders of the mutexes.
_files = {'pid': None, 'fds': {}, 'mutexes': {}}
_files_guard = threading.Lock()


def _process_tables():
    if _files['pid'] != os.getpid():
        with _files_guard:
            if _files['pid'] != os.getpid():
                _files.update(pid=os.getpid(), fds={}, mutexes={})
    return _files


def _shared_fd(tables, path):
    fds = tables['fds']
    fd = fds.get(path)
    if fd is None:
        with _files_guard:
            fd = fds.get(path)
            if fd is None:
                fd = fds[path] = os.open(path, os.O_RDWR | os.O_CREAT,
                                         0o644)
    return fd


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


class RedisLocks(object):
    """Redis locks with expiry, owner token and renewal; several hosts.

    A lock expires ``ttl`` seconds after its last renewal, so a crashed
    holder never blocks others for long; a live holder renews it every
    ``ttl / 3`` seconds.  Release deletes the key only if it still holds
    this owner's token.  An unreachable Redis is a :class:`LockTimeout`:
    the caller keeps the data.
    """

    def __init__(self, host='127.0.0.1', port=6379, db=0, password=None,
                 timeout=30, ttl=30, prefix='registry-refcount:lock:',
                 socket_timeout=5):
        import redis
        self._redis_errors = (redis.exceptions.RedisError,)
        self._conn = redis.StrictRedis(host=host, port=int(port), db=int(db),
                                       password=password,
                                       socket_timeout=socket_timeout,
                                       socket_connect_timeout=socket_timeout)
        self.timeout = timeout
        self.ttl = ttl
        self.prefix = prefix

    def image(self, image_id):
        return self._hold('image:%s' % image_id)

    def tag(self, key):
        return self._hold('tag:%s' % hashlib.sha256(
            str(key).encode('utf-8')).hexdigest())

    def named(self, name):
        return self._hold('named:%s' % name)

    @contextlib.contextmanager
    def _hold(self, name):
        key = self.prefix + name
        token = uuid.uuid4().hex
        ttl_ms = int(self.ttl * 1000)
        deadline = time.time() + self.timeout
        delay = FIRST_WAIT
        while True:
            try:
                if self._conn.set(key, token, nx=True, px=ttl_ms):
                    break
            except self._redis_errors as e:
                # The SET may have been applied and only its answer lost:
                # drop our token if it is there (best effort; else it
                # expires after ttl).
                self._release(key, token, quiet=True)
                raise LockTimeout('redis unreachable for lock %s: %s'
                                  % (name, e))
            delay = _backoff(deadline, delay, name)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew,
                                   args=(key, token, ttl_ms, stop))
        renewer.daemon = True
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            self._release(key, token)

    def _release(self, key, token, quiet=False):
        """Compare-and-delete: only a key holding our token goes."""
        try:
            self._conn.eval(_RELEASE, 1, key, token)
        except self._redis_errors as e:
            if not quiet:
                logger.warning('refcount: could not release lock %s (%s); '
                               'it expires in %ss', key, e, self.ttl)

    def _renew(self, key, token, ttl_ms, stop):
        while not stop.wait(self.ttl / 3.0):
            try:
                renewed = self._conn.eval(_RENEW, 1, key, token, ttl_ms)
            except self._redis_errors as e:
                logger.warning('refcount: could not renew lock %s: %s',
                               key, e)
                continue
            if not renewed:
                if not stop.is_set():   # not just released under our feet
                    logger.error('refcount: lost lock %s while holding it '
                                 '(it expired and may have been taken)',
                                 key)
                return
