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

On local storage records (documents, markers, tombstones) are written and
read outside the driver (the rename is not something the driver can do).

The registry's Redis LRU cache (``cache_lru``) wraps the driver's
``get_content``, ``put_content`` and ``remove``, per path.  Its ``set``
writes Redis *before* storage and skips the storage write when Redis
already holds the same bytes, so a PUT that failed once is "done" by its
retry without reaching storage; its ``get`` refills Redis with what a
reader read, which may be a value replaced or a file removed meanwhile.
So every record, and every read of the truth (tag files, json, ancestry),
goes to storage through the driver's own methods with the cache's
wrappers peeled off (:func:`direct`); a file of the registry's that the
extension removes or rewrites, or reads to act on, has its cache entry
dropped (:func:`forget`), so the registry serves what the extension saw.
"""

from __future__ import absolute_import, unicode_literals

import collections
import errno
import functools
import json
import logging
import os
import shutil
import time

from docker_registry.core import exceptions
from docker_registry.core import lru

from . import background
from . import durable
from . import layout

FORMAT = 1
logger = logging.getLogger(__name__)
_reported = set()


# -- around the registry's LRU cache -----------------------------------------

#: The code of the wrappers ``docker_registry.core.lru`` puts around a
#: driver's methods: how a wrapper is told from a driver's own override.
_LRU_WRAPPERS = frozenset(
    c for decorator in (lru.get, lru.set, lru.remove)
    for c in decorator.__code__.co_consts if hasattr(c, 'co_freevars'))


def _unwrapped(fn):
    """The driver method an LRU wrapper wraps, or None if ``fn`` is not
    one.  (``functools.wraps`` sets no ``__wrapped__`` on Python 2: the
    original is the wrapper's closure cell ``f``.)"""
    code = getattr(fn, '__code__', None)
    if code not in _LRU_WRAPPERS:
        return None
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    return cells['f'].cell_contents


def _direct_method(store, name):
    """``store.<name>`` without the LRU cache: the innermost cached
    implementation in the driver's class hierarchy, unwrapped (an override
    above it, such as the S3 driver's retries of a missing key, is skipped
    with the cache: :func:`get_if_exists` asks ``exists`` first anyway).
    Without the cache, the method itself."""
    for klass in type(store).__mro__:
        original = _unwrapped(vars(klass).get(name))
        if original is not None:
            return functools.partial(original, store)
    return getattr(store, name)


def direct(store):
    """The driver's ``get_content``, ``put_content`` and ``remove``
    straight to storage, past the registry's LRU cache (chosen once per
    driver object, and remembered in its own ``__dict__``)."""
    own = getattr(store, '__dict__', {})
    methods = own.get('_refcount_direct')
    if methods is None:
        methods = own['_refcount_direct'] = _Direct(
            *[_direct_method(store, name) for name in _Direct._fields])
    return methods


_Direct = collections.namedtuple('_Direct',
                                 'get_content put_content remove')


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


def local_root(store):
    """The root folder of the registry's file driver, or None.  (Asked
    dozens of times a request: remembered in the driver object's own
    ``__dict__``, never through a wrapper's attribute forwarding.)"""
    try:
        return store.__dict__['_refcount_root']
    except (AttributeError, KeyError):
        own = getattr(store, '__dict__', {})
    root = None
    if type(store).__module__.endswith('drivers.file'):
        root = getattr(store, '_root_path', None)
        if root is not None:
            # without a trailing '/': paths are built as '%s/%s' % (root,
            # path), not with os.path.join (several calls deep, dozens of
            # times a request)
            root = root.rstrip('/') or '/'
    own['_refcount_root'] = root
    return root


def exists(store, path):
    """Is there a file at ``path``?  On local storage without the driver
    (its ``exists`` is the same ``os.path.exists``, a few calls deeper):
    the protocols ask this many times a request."""
    root = local_root(store)
    if root is None:
        return store.exists(path)
    return os.path.exists('%s/%s' % (root, path))


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


def get_if_exists(store, path):
    """Bytes of a file through the driver, or None when absent.

    Asks ``exists`` first: the registry's S3 driver retries a missing key
    four times, 0.1 s apart, before it says so - half a second per miss
    where a miss is the common case (a new tag's ledger, a deleted tag).
    A key removed between the two requests is absent too (boto then raises
    a 404 of its own, not ``FileNotFoundError``)."""
    if not store.exists(path):
        return None
    try:
        return direct(store).get_content(path)
    except exceptions.FileNotFoundError:
        return None
    except Exception as e:
        if getattr(e, 'status', None) == 404:
            return None
        raise


def read_raw(store, path):
    """Bytes of a record, or None when absent."""
    root = local_root(store)
    if root is None:
        return get_if_exists(store, path)
    return _read_local('%s/%s' % (root, path))


def read_file(store, path, probe=False):
    """Bytes of one of the registry's files (a tag file, an image's json
    or ancestry), or None when absent: the truth, from storage.  On local
    storage: one ``open`` and its reads (the file driver's ``get_content``
    adds an ``exists`` and a buffered file object, twice the system calls;
    a tag file is read after every tag request).  Elsewhere through the
    driver, past its cache: ``probe`` where absence is common (see
    :func:`get_if_exists`).  The cache's copy, which may be older or
    newer than storage's (see the module's notes), is dropped: the
    registry then serves what the extension acts on."""
    data = _read_file(store, path, probe)
    _forget_quietly(path)
    return data


def _read_file(store, path, probe):
    root = local_root(store)
    if root is None:
        if probe:
            return get_if_exists(store, path)
        try:
            return direct(store).get_content(path)
        except exceptions.FileNotFoundError:
            return None
    return _read_local('%s/%s' % (root, path))


def _open_if_there(path):
    """A descriptor open for reading, or None if nothing is at ``path``
    (any other error raises: a file that cannot be read is not absent)."""
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)


