"""Where things live in the registry's storage, and which names are valid.

Every path the extension reads or writes is built here, from ids that have
passed the registry's own id rule and tag keys in the registry's own quoted
form.  Nothing else in the package formats a storage path, so containment
(S2: only ``images/<valid id>/`` and ``extensions/refcount/``) is checked in
one place.
"""

from __future__ import absolute_import, unicode_literals

import binascii
import hashlib
import os
import re
import uuid

try:  # pragma: no cover - import location differs between 2 and 3
    from urllib import unquote_plus
except ImportError:  # pragma: no cover
    from urllib.parse import unquote_plus

#: The registry's id rule (``docker_registry.toolkit._re_hex_image_id``),
#: anchored with ``\Z``: the registry's ``$`` also matches before a final
#: newline, and its driver stores such an id as ``<id>%0A`` - another
#: folder than the one the id without the newline names.
ID_RE = re.compile(r'\A(?:[a-f0-9]{16}|[a-f0-9]{64})\Z')
#: Intent ids are ours: 32 hex digits (uuid4).
INTENT_RE = re.compile(r'\A[a-f0-9]{32}\Z')
#: Deleters' and holders' tokens: the same form.
TOKEN_RE = INTENT_RE
#: A tag history entry's or a run record's name: the time in
#: milliseconds, a token (listing order is time order).
HISTORY_RE = re.compile(r'\A[0-9]{13}-[a-f0-9]{32}\Z')

IMAGES = 'images'
REPOSITORIES = 'repositories'
PREFIX = 'extensions/refcount'
STATE = PREFIX + '/state'
LEDGER = PREFIX + '/tags'
INTENTS = PREFIX + '/intents'
JOURNAL = PREFIX + '/deleting'
CANDIDATES = PREFIX + '/candidates'
CLOCK = PREFIX + '/clock'
LOCKSPACE = PREFIX + '/lockspace'
QUARANTINE = PREFIX + '/quarantine'
AUDIT = PREFIX + '/audit'
SPARES = PREFIX + '/spares'
#: Images that lost their last referrer online, waiting out the undo
#: window (one record per image), and the tag changes of that window.
TRASH = PREFIX + '/trash'
HISTORY = PREFIX + '/history'
#: One record per run of gc, recover, purge... (the run history).
RUNS = PREFIX + '/runs'
#: The workers' counters (:mod:`.tally`).
COUNTERS = PREFIX + '/counters'
#: Where the per-tag-list extension (docker-registry PR #606) kept its
#: version record - a *file* at ``PREFIX`` - is moved aside to.
PREDECESSOR_INFO_ASIDE = PREFIX + '.pr606'

REFERENCES = '_references'
#: An image's per-tag-list file of PR #606 (a *file* ``_references``),
#: moved aside to make room for the folder of markers.  Counts as a
#: reference until ``rebuild`` converts it.
LEGACY_ASIDE = '_references.legacy'
TOMBSTONE = '_deleting'
# The registry's own mark of a push not finished: written before the json,
# removed once the layer's checksum is in.
IN_PROGRESS = '_inprogress'

TAG_PREFIX = 'tag-'
#: The extension's temporary files (a record written on local storage,
#: then renamed into place) start with this: '%' followed by a letter that
#: is no hex digit, which the registry's quoting never writes (it spells
#: '%' as '%25'), so no stored tag or repository name starts with it -
#: where '.tmp-', the earlier prefix, is a tag name like any other.
TEMP_PREFIX = '%tmp-'
CHILD_PREFIX = 'child-'
PENDING_PREFIX = 'pending-'
HOLD_PREFIX = 'hold-'


class InvalidName(ValueError):
    """An id, tag or marker name that the extension refuses to act on."""


def text(value):
    """Return ``value`` as text (drivers give bytes on Python 3)."""
    if isinstance(value, bytes):
        return value.decode('utf-8')
    return value


def valid_id(value):
    """True if ``value`` is an image id the registry itself would accept."""
    try:
        return bool(ID_RE.match(text(value)))
    except (TypeError, UnicodeDecodeError):
        return False


