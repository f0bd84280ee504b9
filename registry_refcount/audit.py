"""The audit log: one line per image deleted (or that would have been).

Each deletion is logged to the registry's log and, when configured, to a
rotating file, as ``time image reason bytes mode`` so that an operator can
always answer "where did this image go, and why?".
"""

from __future__ import absolute_import, unicode_literals

import json
import logging
import logging.handlers
import os
import time

logger = logging.getLogger('registry_refcount.audit')
_file_logger = None


def open_file(path, max_bytes=10 * 1024 * 1024, backups=5):
    """Also append audit lines, as JSON, to a rotating file at ``path``."""
    global _file_logger
    if _file_logger is not None or not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups)
    handler.setFormatter(logging.Formatter('%(message)s'))
    file_logger = logging.getLogger('registry_refcount.audit.file')
    file_logger.propagate = False
    file_logger.setLevel(logging.INFO)
    file_logger.addHandler(handler)
    _file_logger = file_logger


def deleted(image_id, reason, size, dry_run=False, by='online'):
    """Record one deletion; ``dry_run`` records one that was not made."""
    mode = 'would delete' if dry_run else 'deleted'
    logger.warning('refcount: %s image %s (%s bytes in layer) by %s: %s',
                   mode, image_id, size if size is not None else '?', by,
                   reason)
    if _file_logger is not None:
        _file_logger.info(json.dumps({
            'time': time.time(), 'image': image_id, 'reason': reason,
            'bytes': size, 'dry_run': bool(dry_run), 'by': by},
            sort_keys=True))
