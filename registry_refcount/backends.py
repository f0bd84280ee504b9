"""Where records live: one interface, a back end for each kind of storage.

The protocols need a handful of things from storage (:class:`Backend`
says which, once).  Each kind of storage answers them its own way, in a
class of its own, chosen once per driver object (:func:`backend`); above
:mod:`.records` nothing asks which it is.

* :class:`Local`, the registry's file driver: past the driver, with
  ``os`` calls - a record is a temporary file renamed into place (the
  one atomic write a file system has), a second name is a ``link``, "is
  anything left here" is an ``rmdir`` that fails, and the few steps
  that must survive a power loss are synced (:mod:`.durable`).
* :class:`Driver`, any other driver, through its own methods with the
  registry's LRU cache peeled off (:func:`direct`): a PUT is atomic and
  durable before it answers, and empty folders do not exist.
* :class:`S3`, the registry's S3 driver: a :class:`Driver` that asks boto
  what the driver cannot ask in one request (a key's time, "any key
  under this prefix").

Paths are relative to the storage's root, ``/``-separated.
"""

from __future__ import absolute_import, unicode_literals

import calendar
import collections
import email.utils
import errno
import functools
import os
import shutil
import threading
import time

from docker_registry.core import exceptions
from docker_registry.core import lru

from . import background
from . import durable
from . import layout
from . import ownership

#: Bytes in a path component on the file systems a registry runs on
#: (ext4, xfs, btrfs), when the root cannot be asked; in a whole path.
NAME_MAX = 255
PATH_MAX = 4096
#: Bytes in an S3 object key (the registry's other storage).
KEY_MAX = 1024


def backend(store):
    """The back end of the driver object ``store``, chosen on first use
    and kept in the object's own ``__dict__`` (asked dozens of times a
    request; never through a wrapper's attribute forwarding)."""
    own = getattr(store, '__dict__', None)
    try:
        return own['_refcount_backend']
    except (TypeError, KeyError):
        pass
    root = getattr(store, '_root_path', None)
    if type(store).__module__.endswith('drivers.file') and root is not None:
        chosen = Local(root)
    elif getattr(store, '_boto_bucket', None) is not None and hasattr(
            store, '_init_path'):
        chosen = S3(store)
    else:
        chosen = Driver(store)
    if own is not None:
        own['_refcount_backend'] = chosen
    return chosen