def check_id(value, what='image id'):
    """Return ``value`` as text if it is a valid image id, else raise.
    (Every path of an image's files asks: the ids seen lately are
    remembered.)"""
    try:
        return _checked[value]
    except (KeyError, TypeError):
        pass
    if not valid_id(value):
        raise InvalidName('invalid %s: %r' % (what, value))
    if len(_checked) >= 1024:
        _checked.clear()
    result = _checked[value] = text(value)
    return result


_checked = {}


def quote(value):
    """A name as the registry's driver code puts it in a path: its own
    ``docker_registry.core.driver.check`` where that runs (Python 2), else
    the same rule.  :class:`InvalidName` for a name the registry cannot
    store (not ASCII: its ``check`` fails).  (Every tag request quotes its
    names: the names seen lately are remembered.)"""
    try:
        return _quoted[value]
    except (KeyError, TypeError):
        pass
    try:
        result = text(_registry_check(value))
    except UnicodeError:
        raise InvalidName('%r: the registry can store only ASCII names'
                          % (value,))
    if len(_quoted) >= 1024:
        _quoted.clear()
    _quoted[value] = result
    return result


_quoted = {}

#: Characters Python 2's ``quote_plus`` leaves alone (Python 3.7's also
#: keeps '~'; the registry runs on Python 2).
_SAFE = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
                  '0123456789_.-')


def check_like_the_registry(value):
    """``docker_registry.core.driver.check`` for Pythons it does not run
    on (it calls Python 2's ``urllib.quote_plus``): ``str()`` (ASCII only
    on Python 2: UnicodeError otherwise), ``..`` and ``.`` spelt
    ``%2E%2E`` and ``%2E``, then Python 2's ``quote_plus`` - which quotes
    those ``%`` again: ``..`` is stored as ``%252E%252E``."""
    name = text(value)
    name.encode('ascii')
    if name == '..':
        name = '%2E%2E'
    elif name == '.':
        name = '%2E'
    return ''.join(c if c in _SAFE else '+' if c == ' ' else
                   '%%%02X' % ord(c) for c in name)


def _registry_quoting():
    """The registry's own ``check`` if it runs here, else our copy of it
    (tests/storage/test_names.py holds the two equal on Python 2)."""
    try:
        from docker_registry.core.driver import check
        check('..')
    except Exception:   # Python 3, or the registry is not installed
        return check_like_the_registry
    return check


_registry_check = _registry_quoting()


class TagKey(tuple):
    """A tag as storage names it: quoted namespace, repository and tag.

    The registry quotes each part before building a path, so the quoted
    parts never contain ``/`` or ``:`` and ``ns/repo:tag`` is unambiguous.
    """

    __slots__ = ()

    def __new__(cls, namespace, repository, tag):
        parts = (text(namespace), text(repository), text(tag))
        for p in parts:
            if not p or '/' in p or ':' in p or p in ('.', '..'):
                raise InvalidName('invalid tag part: %r' % (p,))
        return tuple.__new__(cls, parts)

    @classmethod
    def from_request(cls, namespace, repository, tag):
        """From the names a view or signal sees (before the driver quotes)."""
        return cls(quote(namespace), quote(repository), quote(tag))

    @classmethod
    def parse(cls, value):
        """From ``ns/repo:tag`` (a marker's content, an intent)."""
        value = text(value)
        try:
            repo, tag = value.rsplit(':', 1)
            namespace, repository = repo.split('/', 1)
        except ValueError:
            raise InvalidName('invalid tag reference: %r' % (value,))
        return cls(namespace, repository, tag)

    namespace = property(lambda self: self[0])
    repository = property(lambda self: self[1])
    tag = property(lambda self: self[2])

    def __str__(self):
        return '%s/%s:%s' % self

    @property
    def display(self):
        return '%s/%s:%s' % tuple(unquote_plus(p) for p in self)

    @property
    def marker(self):
        digest = hashlib.sha256(str(self).encode('utf-8')).hexdigest()
        return TAG_PREFIX + digest