def _read_local(target):
    """Read a record (None if absent).  Records are written whole and
    renamed into place, so what is open is one record, old or new."""
    fd = _open_if_there(target)
    if fd is None:
        return None
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


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
    if err.path.startswith(layout.QUARANTINE + '/'):
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


def write(store, path, obj, sync=False):
    """Write a document atomically: one PUT on object storage; on local
    storage, its bytes go into a new temporary file that is then renamed
    into place.  ``sync``: its bytes reach the disk before its name is
    made, so that after a power loss the name holds them, never nothing
    (the name itself is made durable by :func:`sync_names`, where an
    order needs it)."""
    put(store, path, encode(obj), sync)


def put(store, path, data, sync=False):
    """Write raw bytes atomically (see :func:`write`)."""
    root = local_root(store)
    if root is None:
        direct(store).put_content(path, data)
    else:
        _put_local(root, path, data, sync)


def sync_names(store, *paths):
    """On local storage, make the names of the records at ``paths`` - made
    or removed - durable (their folders', :func:`.durable.names`): before
    a step that relies on them after a power loss."""
    root = local_root(store)
    if root is not None:
        durable.names(*['%s/%s' % (root, path.rsplit('/', 1)[0])
                        for path in paths])


def sync_file(store, path):
    """On local storage, make one of the registry's files durable as it
    is now - its bytes, and its name or its absence: the registry syncs
    nothing, and a removal on the word of a tag file must not outlive the
    tag file's content after a power loss."""
    root = local_root(store)
    if root is None:
        return
    fd = _open_if_there('%s/%s' % (root, path))
    if fd is not None:
        try:
            durable.data(fd)
        finally:
            os.close(fd)
    sync_names(store, path)


def _put_local(root, path, data, sync=False):
    """Write a record whole: a new file beside it, renamed into place."""
    target = '%s/%s' % (root, path)
    folder = target.rsplit('/', 1)[0]
    for attempt in range(5):
        source = os.path.join(folder, layout.temporary_name())
        try:
            fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            if e.errno != errno.ENOENT or attempt == 4:
                raise
            _make_folder(root, folder)  # (pruned meanwhile? again)
            continue
        try:
            try:
                os.write(fd, data)
                if sync:
                    durable.data(fd)
            finally:
                os.close(fd)
            try:
                os.rename(source, target)
            except OSError as e:
                if e.errno != errno.ENOENT or attempt == 4:
                    raise
                _make_folder(root, folder)
                os.rename(source, target)
        except BaseException:
            _unlink(source)
            raise
        return


