"""The audit log: one record per image deleted (or that would have been).

Each deletion goes to the registry's log and, when a file is configured,
appended to it as one JSON line ``{time, image, reason, bytes, dry_run,
by}``, so that an operator can always answer "where did this image go, and
why?".  Every gunicorn worker and the CLI append to the same file: each
line is one ``O_APPEND`` write, and rotation (``max_bytes``, ``backups``
kept) happens under an ``fcntl`` lock, re-checked once held, so concurrent
writers neither lose lines nor rotate twice.
"""

from __future__ import absolute_import, unicode_literals

import json
import logging
import os
import time

from . import durable
from . import ownership
from . import tally

logger = logging.getLogger('registry_refcount.audit')
_file = {}


def open_file(path, max_bytes=10 * 1024 * 1024, backups=5):
    """Also append audit lines, as JSON, to ``path``."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    # a root process gives the folder, the log and its rotation lock the
    # owner of the nearest folder above (the storage root, by default):
    # else the registry's workers could no longer append to it
    owner = ownership.of(folder)
    durable.make_folders(folder, owner)
    _file.update(path=path, max_bytes=max_bytes, backups=backups,
                 owner=owner)


_counted = [0]


def count():
    """Deletions this process has recorded so far."""
    return _counted[0]


def deleted(image_id, reason, size, dry_run=False, by='online'):
    """Record one deletion; ``dry_run`` records one that was not made."""
    mode = 'would delete' if dry_run else 'deleted'
    if not dry_run:
        _counted[0] += 1
        if by == 'online':          # (the commands' are in the run history)
            tally.add('deleted_online')
            tally.add('freed_bytes_online', size or 0)
    # routine work: INFO (the audit file keeps every one whatever the
    # log level; an operator lists them with ``--verbose``)
    logger.info('refcount: %s image %s (%s bytes in layer) by %s: %s',
                mode, image_id, size if size is not None else '?', by,
                reason)
    _write({'image': image_id, 'reason': reason, 'bytes': size,
            'dry_run': bool(dry_run), 'by': by})


def event(kind, image_id, reason, by='online'):
    """Record a step of the undo window other than the purge (which is a
    deletion): ``trashed`` (an image lost its last referrer and waits),
    ``rescued`` (a reference came back before the purge), ``restored``
    (a tag put back on it)."""
    logger.info('refcount: %s image %s by %s: %s', kind, image_id, by,
                reason)
    _write({'event': kind, 'image': image_id, 'reason': reason, 'by': by})


def _write(fields):
    if not _file:
        return
    line = json.dumps(dict(fields, time=time.time())) + '\n'
    try:
        _append(line.encode('utf-8'))
    except (IOError, OSError) as e:
        logger.error('refcount: could not write the audit log %s: %s',
                     _file['path'], e)


def _append(data):
    path = _file['path']
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _file['owner'] is not None:
            _file['owner'].give_file(fd)
        os.write(fd, data)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > _file['max_bytes']:
        _rotate(path)


def _rotate(path):
    import fcntl
    fd = os.open(path + '.lock', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _file['owner'] is not None:
            _file['owner'].give_file(fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.getsize(path) <= _file['max_bytes']:
                return                  # another writer rotated it
        except OSError:
            return
        for n in range(_file['backups'] - 1, 0, -1):
            older = '%s.%d' % (path, n)
            if os.path.exists(older):
                os.rename(older, '%s.%d' % (path, n + 1))
        os.rename(path, path + '.1')
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
