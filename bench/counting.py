"""A storage driver with every call counted: part 1 measures storage
work in operations and bytes, which do not move with the machine's load.
Behind it ``registry_refcount.records`` does not recognise the file driver
and takes its object-storage path (one ``put_content`` per record, as on
S3): the counts are the same, the seconds would not be.
"""

from __future__ import absolute_import, unicode_literals

import collections
import contextlib
import io
import threading

OPS = ('get', 'put', 'exists', 'list', 'remove', 'size', 'stream_write')


class CountingStore(object):
    """``store`` (a ``docker_registry`` driver), counting each call and the
    bytes it moved (content read and written; for a listing, the names
    yielded) by section: ``registry``, or what runs in :meth:`section`."""

    def __init__(self, store):
        self._store, self._lock = store, threading.Lock()
        # one section at a time for the whole object, not per thread: the
        # calls :meth:`.backends.Backend.together` makes at once run in
        # threads of their own, and count in their caller's section
        self._name = 'registry'
        self.reset()

    def reset(self):
        self.counts = collections.defaultdict(collections.Counter)

    @contextlib.contextmanager
    def section(self, name):
        outer, self._name = self._name, name
        try:
            yield
        finally:
            self._name = outer

    def count(self, op, moved=0, calls=1):
        with self._lock:
            c = self.counts[self._name]
            c[op] += calls
            c['bytes'] += moved

    def snapshot(self, section):
        """``{op: calls, 'ops': all calls, 'bytes': moved}``"""
        out = dict(self.counts[section])
        out['ops'] = sum(out.get(op, 0) for op in OPS)
        out.setdefault('bytes', 0)
        return out

    def __getattr__(self, name):
        value = getattr(self._store, name)
        if name == '_boto_bucket':
            return _CountingBucket(value, self)
        return value

    def makeKey(self, path):
        return _CountingKey(self._store.makeKey(path), self)

    def get_content(self, path):
        data = b''
        try:
            data = self._store.get_content(path)
            return data
        finally:
            self.count('get', len(data))

    def exists(self, path):
        self.count('exists')
        return self._store.exists(path)

    def get_size(self, path):
        self.count('size')
        return self._store.get_size(path)

    def list_directory(self, path=None):
        self.count('list')
        for entry in self._store.list_directory(path):
            self.count('list', len(entry), calls=0)
            yield entry

    def put_content(self, path, content):
        self.count('put', len(content))
        return self._store.put_content(path, content)

    def stream_write(self, path, fp):
        data = fp.read()
        self.count('stream_write', len(data))
        return self._store.stream_write(path, io.BytesIO(data))

    def remove(self, path):
        self.count('remove')
        return self._store.remove(path)


class _CountingKey(object):
    """A boto key, counting its read (the extension's one-GET read of a
    record on S3)."""

    def __init__(self, key, counter):
        self._key, self._counter = key, counter

    def __getattr__(self, name):
        return getattr(self._key, name)

    def get_contents_as_string(self, *args, **kwargs):
        try:
            data = self._key.get_contents_as_string(*args, **kwargs)
        except Exception:
            self._counter.count('get')
            raise
        self._counter.count('get', len(data))
        return data


class _CountingBucket(object):
    """A boto bucket, counting the calls the extension makes on it past
    the driver (a one-key listing, a HEAD, a DELETE)."""

    OPS = {'get_all_keys': 'list', 'list': 'list', 'get_key': 'exists',
           'delete_key': 'remove'}

    def __init__(self, bucket, counter):
        self._bucket, self._counter = bucket, counter

    def __getattr__(self, name):
        value = getattr(self._bucket, name)
        if name not in self.OPS:
            return value

        def counted(*args, **kwargs):
            result = value(*args, **kwargs)
            if name == 'list':          # (a ResultSet is a list already)
                result = list(result)
            self._counter.count(self.OPS[name], sum(
                len(k.name) for k in result) if isinstance(result, list)
                else 0)
            return result
        return counted