class Backend(object):
    """What the protocols ask of storage.  Absent is never an error:
    reads say None, removals of what is not there succeed."""

    #: The local folder the storage lives in, or None: where the defaults
    #: put what must stay on this host (lock files, the audit log).
    root = None
    #: Set by a command that promised to write nothing (``status``,
    #: ``verify``, a dry run): :mod:`.records` then refuses every write.
    read_only = False

    def where(self):
        """The storage as an operator would name it (a path, a URL)."""
        raise NotImplementedError

    def exists(self, path):
        """Is there anything at ``path``?"""
        raise NotImplementedError

    def read(self, path):
        """A record's bytes, or None.  What is read is one whole write:
        the old bytes or the new, never a mixture."""
        raise NotImplementedError

    def read_file(self, path, probe=False):
        """One of the registry's files (written by the registry, not
        atomically on every back end), or None.  ``probe``: absence is
        the common case (a back end may then ask first)."""
        return self.read(path)

    def put(self, path, data, sync=False):
        """Write a record whole: a reader sees the old bytes or the new.
        ``sync``: the bytes are durable before the name is made."""
        raise NotImplementedError

    def remove(self, path):
        """Remove a record (a file)."""
        raise NotImplementedError

    def remove_file(self, path):
        """Remove one of the registry's files, and only ever a file: the
        drivers' ``remove`` takes a folder of that name whole."""
        raise NotImplementedError

    def listing(self, path):
        """Names directly under ``path`` (a generator; empty when absent;
        a folder that cannot be read raises - it is not an empty one)."""
        raise NotImplementedError

    def names_starting(self, folder, prefix):
        """Names directly under ``folder`` that start with ``prefix``."""
        return [n for n in self.listing(folder) if n.startswith(prefix)]

    def occupied(self, folder, aside):
        """Is anything but a temporary file under ``folder``, or a file at
        ``folder`` or at ``aside``?  One cheap question however many
        names the folder holds (a base image carries thousands of
        markers)."""
        raise NotImplementedError

    def names_then(self, folder, prefix, name):
        """``(names under folder starting with prefix, is name there)``,
        the first read no later than the second: a name that sorts first
        is not seen at a later moment than one that sorts after it (the
        order of the image check: see :func:`.protocols.image_state`).
        Here two reads, in that order."""
        first = self.names_starting(folder, prefix)
        return first, self.exists(folder + '/' + name)

    def together(self, *calls):
        """Call each of ``calls`` (functions of no argument) and return
        their outcomes in order: a value, or :class:`Failed` with what it
        raised.  The calls must not depend on one another; where requests
        are far away (a :class:`Driver`) they go at once, so that the
        caller waits for one round trip, not one each.  Here in order."""
        return [_outcome(call) for call in calls]

    def link(self, source, path):
        """Make ``path`` another name of the record ``source``: True, or
        False where that cannot be done (the caller writes it)."""
        return False

    def move_file_aside(self, path, aside):
        """Give the *file* at ``path`` the name ``aside`` where a folder of
        that name is wanted; True if this call moved one.  (Object storage
        holds a key and keys under it side by side: nothing to move.)"""
        return False

    def remove_scratch(self, folder):
        """Remove the temporary files of writers killed before their
        rename (where writes use them)."""

    def remove_empty_folders(self, *folders):
        """Remove each of ``folders`` that is empty, in turn (where
        folders exist apart from what they hold)."""

    def remove_old_folders(self, folder, age, now):
        """Remove each folder under ``folder`` untouched for ``age``
        seconds (where folders exist)."""

    def sync_names(self, *paths):
        """Make the names of the records at ``paths`` - made or removed -
        survive a power loss (where storage does not already)."""

    def sync_file(self, path):
        """Make one of the registry's files, or its absence, survive a
        power loss as it is now (where storage does not already)."""

    def now(self):
        """The time on the storage's own clock, the one every host that
        shares it agrees on (a host's own clock may run ahead or jump).
        A back end that tells no time: this process's clock."""
        return time.time()

    def stamp(self, path):
        """When storage last wrote ``path``, on :meth:`now`'s clock; None
        when absent or when storage cannot tell."""
        return None

    def stamps(self, folder, name, keep=None):
        """``(entry, stamp)`` for each entry directly under ``folder`` that
        ``keep(entry)`` accepts: the :meth:`stamp` of its file ``name``
        (None where absent).  The catch-up's walk of every image's json
        (:mod:`.gap`) in one call, not a :meth:`stamp` per image: a back
        end may answer it cheaper (:class:`Local`)."""
        for entry in self.listing(folder):
            if keep is None or keep(entry):
                yield entry, self.stamp('%s/%s/%s' % (folder, entry, name))

    def newest_stamp(self, folder, keep=None):
        """The newest :meth:`stamp` of the entries directly in ``folder``
        whose name ``keep`` accepts (all when None)."""
        times = [t for t in (self.stamp('%s/%s' % (folder, name))
                             for name in self.listing(folder)
                             if keep is None or keep(name)) if t]
        return max(times) if times else None

    def limits(self):
        """The lengths storage can name: ``name_max`` (a component, or
        None), ``path_max``, and ``prefix`` (what the root adds)."""
        raise NotImplementedError

    def scan(self, fn, *args):
        """Call ``fn(*args)``, many storage calls in a row (a stat of every
        image), where it stops none of the worker's other requests.  A
        driver's own calls wait cooperatively under gevent already, and
        must stay on the worker's hub: its one connection pool is guarded
        by a lock gevent made a greenlet lock, so a call from a native
        thread fails (``LoopExit``), and so may the request that takes
        the connection it made (tests/s3/gevent_probe.py)."""
        return fn(*args)


# -- local files -------------------------------------------------------------

