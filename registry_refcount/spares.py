"""Spare files: the extension's removed records, reused as new ones.

On local storage, creating a file is the costly metadata operation: about
0.2 ms of system time on the hosts measured in bench/NOTES.md, against a
few microseconds for a rename or an unlink.  A tag write and a tag delete
create and remove about as many small records as each other (intents,
markers, ledger entries, tombstones, journal entries), so instead of
unlinking a record this process moves it into its own folder of spares,
and a new record is written into a spare and renamed into place - which
is also how a record is written atomically.

Only the extension's own small records pass through here, never the
registry's files.  A spare holds stale bytes until reused and is never
read as a record.  The folder belongs to one process: nothing is shared,
so nothing needs a lock.  Spares left by a process that died are removed
by :func:`clean` (recovery); if a live process's folder is removed under
it, it falls back to creating and unlinking files, and starts a new one.
"""

from __future__ import absolute_import, unicode_literals

import atexit
import errno
import itertools
import os
import shutil
import socket
import time
import uuid

from . import layout

#: Spares kept per process (each is a small file).
LIMIT = 64
#: Spare folders of other hosts, or of processes that cannot be asked,
#: are removed when untouched for this long.
STALE = 86400

_HOST = socket.gethostname().replace('-', '_') or 'host'
_pools = {}


class _Pool(object):
    def __init__(self, root):
        self.folder = os.path.join(root, layout.SPARES, '%s-%d-%s' % (
            _HOST, os.getpid(), uuid.uuid4().hex[:8]))
        self.free = []
        self.names = itertools.count()
        self.made = False

    def close(self):
        """At exit: the spares are of no use to anyone else."""
        del self.free[:]
        shutil.rmtree(self.folder, ignore_errors=True)


def _pool(root):
    key = (os.getpid(), root)
    pool = _pools.get(key)
    if pool is None:
        new = _Pool(root)
        pool = _pools.setdefault(key, new)
        if pool is new:
            atexit.register(pool.close)
    return pool


def take(root):
    """The path of a spare file to write a new record into (then rename
    it into place), or None when there is none."""
    try:
        return _pool(root).free.pop()
    except IndexError:
        return None


def lost(root):
    """A spare was not where it should be (the folder was cleaned): forget
    them all; the next :func:`give` starts the folder again."""
    pool = _pool(root)
    del pool.free[:]
    pool.made = False


def give(root, path):
    """Remove the file ``path``: keep it as a spare when there is room,
    else unlink it.  False if there was no such file."""
    pool = _pool(root)
    if len(pool.free) < LIMIT:
        spare = os.path.join(pool.folder, 's%d' % next(pool.names))
        for attempt in (0, 1):
            try:
                os.rename(path, spare)
                pool.free.append(spare)
                return True
            except OSError as e:
                if e.errno != errno.ENOENT:
                    break                   # EXDEV, EISDIR...: unlink
                if pool.made and os.path.isdir(pool.folder):
                    return False            # no such file
                if attempt:
                    break
                _makedirs(pool.folder)
                pool.made = True
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise


def refill(root, count):
    """Make spare files until the pool holds ``count`` (work done after a
    response: the requests then find spares).  A tag write and delete
    remove one record fewer than they write (a rewritten ledger entry
    replaces its old file), so without this the pool would run dry."""
    pool = _pool(root)
    while len(pool.free) < count:
        spare = os.path.join(pool.folder, 's%d' % next(pool.names))
        try:
            os.close(os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o644))
        except OSError as e:
            if e.errno != errno.ENOENT or pool.made:
                raise
            _makedirs(pool.folder)
            pool.made = True
            continue
        pool.free.append(spare)


def clean(root, now=None):
    """Recovery: remove the spare folders of processes that are gone (on
    this host: the process no longer exists; elsewhere: untouched for
    :data:`STALE` seconds).  Returns how many were removed."""
    now = time.time() if now is None else now
    base = os.path.join(root, layout.SPARES)
    try:
        names = os.listdir(base)
    except OSError:
        return 0
    mine = _pools.get((os.getpid(), root))
    removed = 0
    for name in names:
        folder = os.path.join(base, name)
        if mine is not None and folder == mine.folder:
            continue
        if not _gone(name, folder, now):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _gone(name, folder, now):
    parts = name.split('-')
    if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit():
        try:
            os.kill(int(parts[1]), 0)
        except OSError as e:
            if e.errno == errno.ESRCH:
                return True
    try:
        return now - os.stat(folder).st_mtime > STALE
    except OSError:
        return False


def _makedirs(folder):
    try:
        os.makedirs(folder)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
