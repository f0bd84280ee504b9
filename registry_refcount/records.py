"""The record format and its atomic I/O.

Two kinds of record:

* **markers** (``images/<id>/_references/<name>``): one small object per
  referrer, written like a document.  Their *name* is the
  reference; their content is a check.  A marker whose content cannot be
  read still counts as a reference (wrong in the safe direction).
* **documents** (the ledger, intents, the deletion journal, the state):
  JSON with a format version, written atomically - a temporary file and a
  rename on local storage, one PUT on object storage.  An unreadable one is
  *unknown*: :class:`Unreadable` is raised, the caller keeps the data, and
  recovery rebuilds the document from the truth.

How each is written, read and removed on each kind of storage is the
business of :mod:`.backends`, chosen once per driver object: nothing
above this module asks which storage it runs on.

The registry's Redis LRU cache (``cache_lru``) wraps the driver's
``get_content``, ``put_content`` and ``remove``, per path.  Its ``set``
writes Redis *before* storage and skips the storage write when Redis
already holds the same bytes, so a PUT that failed once is "done" by its
retry without reaching storage; its ``get`` refills Redis with what a
reader read, which may be a value replaced or a file removed meanwhile.
So every record, and every read of the truth (tag files, json, ancestry),
goes to storage through the driver's own methods with the cache's
wrappers peeled off (:func:`.backends.direct`); a file of the registry's
that the extension removes or rewrites, or reads to act on, has its cache
entry dropped (:func:`forget`), so the registry serves what the extension
saw.
"""

from __future__ import absolute_import, unicode_literals

import errno
import json
import logging
import time

from docker_registry.core import exceptions
from docker_registry.core import lru

from . import backends
from . import layout

FORMAT = 1
logger = logging.getLogger(__name__)
_reported = set()


# -- around the registry's LRU cache -----------------------------------------

def forget(path):
    """Drop the registry's cache entry of ``path``, if it caches: its next
    read of the file comes from storage.  Raises if Redis cannot be told
    (a deletion is then left to recovery, which removes and forgets the
    files again: an entry left behind would be served once Redis is back)."""
    if lru.redis_conn is not None:
        lru.redis_conn.delete(lru.cache_key(path))


def before_registry_write(path):
    """The registry is about to write ``path`` through its cache, which
    skips the storage write when it already holds the same value - as it
    does after a write that reached Redis and then failed on storage: the
    client's retry answers 200 while storage keeps the old value, and the
    extension (which follows storage) would release the image the client
    was told is tagged.  Dropping the entry first makes the registry write
    storage.  (Best effort: a cache that cannot be told is not one that
    can skip a write either.)"""
    _forget_quietly(path)


def _forget_quietly(path):
    """:func:`forget` after a read: a cache that cannot be told keeps what
    it holds, and the read stands (it came from storage)."""
    try:
        forget(path)
    except Exception as e:
        logger.warning('refcount: could not drop the cache entry of %s: %s',
                       path, e)


class Unreadable(Exception):
    """A document exists but cannot be trusted (corrupt, truncated, empty,
    wrong version).  It is quarantined: reported once, never acted on."""

    def __init__(self, path, reason):
        Exception.__init__(self, '%s: %s' % (path, reason))
        self.path = path
        self.reason = reason


def quarantine(path, reason):
    """Log an unreadable record once per process and return the error."""
    err = Unreadable(path, reason)
    if path not in _reported:
        _reported.add(path)
        logger.error('refcount: quarantined unreadable record %s (%s); '
                     'nothing will be deleted on its word, recovery or '
                     '`registry-refcount verify --repair` rebuilds it',
                     path, reason)
    return err


def backend(store):
    """The back end of ``store`` (:func:`.backends.backend`)."""
    return backends.backend(store)


def local_root(store):
    """The local folder the storage lives in, or None: where defaults put
    what must stay on this host (lock files, the audit log)."""
    return backends.backend(store).root


def exists(store, path):
    """Is there a file at ``path``?"""
    return backends.backend(store).exists(path)


def encode(obj):
    """(Not ``sort_keys``: on Python 2.7 it turns off the C encoder, and a
    document is read by its keys.)"""
    doc = dict(obj)
    doc['v'] = FORMAT
    return json.dumps(doc).encode('utf-8')


