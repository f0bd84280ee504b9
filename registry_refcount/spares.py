"""Spare files: the extension's removed records, reused as new ones.

On local storage, creating a file is the costly metadata operation: about
0.2 ms of system time on the hosts measured in bench/NOTES.md, against a
few microseconds for a rename, a link or an unlink.  A tag write and a tag
delete create and remove about as many small records as each other
(intents, markers, ledger entries, tombstones, journal entries), so instead
of unlinking a record this process moves it into its own folder of spares,
and a new record is written into a spare and renamed into place - which is
also how a record is written atomically.  A record replaced by a rename
(a ledger entry rewritten) is kept too: it is hard-linked into the folder
first, and kept only if nothing else links it once the rename is done.

Only the extension's own small records pass through here, never the
registry's files.  A spare holds stale bytes until reused and is never
read as a record.  The folder belongs to one process: nothing is shared,
so nothing needs a lock.  A new process adopts the folder of one that
exited on this host (gunicorn recycles its workers every 100 requests),
and :func:`clean` (recovery) removes folders nobody adopted.  A folder is
named by its process's identity (:mod:`.owner`: the host's name, boot and
pid namespace, the pid and the process's start time), and whether that
process is gone is :func:`.owner.alive`'s answer, never a host name and a
pid alone: two containers that share a host name but not a pid namespace
would each take the other's live folder for a dead one's, and two writers
would then share one inode.  If a live
process's folder is removed under it, it falls back to creating and
unlinking files, and starts a new one.
"""

from __future__ import absolute_import, unicode_literals

import errno
import hashlib
import itertools
import os
import shutil
import stat
import time
import uuid

from . import layout
from . import owner

#: Spares kept per process (each is a small file).
LIMIT = 64
#: Spare folders of other hosts, or of processes that cannot be asked,
#: are removed when untouched for this long; those of a process of this
#: host that is gone, when nobody adopted them in this long.
STALE = 86400
UNADOPTED = 600

_pools = {}


def _host_tag(host):
    """A host identity (:func:`.owner.host`: it holds ``/`` and ``:``) as
    a short file name part."""
    return hashlib.sha1(host.encode('utf-8')).hexdigest()[:16]


def folder_name(me, token):
    """The spare folder's name of the process ``me`` (:func:`.owner.me`):
    ``<host>-<pid>-<start>-<token>``."""
    return '%s-%d-%s-%s' % (_host_tag(me['host']), me['pid'],
                            me['start'] or 'x', token)


class _Pool(object):
    def __init__(self, root):
        self.base = os.path.join(root, layout.SPARES)
        self.token = uuid.uuid4().hex[:8]
        self.folder = os.path.join(self.base, folder_name(owner.me(),
                                                          self.token))
        self.free = []
        self.folders = []
        self.names = itertools.count()
        self.made = self._adopt()

    def name(self, kind='s'):
        """A new name in the folder: never one an adopted spare has."""
        return '%s/%s%d-%s' % (self.folder, kind, next(self.names),
                               self.token)

    def _adopt(self):
        """Take over the folder of a process of this host that is gone."""
        try:
            names = os.listdir(self.base)
        except OSError:
            return False
        for name in names:
            if not _dead_here(name):
                continue
            try:
                os.rename(os.path.join(self.base, name), self.folder)
            except OSError:
                continue              # another process adopted it
            for entry in os.listdir(self.folder):
                self._take_over(os.path.join(self.folder, entry))
            return True
        return False

    def _take_over(self, path):
        """Keep an adopted spare if it is ours alone: a file that nothing
        else links (a process killed between a link and its rename leaves
        a link to a live record), an empty folder."""
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if len(self.folders) < LIMIT and not os.listdir(path):
                    self.folders.append(path)
                    return
                shutil.rmtree(path, ignore_errors=True)
            elif (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and
                    len(self.free) < LIMIT):
                self.free.append(path)
            else:
                os.unlink(path)
        except OSError:
            pass


def _pool(root):
    key = (os.getpid(), root)
    pool = _pools.get(key)
    if pool is None:
        pool = _pools.setdefault(key, _Pool(root))
    return pool


def take(root):
    """The path of a spare file to write a new record into (then rename
    it into place), or None when there is none."""
    try:
        return _pool(root).free.pop()
    except IndexError:
        return None


def hold(root, target):
    """Before ``target`` is replaced by a rename: a link to the file it
    holds now (None if none, or no room), for :func:`release`."""
    pool = _pool(root)
    if len(pool.free) >= LIMIT or not pool.made:
        return None
    spare = pool.name()
    try:
        os.link(target, spare)
    except OSError:
        return None
    return spare


