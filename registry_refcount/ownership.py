"""Who owns what the extension makes on local disk.

A registry runs as an unprivileged user (``nobody``, ``docker-registry``)
that owns its storage folder, and its workers write the extension's
records there.  An operator may run ``registry-refcount`` as root: what
that process makes would then be root's, and a folder root made 0755 is
one the registry's workers can neither write a record into nor remove a
marker from - every later tag write or delete touching it fails, and
leaves its work to a recovery that fails the same way.  So, when this
process is root and the place it writes in belongs to someone else, what
it makes there - records, folders, lock files, the audit log - is given
that place's owner, and the folders that place's mode.

When this process is not root (the common case: the registry's own
workers) nothing is done beyond one ``geteuid``, asked once per process: a
process that is not root makes files its own user owns, which is the
storage's user, and could not give them away anyway.
"""

from __future__ import absolute_import, unicode_literals

import collections
import errno
import logging
import os
import stat

logger = logging.getLogger(__name__)

#: This process's effective uid, asked once (a process does not change
#: user while it serves; the tests set it to pretend).
_euid = []
_warned = []


def running_as_root():
    """Is this process root (where it could make files someone else's)?"""
    if not _euid:
        _euid.append(os.geteuid() if hasattr(os, 'geteuid') else None)
    return _euid[0] == 0


class Owner(collections.namedtuple('Owner', 'uid gid mode')):
    """The owner (and, for folders, the mode) to give what is made."""

    __slots__ = ()

    def give_file(self, fd):
        """Give the open file ``fd`` (just made) this owner."""
        _quietly(os.fchown, fd, self.uid, self.gid)

    def give_folder(self, path):
        """Give the folder ``path`` (just made) this owner and mode."""
        if _quietly(os.chown, path, self.uid, self.gid):
            _quietly(os.chmod, path, self.mode)


def of(path):
    """The owner to give what this process makes at or under ``path``:
    that of the nearest folder at or above ``path`` that exists (the
    storage root, for the extension's default places).  None when there
    is nothing to do: this process is not root, or that folder is its
    own."""
    if not running_as_root():
        return None
    while True:
        try:
            st = os.stat(path)
            break
        except OSError as e:
            parent = os.path.dirname(path)
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) or parent == path:
                return None
            path = parent
    if (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()):
        return None
    return Owner(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def _quietly(fn, *args):
    """``fn(*args)``; a refusal (a file system where root may not give
    files away, such as NFS with root squashed) is logged once and does
    not fail the write it follows: the record is there, only its owner
    is not the storage's."""
    try:
        fn(*args)
        return True
    except OSError as e:
        if not _warned:
            _warned.append(True)
            logger.warning('refcount: could not give %s to the storage '
                           'owner: %s', args[0], e)
        return False