def decode(path, data):
    """Parse a document; raise :class:`Unreadable` if it is not one."""
    if not data:
        raise quarantine(path, 'empty')
    try:
        doc = json.loads(layout.text(data))
    except (ValueError, UnicodeDecodeError) as e:
        raise quarantine(path, 'not JSON (%s)' % e)
    if not isinstance(doc, dict):
        raise quarantine(path, 'not a JSON object')
    if doc.get('v') != FORMAT:
        raise quarantine(path, 'unknown format version %r' % doc.get('v'))
    return doc


def read_raw(store, path):
    """Bytes of a record, or None when absent."""
    return backends.backend(store).read(path)


def read_file(store, path, probe=False):
    """Bytes of one of the registry's files (a tag file, an image's json
    or ancestry), or None when absent: the truth, from storage, past the
    cache (``probe`` where absence is common).  The cache's copy, which
    may be older or newer than storage's (see the module's notes), is
    dropped: the registry then serves what the extension acts on."""
    data = backends.backend(store).read_file(path, probe)
    _forget_quietly(path)
    return data


def read(store, path):
    """A document as a dict, or None when absent; :class:`Unreadable`."""
    data = read_raw(store, path)
    if data is None:
        return None
    try:
        return decode(path, data)
    except Unreadable as e:
        _remember(store, e)
        raise


def note_unreadable(store, path, reason):
    """Quarantine a document that parsed but says nonsense."""
    _remember(store, quarantine(path, reason))


def _remember(store, err):
    """Note an unreadable document for recovery to rebuild (best effort:
    the caller already treats it as unknown)."""
    if err.path.startswith(layout.QUARANTINE + '/') or backends.backend(
            store).read_only:
        return
    entry = layout.quarantine_entry(err.path)
    try:
        if read_raw(store, entry) is not None:
            return                      # noted already: keep its time
        write(store, entry,
              {'path': err.path, 'reason': err.reason, 'at': time.time()})
    except Exception as e:  # the storage may be what is failing
        logger.warning('refcount: could not note %s for recovery: %s',
                       err.path, e)


def quarantined(store):
    """``[(entry path, document)]`` of every remembered unreadable record."""
    found = []
    for name in listing(store, layout.QUARANTINE):
        if layout.is_scratch(name):
            continue
        entry = '%s/%s' % (layout.QUARANTINE, name)
        try:
            doc = read(store, entry)
        except Unreadable:
            remove(store, entry)
            continue
        if doc and isinstance(doc.get('path'), type(u'')):
            found.append((entry, doc))
    return found


class ReadOnly(Exception):
    """A write asked of a storage a command opened read-only (``status``,
    ``verify``, a dry run): refused before it reaches storage."""


def _writing(store, what):
    """The back end, for a write: :class:`ReadOnly` if the command
    promised to write nothing."""
    chosen = backends.backend(store)
    if chosen.read_only:
        raise ReadOnly('%s: not written, the storage is open read-only'
                       % (what,))
    return chosen


def write(store, path, obj, sync=False):
    """Write a document atomically (:meth:`.backends.Backend.put`).
    ``sync``: its bytes reach the disk before its name is made, so that
    after a power loss the name holds them, never nothing (the name
    itself is made durable by :func:`sync_names`, where an order needs
    it)."""
    put(store, path, encode(obj), sync)


def put(store, path, data, sync=False):
    """Write raw bytes atomically (see :func:`write`)."""
    _writing(store, path).put(path, data, sync)


def registry_put(store, path, data):
    """Write one of the registry's own files (a tag ``restore`` puts
    back) as the extension writes its records - atomically, durably, with
    the storage root's owner - and drop the registry's cache entry of it,
    before and after: the registry reads it through that cache."""
    before_registry_write(path)
    put(store, path, data, sync=True)
    _forget_quietly(path)


def remove_registry_file(store, path):
    """Remove one of the registry's own files (a tag retention deletes)
    as its view does: through its driver and cache.  Absent is fine."""
    _writing(store, path)
    try:
        store.remove(path)
    except exceptions.FileNotFoundError:
        pass
    _forget_quietly(path)


def sync_names(store, *paths):
    """Make the names of the records at ``paths`` - made or removed -
    durable: before a step that relies on them after a power loss."""
    backends.backend(store).sync_names(*paths)