def remove(store, path):
    """Remove one of the extension's records or markers; absent is fine."""
    root = local_root(store)
    if root is None:
        _remove_direct(store, path)
        return
    try:
        os.unlink('%s/%s' % (root, path))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def _remove_direct(store, path):
    try:
        direct(store).remove(path)
    except exceptions.FileNotFoundError:
        pass


def remove_file(store, path):
    """Remove one of the registry's files (an image's json, layer,
    ancestry, a legacy record...); absent is fine.  Only ever a file:
    the drivers' ``remove`` takes a folder of that name whole (the file
    driver's ``rmtree``; on S3, when the key is absent, every key under
    the name).  Past the registry's cache, and its cache entry dropped
    after the removal too: a reader may have put the file back in the
    cache between the drop and the removal, and the registry would go on
    serving a deleted image from it."""
    forget(path)
    _remove_only_file(store, path)
    forget(path)


def removed(store, paths):
    """Once files of the registry's are removed (an image's, one by one
    with :func:`remove_file`): what a reader of the registry put back
    meanwhile into its view of them goes again.  (A read of the cache's
    that began before a removal stores what it read after it: the
    registry would serve a deleted image's json from the cache.)"""
    for path in paths:
        forget(path)

def write_file(store, path, data):
    """Rewrite one of the registry's files (a repository's
    ``_index_images``): to storage, then its cache entry dropped, so the
    registry reads the new bytes."""
    direct(store).put_content(path, data)
    forget(path)


def listing(store, path):
    """Names directly under ``path`` (a generator; empty when absent).

    On local storage straight from ``os.listdir``: the file driver's
    listing says "not there" for *any* error, and a folder that cannot be
    read (a permission error) is not an empty one - taken for one, it
    would hide tags from gc's mark.  Only a missing folder is empty here;
    other errors raise.  The path is a native string: on Python 2
    ``os.listdir`` then returns byte strings, a third of the memory of
    unicode ones while a listing of every image is held."""
    root = local_root(store)
    if root is not None:
        try:
            names = os.listdir(os.path.join(_native(root), _native(path)))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise
        for name in names:
            yield layout.text(name)
        return
    try:
        for entry in store.list_directory(_native(path)):
            yield layout.basename(entry)
    except exceptions.FileNotFoundError:
        return


def repositories(store, top):
    """``(namespace, repository)`` of every repository folder under
    ``top``: the registry's ``repositories/`` or the ledger's folder."""
    for namespace in listing(store, top):
        for repository in listing(store, '%s/%s' % (top, namespace)):
            yield namespace, repository


def _native(path):
    if str is bytes and not isinstance(path, bytes):
        return path.encode('utf-8')
    return path


# -- the storage's clock ---------------------------------------------------

def now(store):
    """The time on the storage's own clock: the one clock every host that
    shares the storage agrees on, whatever its own says (a host's clock
    may run ahead, or jump).  Ages of records are measured on it
    (:func:`stamp`), never on this process's clock.

    Local storage: the kernel's clock, read from a new file's mtime (a
    process's own ``time()`` may be shifted, as libfaketime does; the
    file system's timestamps are not).  S3: the last-modified time of a
    small object written now.  Other drivers tell no time: this
    process's clock, the best there is."""
    root = local_root(store)
    if root is not None:
        import tempfile
        with tempfile.TemporaryFile() as f:
            return os.fstat(f.fileno()).st_mtime
    bucket = getattr(store, '_boto_bucket', None)
    if bucket is not None and hasattr(store, '_init_path'):
        direct(store).put_content(layout.CLOCK, b'now')  # each time
        key = bucket.get_key(store._init_path(layout.CLOCK))
        if key is not None:
            return _parse_time(key.last_modified)
    return time.time()


def stamp(store, path):
    """When the storage last wrote ``path``, on its clock (:func:`now`);
    None when absent, or when the driver cannot tell."""
    root = local_root(store)
    if root is not None:
        try:
            return os.stat('%s/%s' % (root, path)).st_mtime
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise
    bucket = getattr(store, '_boto_bucket', None)
    if bucket is not None and hasattr(store, '_init_path'):
        key = bucket.get_key(store._init_path(path))
        return None if key is None else _parse_time(key.last_modified)
    return None