class Local(Backend):
    """The registry's file driver's folder, with ``os`` calls."""

    def __init__(self, root):
        # without a trailing '/': paths are '%s/%s' % (root, path), not
        # os.path.join (several calls deep, dozens of times a request)
        self.root = root.rstrip('/') or '/'
        self._limits = None
        #: what a root process gives what it makes here: the storage
        #: root's owner and mode (None, the common case: nothing to do)
        self.owner = ownership.of(self.root)

    def _at(self, path):
        return '%s/%s' % (self.root, path)

    def where(self):
        return os.path.abspath(self.root)

    def scan(self, fn, *args):
        # a stat waits in the kernel, where the hub cannot switch
        return background.off_hub(fn, *args)

    def exists(self, path):
        return os.path.exists(self._at(path))

    def read(self, path):
        # one ``open`` and its reads: the file driver's ``get_content``
        # adds an ``exists`` and a buffered file object (A/B: 44 system
        # calls of 334 per bench iteration, -13%; bench/NOTES.md)
        fd = _open_if_there(self._at(path))
        if fd is None:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b''.join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def put(self, path, data, sync=False):
        target = self._at(path)
        folder = target.rsplit('/', 1)[0]
        for attempt in range(5):
            source = '%s/%s' % (folder, layout.temporary_name())
            try:
                fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o644)
            except OSError as e:
                if e.errno != errno.ENOENT or attempt == 4:
                    raise
                # (pruned meanwhile? again)
                durable.make_folders(folder, self.owner)
                continue
            try:
                durable.fill(fd, data, self.owner, sync)
                try:
                    os.rename(source, target)
                except OSError as e:
                    if e.errno != errno.ENOENT or attempt == 4:
                        raise
                    durable.make_folders(folder, self.owner)
                    os.rename(source, target)
            except BaseException:
                _unlink(source)
                raise
            return

    def remove(self, path):
        try:
            os.unlink(self._at(path))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise

    def remove_file(self, path):
        try:
            os.unlink(self._at(path))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EISDIR, errno.EPERM,
                               errno.ENOTDIR):
                raise

    def listing(self, path):
        # ``os.listdir``, not the driver's: the file driver says "not
        # there" for *any* error, and a folder that cannot be read is not
        # an empty one (taken for one, it would hide tags from gc's
        # mark).  A native path: on Python 2 ``os.listdir`` then returns
        # byte strings, a third of the memory of unicode ones while a
        # listing of every image is held.
        try:
            names = os.listdir(os.path.join(_native(self.root),
                                            _native(path)))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise
        for name in names:
            yield layout.text(name)

    def stamps(self, folder, name, keep=None):
        # Native strings end to end (bytes on Python 2), entries yielded as
        # ``os.listdir`` gives them: a unicode id and path per image, and
        # the layout's checks of them, cost more than the ``stat``; gc's
        # catch-up walks every image (10 000 images: 0.08 s, where a
        # :meth:`stamp` per image took 0.19 s).
        top = os.path.join(_native(self.root), _native(folder))
        tail, sep = _native('/' + name), _native('/')
        try:
            entries = os.listdir(top)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise
        for entry in entries:
            if keep is not None and not keep(entry):
                continue
            try:
                written = os.stat(top + sep + entry + tail).st_mtime
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
                written = None
            yield entry, written

    def occupied(self, folder, aside):
        # A folder of one block at most (a few dozen names) is listed; a
        # larger one gets ``rmdir``, which fails at once on a folder that
        # holds a name (listing it would read every one) and removes an
        # empty one (the next marker makes it again).  A file there
        # (ENOTDIR) counts.
        at = self._at(folder)
        try:
            st = os.stat(at)
            if st.st_size <= max(st.st_blksize, 4096):
                if any(not layout.is_scratch(name)
                       for name in os.listdir(at)):
                    return True
            else:
                os.rmdir(at)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                return True
            if e.errno != errno.ENOENT:
                raise
        # after ``folder``: a file moved aside has its new name before it
        # loses its old one (:meth:`move_file_aside`)
        return os.path.exists(self._at(aside))

    def link(self, source, path):
        target = self._at(path)
        for attempt in (0, 1):
            try:
                os.link(self._at(source), target)
                return True
            except OSError as e:
                if e.errno != errno.ENOENT or attempt or not self.exists(
                        source):
                    return False
                durable.make_folders(os.path.dirname(target), self.owner)
        return False

    def move_file_aside(self, path, aside):
        # a ``link``, then an ``unlink`` of the old name, which both fail
        # on a folder - where a ``rename`` or the driver's ``remove``
        # would move or remove a folder another process's move made, and
        # every marker in it.  At every moment one of the names holds it.
        try:
            os.link(self._at(path), self._at(aside))
        except OSError as e:
            if e.errno != errno.EEXIST:
                return False    # absent, or a folder (EPERM)
        try:
            os.unlink(self._at(path))
        except OSError:
            return False        # moved by another meanwhile, or a folder
        return True

    def remove_scratch(self, folder):
        try:
            names = os.listdir(self._at(folder))
        except OSError:
            return
        for name in names:
            if layout.is_scratch(name):
                _unlink('%s/%s' % (self._at(folder), name))

    def remove_empty_folders(self, *folders):
        # the check and the removal are one step: a folder something was
        # written into meanwhile stays.  (On the hub: off it, tag DELETE
        # p50 at concurrency 16 moved 0.95x, within noise; bench/NOTES.md.)
        _rmdirs([self._at(f) for f in folders])

    def remove_old_folders(self, folder, age, now):
        base = self._at(folder)
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            path = os.path.join(base, name)
            try:
                if now - os.stat(path).st_mtime > age:
                    shutil.rmtree(path)
            except OSError:
                pass                # gone meanwhile, or not ours to say
        _rmdirs([base])

    def sync_names(self, *paths):
        durable.names(*[self._at(path.rsplit('/', 1)[0]) for path in paths])

    def sync_file(self, path):
        # the registry syncs nothing, and a removal on the word of a tag
        # file must not outlive the tag file's content after a power loss
        fd = _open_if_there(self._at(path))
        if fd is not None:
            try:
                durable.data(fd)
            finally:
                os.close(fd)
        self.sync_names(path)

    def now(self):
        # the kernel's clock, read from a new file's mtime (a process's
        # own ``time()`` may be shifted, as libfaketime does; the file
        # system's timestamps are not)
        import tempfile
        with tempfile.TemporaryFile() as f:
            return os.fstat(f.fileno()).st_mtime

    def stamp(self, path):
        try:
            return os.stat(self._at(path)).st_mtime
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def limits(self):
        if self._limits is None:
            self._limits = dict(
                name_max=_pathconf(self.root, str('PC_NAME_MAX'), NAME_MAX),
                path_max=_pathconf(self.root, str('PC_PATH_MAX'), PATH_MAX),
                prefix=len(layout.text(self.root).encode('utf-8')) + 1)
        return self._limits


