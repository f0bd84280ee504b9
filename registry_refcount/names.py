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

from . import layout
from . import records

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
    """:func:`layout.check_length`'s limits for this storage
    (:meth:`.backends.Backend.limits`)."""
    return records.backend(store).limits()
