"""The names a tag request carries, checked before anything is written.

A tag or repository request the extension cannot follow safely is refused
(HTTP 400) in ``request_started``, before its intent or any marker is
written: a name the registry's own path code cannot store (not ASCII: the
registry itself would answer 500), a name that would share its files with
another (an empty namespace: ``repositories//repo`` is
``repositories/repo``), and a name whose files storage could not name
(too long).  A request let through then names files by exactly the
registry's rule (:func:`layout.quote`).
"""

from __future__ import absolute_import, unicode_literals

import os

from . import layout
from . import records

#: Bytes in a path component on the file systems a registry runs on
#: (ext4, xfs, btrfs), when the root cannot be asked; in a whole path.
NAME_MAX = 255
PATH_MAX = 4096
#: Bytes in an S3 object key (the registry's other storage).
KEY_MAX = 1024

_limits = {}

#: What :func:`refusal` says for a name the registry's own parsing fails
#: on (``parse_repository_name`` raises KeyError on a non-ASCII name).
_NOT_ASCII = 'the registry can store only ASCII names'


def request_key(store, endpoint, names):
    """``(key, intent)`` for a tag or repository request: the tag's key
    (for a repository request, a key of that repository) and what its
    intent records.  :class:`layout.InvalidName` if a name cannot be
    handled; the message says why."""
    tag = names['tag'] if endpoint != 'delete_repository' else 'x'
    key = layout.TagKey.from_request(names['namespace'], names['repository'],
                                     tag)
    layout.check_length(key, **limits(store))
    if endpoint == 'delete_repository':
        return key, {'repository': '%s/%s' % (key.namespace,
                                              key.repository)}
    return key, {'tag': str(key)}


def refusal(error):
    """The client's message for a request refused for its names."""
    if isinstance(error, layout.InvalidName):
        reason = '%s' % (error,)
    else:
        reason = _NOT_ASCII
    return 'Invalid repository or tag name: %s' % reason


def limits(store):
    """:func:`layout.check_length`'s limits for this storage: on local
    storage, its file system's NAME_MAX and PATH_MAX; on object storage,
    S3's key length (components have no limit of their own there).
    Asked once per storage root."""
    root = records.local_root(store)
    if root is None:
        prefix = (getattr(store, '_root_path', None) or '').strip('/')
        return dict(name_max=None, path_max=KEY_MAX,
                    prefix=len(prefix.encode('utf-8')) + 1)
    try:
        return _limits[root]
    except KeyError:
        pass
    found = _limits[root] = dict(
        name_max=_pathconf(root, str('PC_NAME_MAX'), NAME_MAX),
        path_max=_pathconf(root, str('PC_PATH_MAX'), PATH_MAX),
        prefix=len(layout.text(root).encode('utf-8')) + 1)
    return found


def _pathconf(root, name, default):
    try:
        return os.pathconf(root, name)
    except (OSError, ValueError, AttributeError):
        return default