def sync_file(store, path):
    """Make one of the registry's files durable as it is now - its bytes,
    and its name or its absence: the registry syncs nothing, and a
    removal on the word of a tag file must not outlive the tag file's
    content after a power loss."""
    backends.backend(store).sync_file(path)


def remove(store, path):
    """Remove one of the extension's records or markers; absent is fine."""
    _writing(store, path).remove(path)


def remove_file(store, path):
    """Remove one of the registry's files (an image's json, layer,
    ancestry, a legacy record...); absent is fine; only ever a file.
    Past the registry's cache, and its cache entry dropped after the
    removal too: a reader may have put the file back in the cache between
    the drop and the removal, and the registry would go on serving a
    deleted image from it."""
    chosen = _writing(store, path)
    forget(path)
    chosen.remove_file(path)
    forget(path)


def removed(store, paths):
    """Once files of the registry's are removed (an image's, one by one
    with :func:`remove_file`): what a reader of the registry put back
    meanwhile into its view of them goes again.  (A read of the cache's
    that began before a removal stores what it read after it: the
    registry would serve a deleted image's json from the cache.)"""
    for path in paths:
        forget(path)


def listing(store, path):
    """Names directly under ``path`` (a generator; empty when absent; a
    folder that cannot be read raises)."""
    return backends.backend(store).listing(path)


def repositories(store, top):
    """``(namespace, repository)`` of every repository folder under
    ``top``: the registry's ``repositories/`` or the ledger's folder."""
    for namespace in listing(store, top):
        for repository in listing(store, '%s/%s' % (top, namespace)):
            yield namespace, repository


def names_starting(store, folder, prefix):
    """Names directly under ``folder`` that start with ``prefix``."""
    return backends.backend(store).names_starting(folder, prefix)


#: The outcome of a call of :func:`together` that raised.
Failed = backends.Failed


def names_then(store, folder, prefix, name):
    """``(names under folder starting with prefix, is name there)``, the
    first read no later than the second (:meth:`.backends.Backend.
    names_then`)."""
    return backends.backend(store).names_then(folder, prefix, name)


def together(store, *calls):
    """The outcomes of independent ``calls``, at once where the storage
    is far away: each a value or :class:`.backends.Failed`
    (:meth:`.backends.Backend.together`)."""
    return backends.backend(store).together(*calls)


def values(outcomes):
    """The values of :func:`together`'s ``outcomes``; the first call that
    raised, raised again (once every call is over)."""
    for outcome in outcomes:
        if isinstance(outcome, Failed):
            raise outcome.error
    return outcomes


def remove_empty_folders(store, *folders):
    """Remove each of ``folders`` that is empty, in turn (an image's,
    once deleted: only then, as a new push of the id may have begun)."""
    _writing(store, folders).remove_empty_folders(*folders)


def prune(store, folder):
    """Remove ``folder`` of the extension's records and its parents if
    they are empty (a deleted repository's ledger), up to the record
    kind's folder."""
    if not folder.startswith(layout.PREFIX + '/'):
        return
    parts = folder.split('/')
    keep = len(layout.PREFIX.split('/')) + 1
    remove_empty_folders(store, *['/'.join(parts[:end]) for end in range(
        len(parts), keep, -1)])


def remove_old_spares(store, now=None, age=86400):
    """Remove the spare files earlier versions kept under
    ``extensions/refcount/spares/`` (one folder a process), each folder
    once untouched for ``age`` seconds: a worker of that version may still
    be writing into its own (it makes a new one if it is removed)."""
    _writing(store, layout.SPARES).remove_old_folders(
        layout.SPARES, age, time.time() if now is None else now)


# -- the storage's clock ---------------------------------------------------

def now(store):
    """The time on the storage's own clock: the one clock every host that
    shares the storage agrees on, whatever its own says.  Ages of records
    are measured on it (:func:`stamp`), never on this process's clock."""
    return backends.backend(store).now()


def stamp(store, path):
    """When the storage last wrote ``path``, on its clock (:func:`now`);
    None when absent, or when the driver cannot tell."""
    return backends.backend(store).stamp(path)


def stamps(store, folder, name, keep=None):
    """``(entry, stamp)``: the :func:`stamp` of ``folder/<entry>/name`` for
    each entry under ``folder`` that ``keep`` accepts (a generator; an
    entry may be a native string: bytes on Python 2)."""
    return backends.backend(store).stamps(folder, name, keep)


