"""What must reach the disk before what, on local storage.

A write the kernel acknowledged may still be lost by a power loss (not by
``kill -9``: the page cache survives a process).  A file renamed or linked
into place may come back empty; a name made or removed may come back
undone, in any order with the others.  The protocols therefore
make durable, at the few points where a later step relies on an earlier
one (docs/design.rst, *Power loss*), exactly:

* :func:`data`: a record's bytes, before its name is made (``fdatasync``:
  the size and the blocks, not the times);
* :func:`names`: the folders holding names made or removed, before the
  step that relies on them (``fsync`` of the folder, and of the parent of
  a folder made meanwhile, :func:`made`).

Both wait in the kernel for the disk; under gevent they run in the hub's
thread pool (:func:`.background.off_hub`), so that a worker's other
requests are served meanwhile.  :data:`counts` counts them (tests, bench).
Object storage makes a PUT durable before it answers: nothing to do there.
"""

from __future__ import absolute_import, unicode_literals

import collections
import errno
import os

from . import background

#: Syncs done by this process, by kind (``data``, ``folder``).
counts = collections.Counter()
#: Off only for the benchmark's A/B runs.
enabled = True
_made = set()


def _fdatasync(fd):
    getattr(os, 'fdatasync', os.fsync)(fd)


def data(fd):
    """Make the bytes written to the open file ``fd`` durable."""
    if enabled:
        counts['data'] += 1
        background.off_hub(_fdatasync, fd)


def fill(fd, content, owner=None, sync=True):
    """Write ``content`` to the file just made at ``fd``, given ``owner``
    first (:func:`.ownership.of`; None: nothing to give), then durable
    when ``sync`` (:func:`data`); ``fd`` is closed."""
    try:
        if owner is not None:
            owner.give_file(fd)
        os.write(fd, content)
        if sync:
            data(fd)
    finally:
        os.close(fd)


def made(folder):
    """Note that ``folder`` was made: its name is durable only once its
    parent is synced (:func:`names` does it)."""
    _made.add(folder)


def make_folders(folder, owner=None):
    """Make ``folder`` and its missing parents (there already is fine),
    each noted as made (:func:`made`) and, with an ``owner``
    (:func:`.ownership.of`), given its owner and mode, parents first."""
    missing = [folder]
    while True:
        parent = os.path.dirname(missing[-1])
        if parent in ('', missing[-1]) or os.path.isdir(parent):
            break
        missing.append(parent)
    try:
        os.makedirs(folder)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
        owner = None    # made by another process, which gives its own
    for path in missing:
        made(path)
    if owner is not None:
        for path in reversed(missing):
            owner.give_folder(path)


def names(*folders):
    """Make durable every name made or removed in ``folders`` (absolute
    paths; repeats count once), and the names of those folders if they
    were made since (:func:`made`)."""
    if not enabled:
        return
    todo = []
    for folder in folders:
        while folder not in todo:
            todo.append(folder)
            if folder not in _made:
                break
            _made.discard(folder)
            folder = os.path.dirname(folder)
    counts["folder"] += len(todo)
    background.off_hub(_sync_folders, todo)


def _sync_folders(folders):
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue        # gone meanwhile: nothing of it to keep
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