# -- registry paths (read only, except images/<id>/ of a deleted image) ----

def image_dir(image_id):
    return '%s/%s' % (IMAGES, check_id(image_id))


def image_file(image_id, name):
    if not name or '/' in name or name in ('.', '..'):
        raise InvalidName('invalid file name in image folder: %r' % (name,))
    return '%s/%s/%s' % (IMAGES, check_id(image_id), name)


def repository_dir(namespace, repository):
    return '%s/%s/%s' % (REPOSITORIES, namespace, repository)


def tag_file(key):
    return '%s/tag_%s' % (repository_dir(key[0], key[1]), key[2])


def tag_json_file(key):
    """The registry's metadata of a tag: the longest name it stores for a
    tag."""
    return '%s/tag%s_json' % (repository_dir(key[0], key[1]), key[2])


def index_images_file(namespace, repository):
    return '%s/_index_images' % repository_dir(namespace, repository)


def check_length(key, name_max=None, path_max=None, prefix=0):
    """Raise :class:`InvalidName` if storage could not name a file of this
    tag: the registry's longest (``tag<tag>_json``) or the ledger entry.
    ``name_max``: bytes in a path component (a local file system's
    NAME_MAX); ``path_max``: bytes in a whole path, ``prefix`` bytes
    (the storage root) included.  (A reconcile of such a tag could only
    fail, and its intent would pin the image for ever.)"""
    for path in (tag_json_file(key), ledger(key)):
        size = len(path.encode('utf-8'))
        if path_max is not None and prefix + size > path_max:
            raise InvalidName('name too long: the path %s... would be %d '
                              'bytes, storage takes %d'
                              % (path[:60], prefix + size, path_max))
        for part in path.split('/'):
            if name_max is not None and len(part.encode('utf-8')) > name_max:
                raise InvalidName('name too long: %s... would be %d bytes, '
                                  'the file system takes %d' % (
                                      part[:40], len(part.encode('utf-8')),
                                      name_max))


# -- the extension's own records -------------------------------------------

def references_dir(image_id):
    return image_file(image_id, REFERENCES)


def legacy_aside(image_id):
    return image_file(image_id, LEGACY_ASIDE)


def marker_path(image_id, marker):
    check_marker(marker)
    return '%s/%s' % (references_dir(image_id), marker)


def tombstone(image_id, token=None):
    """A deleter's tombstone: one per deletion under way (``token``), so
    that a deletion that cancels removes its own and never another's.
    (``token`` None: the single tombstone of earlier versions.)"""
    return image_file(image_id, _with_token(TOMBSTONE, token))


def registry_entry(name):
    """Is ``name``, in an image's folder, the registry's (json, layer,
    ancestry, ``_checksum``, ``_inprogress``...), not the extension's
    (references, tombstones, a record's temporary file)?"""
    return name not in (REFERENCES, LEGACY_ASIDE) and \
        tombstone_token(name) is None and not name.startswith(TEMP_PREFIX)


def tombstone_token(name):
    """The deleter token of a tombstone's file name, '' for the single
    tombstone of earlier versions, None if ``name`` is no tombstone."""
    if name == TOMBSTONE:
        return ''
    if name.startswith(TOMBSTONE + '-') and TOKEN_RE.match(
            name[len(TOMBSTONE) + 1:]):
        return name[len(TOMBSTONE) + 1:]
    return None


def _with_token(name, token):
    return name if token is None else '%s-%s' % (name, check_token(token))


def check_token(token):
    """A deleter's or holder's token as text, if valid, else raise."""
    try:
        if TOKEN_RE.match(text(token)):
            return text(token)
    except (TypeError, UnicodeDecodeError):
        pass
    raise InvalidName('invalid token: %r' % (token,))


def ledger_dir(namespace, repository):
    return '%s/%s/%s' % (LEDGER, namespace, repository)


def ledger(key):
    return '%s/%s' % (ledger_dir(key[0], key[1]), key[2])


def trash_entry(image_id):
    return '%s/%s' % (TRASH, check_id(image_id))


def history_dir(namespace, repository):
    return '%s/%s/%s' % (HISTORY, namespace, repository)