def stamped(store, folder):
    """The names ``<milliseconds>-<token>`` directly in ``folder`` (the
    tag history's, the run history's, the counters'), as text, oldest
    first; anything else there is not theirs."""
    return sorted(n for n in (layout.text(name) for name in
                              listing(store, folder))
                  if layout.HISTORY_RE.match(n))


def scan(store, fn, *args):
    """``fn(*args)``, a long run of calls on ``store``, where it does not
    stop the worker's other requests (:meth:`.backends.Backend.scan`)."""
    return backends.backend(store).scan(fn, *args)


def newest_stamp(store, folder, keep=None):
    """The newest :func:`stamp` of the files directly in ``folder`` whose
    name ``keep`` accepts (all when None), None if it holds none."""
    return backends.backend(store).newest_stamp(folder, keep)


# -- markers ---------------------------------------------------------------

def write_marker(store, image_id, marker, content=b'', sync=False):
    """Write a marker.  Where a per-tag-list *file* of PR #606 stands in
    the way of the folder (``ENOTDIR``), that file is moved aside first
    (:func:`move_legacy_aside`), where it still counts: so a push or a tag
    write works from the first start, not only after ``rebuild``."""
    if not isinstance(content, bytes):
        content = content.encode('utf-8')
    path = layout.marker_path(image_id, marker)
    try:
        put(store, path, content, sync)
    except OSError as e:
        if e.errno != errno.ENOTDIR:
            raise
        move_legacy_aside(store, image_id)  # (or another process did)
        put(store, path, content, sync)


def link(store, source, path):
    """Write the record ``path`` as another name of the record ``source``
    (so with its content), where the back end can: one ``link`` instead
    of a write.  False where it cannot (the caller writes it)."""
    return _writing(store, path).link(source, path)


def marker_content(store, image_id, marker):
    """A marker's bytes, or None when absent."""
    return read_raw(store, layout.marker_path(image_id, marker))


def remove_marker(store, image_id, marker):
    remove(store, layout.marker_path(image_id, marker))


def markers(store, image_id):
    """Marker names on an image (a generator: stop early for 'any?')."""
    for name in listing(store, layout.references_dir(image_id)):
        if layout.is_scratch(name):
            continue
        yield name


def referenced(store, image_id):
    """Does the image have any marker, or a per-tag-list file of the
    earlier extension?  One cheap question whatever the number of
    markers (:meth:`.backends.Backend.occupied`); a temporary file is no
    marker (one whose writer was killed before its rename would keep the
    image for ever).  Only the delete protocol asks, holding the image's
    lock."""
    return backends.backend(store).occupied(
        layout.references_dir(image_id), layout.legacy_aside(image_id))


def remove_scratch(store, folder):
    """Remove the temporary files in ``folder`` (of writers killed before
    their rename; a live one's write then fails, loudly, on a record that
    could not have counted: its image is being deleted)."""
    _writing(store, folder).remove_scratch(folder)


def legacy_references(store, image_id):
    """The per-tag-list file of the earlier extension (docker-registry
    PR #606), in place or moved aside, or None.

    Such an image is needed until ``rebuild`` converts it.  (In place
    first: a file being moved aside has its new name before it loses its
    old one.)
    """
    for path in _legacy_paths(image_id):
        try:
            data = read_raw(store, path)
        except (IOError, OSError):
            continue        # a folder, on local storage
        if data is not None:
            return data
    return None


def _legacy_paths(image_id):
    return layout.references_dir(image_id), layout.legacy_aside(image_id)


def move_legacy_aside(store, image_id):
    """Make room for an image's folder of markers where PR #606 left a
    per-tag-list *file* (:func:`move_file_aside`)."""
    return move_file_aside(store, layout.references_dir(image_id),
                           layout.legacy_aside(image_id))


def remove_legacy(store, image_id):
    """``rebuild``, once it wrote the markers the truth calls for: the
    per-tag-list file goes, wherever it is - and never the folder of
    markers beside it (:func:`remove_file`)."""
    for path in _legacy_paths(image_id):
        remove_file(store, path)


def move_file_aside(store, path, aside):
    """Give the *file* at ``path`` the name ``aside``, and never touch a
    folder there (:meth:`.backends.Backend.move_file_aside`).  True if
    this call moved a file."""
    return _writing(store, path).move_file_aside(path, aside)