def release(root, spare, replaced):
    """After the rename: keep the replaced file as a spare if the rename
    happened (``replaced``) and nothing else links it any more."""
    if spare is None:
        return
    try:
        if replaced and os.lstat(spare).st_nlink == 1:
            _pool(root).free.append(spare)
            return
        os.unlink(spare)
    except OSError:
        pass


def lost(root):
    """A spare was not where it should be (the folder was cleaned): forget
    them all; the next :func:`give` starts the folder again."""
    pool = _pool(root)
    del pool.free[:]
    del pool.folders[:]
    pool.made = False


def give(root, path):
    """Remove the file ``path``: keep it as a spare when there is room,
    else unlink it.  False if there was no such file."""
    pool = _pool(root)
    if len(pool.free) < LIMIT:
        spare = pool.name()
        try:
            if not _move_in(pool, path, spare):
                return False                # no such file
            if os.lstat(spare).st_nlink == 1:
                pool.free.append(spare)
            else:
                os.unlink(spare)            # another name of it lives on
            return True
        except OSError:
            pass                            # EXDEV, EISDIR...: unlink
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise


def _move_in(pool, path, spare):
    """Rename ``path`` to ``spare``, in the pool's folder (made again if
    it went).  False if there is no ``path``."""
    for attempt in (0, 1):
        try:
            os.rename(path, spare)
            return True
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            if attempt or (pool.made and os.path.isdir(pool.folder)):
                return False
            makedirs(pool.folder)
            pool.made = True


def place_folder(root, folder):
    """Make the missing folder ``folder`` (an image's ``_references/``,
    most often) by renaming a spare empty folder into place.  False if
    there is none or its parent is missing too: the caller makes it."""
    pool = _pool(root)
    while pool.folders:
        spare = pool.folders.pop()
        try:
            if os.listdir(spare):     # see records.retire_references
                shutil.rmtree(spare, ignore_errors=True)
                continue
            os.rename(spare, folder)
            return True
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                pool.folders.append(spare)      # made meanwhile: fine
                return True
            if os.path.isdir(spare):
                pool.folders.append(spare)
            else:
                lost(root)
            return False
    return False


def keep_folder(root, folder):
    """Remove an image's marker folder, found empty: keep it as a spare
    folder when there is room, else ``rmdir``.  Absent is fine."""
    pool = _pool(root)
    if len(pool.folders) < LIMIT // 2:
        spare = pool.name('d')
        try:
            if _move_in(pool, folder, spare):
                pool.folders.append(spare)
            return
        except OSError:
            pass
    try:
        os.rmdir(folder)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise


def refill(root, count):
    """Make spare files until the pool holds ``count``, and half as many
    spare folders (work done after a response, so that requests find
    them).  A tag write and delete remove one record fewer than they write
    (a rewritten ledger entry replaces its old file), and an image that
    stays keeps its ``_references/`` (a deleted one gives it back,
    :func:`keep_folder`): without this the pool would run dry."""
    pool = _pool(root)
    while len(pool.free) < count or len(pool.folders) < count // 2:
        spare = pool.name('s' if len(pool.free) < count else 'd')
        try:
            if len(pool.free) < count:
                os.close(os.open(spare, os.O_WRONLY | os.O_CREAT |
                                 os.O_EXCL, 0o644))
                pool.free.append(spare)
            else:
                os.mkdir(spare)
                pool.folders.append(spare)
        except OSError as e:
            if e.errno != errno.ENOENT or pool.made:
                raise
            makedirs(pool.folder)
            pool.made = True


def clean(root, now=None):
    """Recovery: remove the spare folders nobody adopted (of a process of
    this host that is gone: untouched for :data:`UNADOPTED` seconds; any
    other: for :data:`STALE` seconds).  Returns how many were removed."""
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


def _dead_here(name):
    """Is ``name`` the folder of a process of this host (same name, boot
    and pid namespace) that is gone?  False where that cannot be told: a
    folder of another host, of an earlier version (named by host name and
    pid only), or of a process whose start time was unknown."""
    parts = name.split('-')
    if len(parts) != 4 or not parts[1].isdigit() or parts[2] == 'x':
        return False
    me = owner.me()
    if parts[0] != _host_tag(me['host']):
        return False
    return owner.alive({'host': me['host'], 'pid': int(parts[1]),
                        'start': parts[2]}) is False


def _gone(name, folder, now):
    try:
        age = now - os.stat(folder).st_mtime
    except OSError:
        return False
    return age > (UNADOPTED if _dead_here(name) else STALE)


def makedirs(folder):
    """A folder and its parents; one that exists already is fine."""
    try:
        os.makedirs(folder)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