def history_entry(namespace, repository, name):
    """One tag change: ``name`` is ``<milliseconds>-<token>`` (listing
    order is time order)."""
    return _stamped(history_dir(namespace, repository), name,
                    'history entry')


def run_entry(name):
    """One run's record: ``name`` is ``<milliseconds>-<token>``."""
    return _stamped(RUNS, name, 'run record')


def counter_entry(name):
    """The workers' counters: ``total``, or one ``<milliseconds>-<token>``
    record a worker added."""
    if text(name) == 'total':
        return '%s/total' % COUNTERS
    return _stamped(COUNTERS, name, 'counters record')


def _stamped(folder, name, what):
    if not HISTORY_RE.match(text(name)):
        raise InvalidName('invalid %s: %r' % (what, name))
    return '%s/%s' % (folder, name)


def intent(intent_id):
    if not INTENT_RE.match(text(intent_id)):
        raise InvalidName('invalid intent id: %r' % (intent_id,))
    return '%s/%s' % (INTENTS, intent_id)


def quarantine_entry(path):
    """Where an unreadable document is remembered until recovery."""
    return '%s/%s' % (QUARANTINE, hashlib.sha1(
        text(path).encode('utf-8')).hexdigest())


def journal(image_id, token=None):
    """A deletion's journal entry (one per deleter, as its tombstone)."""
    return '%s/%s' % (JOURNAL, _with_token(check_id(image_id), token))


def parse_journal(name):
    """``(image id, token or None)`` of a journal entry's name."""
    name = text(name)
    image_id, _, token = name.partition('-')
    if not valid_id(image_id) or (_ and not TOKEN_RE.match(token)):
        raise InvalidName('invalid journal entry: %r' % (name,))
    return image_id, (token if _ else None)


def child_marker(child_id):
    return CHILD_PREFIX + check_id(child_id, 'child id')


def pending_marker(intent_id):
    intent(intent_id)  # validates
    return PENDING_PREFIX + intent_id


def hold_marker(token):
    """A marker that keeps an image alive while a reconcile takes a tag's
    marker off it and reads the tag file again."""
    return HOLD_PREFIX + check_token(token)


def check_marker(marker):
    """Validate a marker name and return ``(kind, value)``.

    ``kind`` is ``tag``, ``child``, ``pending`` or ``hold``; ``value`` is
    the tag digest, the child id, the intent id or the holder's token.
    """
    marker = text(marker)
    for kind, prefix, rule in (('tag', TAG_PREFIX, _DIGEST_RE),
                               ('child', CHILD_PREFIX, ID_RE),
                               ('pending', PENDING_PREFIX, INTENT_RE),
                               ('hold', HOLD_PREFIX, TOKEN_RE)):
        if marker.startswith(prefix):
            value = marker[len(prefix):]
            if rule.match(value):
                return kind, value
    raise InvalidName('invalid marker name: %r' % (marker,))


_DIGEST_RE = re.compile(r'\A[a-f0-9]{64}\Z')


def temporary_name():
    """A new temporary file's name (see :data:`TEMP_PREFIX`)."""
    return TEMP_PREFIX + uuid.uuid4().hex


def is_temporary(name):
    """Is this listed name a temporary file, not a record?  The test for
    folders of tag names (the ledger), where a name may start with '.'."""
    return text(name).startswith(TEMP_PREFIX)


def new_token():
    """32 random hex digits (an intent id, a deleter's token), as
    ``uuid4().hex`` but without building the UUID object (one per tag
    request)."""
    return text(binascii.hexlify(os.urandom(16)))


def is_scratch(name):
    """Is this listed name no record, in a folder of ids or digests
    (intents, markers, the quarantine)?  A temporary file, of this
    version or of an earlier one ('.tmp-...', left by a crash): no id,
    intent id or marker starts with '.' or '%'."""
    return is_temporary(name) or text(name).startswith('.')


def basename(path):
    """Last component of a driver listing entry."""
    return text(path).rstrip('/').rsplit('/', 1)[-1]