def _open_if_there(path):
    """A descriptor open for reading, or None if nothing is at ``path``
    (any other error raises: a file that cannot be read is not absent)."""
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _rmdirs(folders):
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _native(path):
    if str is bytes and not isinstance(path, bytes):
        return path.encode('utf-8')
    return path


def _pathconf(root, name, default):
    try:
        return os.pathconf(root, name)
    except (OSError, ValueError, AttributeError):
        return default


# -- any driver ------------------------------------------------------------

class Driver(Backend):
    """Any driver, through its own methods, past the registry's cache."""

    def __init__(self, store):
        self.store = store
        self.direct = direct(store)

    def together(self, *calls):
        # a request far away takes a round trip: these go at once (in
        # threads, which a gevent worker has patched into greenlets);
        # bench part 7 counts the round trips a tag write waits for
        if len(calls) < 2:
            return Backend.together(self, *calls)
        outcomes = [None] * len(calls)

        def run(i):
            outcomes[i] = _outcome(calls[i])
        threads = [threading.Thread(target=run, args=(i,))
                   for i in range(1, len(calls))]
        for t in threads:
            t.start()
        run(0)
        for t in threads:
            t.join()
        return outcomes

    def where(self):
        return '%s %s' % (type(self.store).__module__,
                          getattr(self.store, '_root_path', '') or '')

    def exists(self, path):
        return self.store.exists(path)

    def read(self, path):
        # ``exists`` first: the registry's S3 driver retries a missing
        # key four times, 0.1 s apart, before it says so - half a second
        # per miss where a miss is the common case (a new tag's ledger).
        # A key removed between the two requests is absent too (boto then
        # raises a 404 of its own, not ``FileNotFoundError``).
        if not self.store.exists(path):
            return None
        try:
            return self.direct.get_content(path)
        except exceptions.FileNotFoundError:
            return None
        except Exception as e:
            if getattr(e, 'status', None) == 404:
                return None
            raise

    def read_file(self, path, probe=False):
        if probe:
            return self.read(path)
        try:
            return self.direct.get_content(path)
        except exceptions.FileNotFoundError:
            return None

    def put(self, path, data, sync=False):
        self.direct.put_content(path, data)

    def remove(self, path):
        try:
            self.direct.remove(path)
        except exceptions.FileNotFoundError:
            pass

    def remove_file(self, path):
        # the best a driver allows: only a name with nothing under it
        if self.store.exists(path) and next(self.listing(path),
                                            None) is None:
            self.remove(path)

    def listing(self, path):
        try:
            for entry in self.store.list_directory(_native(path)):
                yield layout.basename(entry)
        except exceptions.FileNotFoundError:
            return

    def occupied(self, folder, aside):
        for name in self.listing(folder):
            if not layout.is_scratch(name):
                return True
        for path in (folder, aside):
            try:
                if self.read(path) is not None:
                    return True
            except (IOError, OSError):
                continue        # a folder, behind a wrapped file driver
        return False

    def limits(self):
        prefix = (getattr(self.store, '_root_path', None) or '').strip('/')
        return dict(name_max=None, path_max=KEY_MAX,
                    prefix=len(prefix.encode('utf-8')) + 1)