def newest_stamp(store, folder):
    """The newest :func:`stamp` of the files directly in ``folder`` (an
    image's: when it was last written to), None if it holds none."""
    root = local_root(store)
    bucket = getattr(store, '_boto_bucket', None)
    if root is None and bucket is not None and hasattr(store, '_init_path'):
        prefix = store._init_path(folder) + '/'
        times = [_parse_time(k.last_modified) for k in bucket.list(
            prefix=prefix, delimiter='/') if hasattr(k, 'last_modified')]
        return max(times) if times else None
    times = [t for t in (stamp(store, '%s/%s' % (folder, name))
                         for name in listing(store, folder)) if t]
    return max(times) if times else None


def _parse_time(value):
    """Seconds since the epoch of an S3 time (ISO 8601 in listings, RFC
    1123 in a HEAD's answer)."""
    import calendar
    import email.utils
    value = layout.text(value)
    parsed = email.utils.parsedate_tz(value)
    if parsed is not None:
        return float(email.utils.mktime_tz(parsed))
    main, _, fraction = value.rstrip('Z').partition('.')
    seconds = calendar.timegm(time.strptime(main, '%Y-%m-%dT%H:%M:%S'))
    return seconds + float('0.' + (fraction or '0'))


def names_starting(store, folder, prefix):
    """Names directly under ``folder`` that start with ``prefix`` (one
    listing; on S3 one request for just those keys)."""
    bucket = getattr(store, '_boto_bucket', None)
    if local_root(store) is None and bucket is not None and hasattr(
            store, '_init_path'):
        start = store._init_path(folder) + '/'
        return [k.name[len(start):] for k in bucket.get_all_keys(
            prefix=start + prefix, delimiter='/')
            if hasattr(k, 'last_modified')]
    return [n for n in listing(store, folder) if n.startswith(prefix)]


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
    """On local storage, write the record ``path`` as another name of the
    record ``source`` (so with its content): one ``link`` instead of a
    write.  False where that cannot be done (object storage, ``source``
    gone, ``path`` already there): the caller writes it."""
    root = local_root(store)
    if root is None:
        return False
    target = '%s/%s' % (root, path)
    for attempt in (0, 1):
        try:
            os.link('%s/%s' % (root, source), target)
            return True
        except OSError as e:
            if e.errno != errno.ENOENT or attempt or not os.path.exists(
                    os.path.join(root, source)):
                return False
            _make_folder(root, os.path.dirname(target))
    return False


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
    earlier extension?  One cheap operation whatever the number of
    markers (a base image may carry thousands):

    * local storage: a folder of one block at most (a few dozen names) is
      listed; a larger one gets ``rmdir``, which fails at once on a folder
      that holds a marker (listing it would read every name), and removes
      an empty one (a marker write makes it again).  A per-tag-list
      *file* there counts as a marker;
    * the S3 drivers: a listing of at most one key;
    * any other driver: its listing, stopped at the first entry.

    Only the delete protocol asks, holding the image's lock."""
    root = local_root(store)
    path = layout.references_dir(image_id)
    if root is not None:
        folder = '%s/%s' % (root, path)
        try:
            st = os.stat(folder)
            if st.st_size <= max(st.st_blksize, 4096):
                # (a temporary file is no marker: one whose writer was
                # killed before its rename would keep the image for ever)
                if any(not layout.is_scratch(name)
                       for name in os.listdir(folder)):
                    return True
            else:
                os.rmdir(folder)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                return True
            if e.errno != errno.ENOENT:
                raise
        # after ``_references``: a file moved aside is there before it
        # left that name (:func:`move_file_aside`)
        return os.path.exists('%s/%s' % (root, layout.legacy_aside(
            image_id)))
    bucket = getattr(store, '_boto_bucket', None)
    if bucket is not None and hasattr(store, '_init_path'):
        prefix = store._init_path(path)
        for key in bucket.get_all_keys(prefix=prefix, max_keys=2):
            if key.name != prefix + '/' and not key.name.rsplit(
                    '/', 1)[-1].startswith('.'):
                return True
        return False
    for _ in markers(store, image_id):
        return True
    return legacy_references(store, image_id) is not None


def remove_scratch(store, folder):
    """On local storage, remove the temporary files in ``folder`` (of
    writers killed before their rename; a live one's write then fails,
    loudly, on a record that could not have counted: its image is being
    deleted)."""
    root = local_root(store)
    if root is None:
        return
    try:
        names = os.listdir('%s/%s' % (root, folder))
    except OSError:
        return
    for name in names:
        if layout.is_scratch(name):
            _unlink('%s/%s/%s' % (root, folder, name))


def legacy_references(store, image_id):
    """The per-tag-list file of the earlier extension (docker-registry
    PR #606), in place or moved aside, or None.

    Such an image is needed until ``rebuild`` converts it.  (In place
    first: a file being moved aside has its new name before it loses its
    old one.)
    """
    for path in _legacy_paths(image_id):
        try:
            data = get_if_exists(store, path)
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
    folder there: a ``link``, then an ``unlink`` of the old name, which
    both fail on a folder - where a ``rename`` or the driver's ``remove``
    would move or remove a folder that another process's move made, and
    every marker in it.  At every moment one of the two names holds the
    file.  True if this call moved a file.

    Local storage only: object storage holds a key and keys under that
    name side by side, so nothing is in the way there.
    """
    root = local_root(store)
    if root is None:
        return False
    source = '%s/%s' % (root, path)
    try:
        os.link(source, '%s/%s' % (root, aside))
    except OSError as e:
        if e.errno != errno.EEXIST:
            return False    # absent, or a folder (EPERM)
    try:
        os.unlink(source)
    except OSError:
        return False        # moved by another meanwhile, or a folder
    return True


def _remove_only_file(store, path):
    """Remove the file at ``path`` (see :func:`remove_file`)."""
    root = local_root(store)
    if root is not None:
        try:
            os.unlink('%s/%s' % (root, path))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EISDIR, errno.EPERM,
                               errno.ENOTDIR):
                raise
        return
    bucket = getattr(store, '_boto_bucket', None)
    if bucket is not None and hasattr(store, '_init_path'):
        bucket.delete_key(store._init_path(path))
        return
    if store.exists(path) and next(listing(store, path), None) is None:
        _remove_direct(store, path)     # other drivers: the best they allow


def prune(store, folder):
    """On local storage, remove ``folder`` of the extension's records and
    its parents if they are empty (a deleted repository's ledger), up to
    the record kind's folder."""
    root = local_root(store)
    if root is not None and folder.startswith(layout.PREFIX + '/'):
        _prune(root, folder + '/x')


def _prune(root, path):
    parts = path.split('/')
    keep = len(layout.PREFIX.split('/')) + 1
    for end in range(len(parts) - 1, keep, -1):
        try:
            os.rmdir(os.path.join(root, *parts[:end]))
        except OSError:
            return


def remove_old_spares(store, now=None, age=86400):
    """On local storage, remove the spare files earlier versions kept
    under ``extensions/refcount/spares/`` (one folder a process), each
    folder once untouched for ``age`` seconds: a worker of that version
    may still be writing into its own (it makes a new one if it is
    removed)."""
    root = local_root(store)
    if root is None:
        return
    base = '%s/%s' % (root, layout.SPARES)
    now = time.time() if now is None else now
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        folder = os.path.join(base, name)
        try:
            if now - os.stat(folder).st_mtime > age:
                shutil.rmtree(folder)
        except OSError:
            pass                    # gone meanwhile, or not ours to say
    _rmdirs([base])


def remove_empty_folders(*folders):
    """``rmdir`` each of ``folders`` in turn, those that are empty (the
    check and the removal are one step: a folder something was written
    into meanwhile stays).  Off the gevent hub (:func:`.background.off_hub`):
    freeing a folder's block can wait for the file system's journal."""
    background.off_hub(_rmdirs, folders)


def _rmdirs(folders):
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _make_folder(root, folder):
    """Make ``folder`` and its missing parents, each noted as made (its
    name is durable once its parent is synced, :func:`.durable.names`)."""
    missing = [folder]
    while not os.path.isdir(os.path.dirname(missing[-1])):
        missing.append(os.path.dirname(missing[-1]))
    try:
        os.makedirs(folder)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    for made in missing:
        durable.made(made)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