class S3(Driver):
    """The registry's S3 driver, with boto for what the driver lacks."""

    def __init__(self, store):
        Driver.__init__(self, store)
        self.bucket = store._boto_bucket
        self.key_name = store._init_path
        # (imported once here, not per read: under gevent an import
        # statement takes the patched import lock)
        from boto.exception import S3ResponseError
        self.response_error = S3ResponseError

    def where(self):
        config = getattr(self.store, '_config', None)
        bucket = getattr(config, 'boto_bucket', None) or getattr(
            config, 's3_bucket', None) or self.bucket.name
        path = getattr(self.store, '_root_path', '') or ''
        return 's3://%s/%s' % (bucket, path.lstrip('/'))

    def read(self, path):
        # one GET, there or not: the driver asks HEAD before each GET, and
        # without the registry's cache its get_content retries a missing
        # key 4 times, 0.1 s apart (0.6 s of an image json PUT's first
        # push, bench part 7)
        try:
            return self.store.makeKey(
                self.key_name(path)).get_contents_as_string()
        except self.response_error as e:
            if e.status == 404:
                return None
            raise

    def read_file(self, path, probe=False):
        return self.read(path)

    def remove(self, path):
        # one DELETE (S3 answers 204 for a key that is not there); the
        # driver asks HEAD first
        self.bucket.delete_key(self.key_name(path))

    # a key is only ever a file: a record and a registry file go alike
    remove_file = remove

    def names_starting(self, folder, prefix):
        start = self.key_name(folder) + '/'
        return [k.name[len(start):] for k in self.bucket.get_all_keys(
            prefix=start + prefix, delimiter='/')
            if hasattr(k, 'last_modified')]

    def names_then(self, folder, prefix, name):
        # one request, not two (a round trip less before a tag write's
        # response): S3 lists keys in name order, so a key that sorts
        # first is not seen later than one after it
        start = self.key_name(folder) + '/'
        keys = self.bucket.get_all_keys(prefix=start, delimiter='/')
        if keys.is_truncated or not prefix < name:
            return Driver.names_then(self, folder, prefix, name)
        names = [k.name[len(start):] for k in keys
                 if hasattr(k, 'last_modified')]
        return [n for n in names if n.startswith(prefix)], name in names

    def occupied(self, folder, aside):
        # a listing of at most two keys (nothing is moved aside here)
        prefix = self.key_name(folder)
        for key in self.bucket.get_all_keys(prefix=prefix, max_keys=2):
            if key.name != prefix + '/' and not layout.is_scratch(
                    key.name.rsplit('/', 1)[-1]):
                return True
        return False

    def now(self):
        # the last-modified time of a small object written now; a command
        # that writes nothing takes the Date of S3's answer to a HEAD of
        # the bucket (to the second), so that a dry run on a host whose
        # clock is off reports what a real run deletes
        if self.read_only:
            return self._answer_date() or time.time()
        self.direct.put_content(layout.CLOCK, b'now')  # each time
        key = self.bucket.get_key(self.key_name(layout.CLOCK))
        if key is None:
            return time.time()
        return _parse_time(key.last_modified)

    def _answer_date(self):
        try:
            answer = self.bucket.connection.make_request('HEAD',
                                                         self.bucket.name)
            answer.read()
            date = answer.getheader('date')
            return _parse_time(date) if date else None
        except Exception:   # (no answer, no Date: the host's clock)
            return None

    def stamp(self, path):
        key = self.bucket.get_key(self.key_name(path))
        return None if key is None else _parse_time(key.last_modified)

    def newest_stamp(self, folder, keep=None):
        prefix = self.key_name(folder) + '/'
        times = [_parse_time(k.last_modified) for k in self.bucket.list(
            prefix=prefix, delimiter='/') if hasattr(k, 'last_modified')
            and (keep is None or keep(layout.text(k.name[len(prefix):])))]
        return max(times) if times else None


class Failed(object):
    """The outcome of a call of :meth:`Backend.together` that raised."""

    def __init__(self, error):
        self.error = error


def _outcome(call):
    try:
        return call()
    except Exception as e:
        return Failed(e)


def _parse_time(value):
    """Seconds since the epoch of an S3 time (ISO 8601 in listings, RFC
    1123 in a HEAD's answer)."""
    value = layout.text(value)
    parsed = email.utils.parsedate_tz(value)
    if parsed is not None:
        return float(email.utils.mktime_tz(parsed))
    main, _, fraction = value.rstrip('Z').partition('.')
    seconds = calendar.timegm(time.strptime(main, '%Y-%m-%dT%H:%M:%S'))
    return seconds + float('0.' + (fraction or '0'))


# -- around the registry's LRU cache -----------------------------------------

#: The code of the wrappers ``docker_registry.core.lru`` puts around a
#: driver's methods: how a wrapper is told from a driver's own override.
_LRU_WRAPPERS = frozenset(
    c for decorator in (lru.get, lru.set, lru.remove)
    for c in decorator.__code__.co_consts if hasattr(c, 'co_freevars'))

_Direct = collections.namedtuple('_Direct',
                                 'get_content put_content remove')


def direct(store):
    """The driver's ``get_content``, ``put_content`` and ``remove``
    straight to storage, past the registry's LRU cache (see
    :mod:`.records`)."""
    return _Direct(*[_direct_method(store, name) for name in _Direct._fields])


def _direct_method(store, name):
    """``store.<name>`` without the LRU cache: the innermost cached
    implementation in the driver's class hierarchy, unwrapped (an override
    above it, such as the S3 driver's retries of a missing key, is skipped
    with the cache: :meth:`Driver.read` asks ``exists`` first anyway).
    Without the cache, the method itself."""
    for klass in type(store).__mro__:
        original = _unwrapped(vars(klass).get(name))
        if original is not None:
            return functools.partial(original, store)
    return getattr(store, name)


def _unwrapped(fn):
    """The driver method an LRU wrapper wraps, or None if ``fn`` is not
    one.  (``functools.wraps`` sets no ``__wrapped__`` on Python 2: the
    original is the wrapper's closure cell ``f``.)"""
    code = getattr(fn, '__code__', None)
    if code not in _LRU_WRAPPERS:
        return None
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    return cells['f'].cell_contents
