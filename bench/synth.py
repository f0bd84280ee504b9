"""Synthetic registries written straight to storage.

The files are the ones the registry itself writes for a push (``json``,
``ancestry``, ``layer``, ``_checksum``, tag files and tag json), plus the
records of one design, consistent with the truth:

* ``refcount`` (this project): a ``tag-`` marker on every tagged image, a
  ``child-`` marker on every parent, a ledger entry per tag, the state
  document (initialised);
* ``baseline`` (the per-tag list): ``images/<id>/_references`` on every
  ancestor of a tagged image;
* ``none``: only the registry's own files.

Writing directly is what makes N = 10 000 (part 1) and 100 000 images
(part 3) quick to set up; ``tests/bench`` checks with
``registry_refcount.invariants`` that a small one is exactly what the
protocols would have built.
"""

from __future__ import absolute_import, unicode_literals

import errno
import hashlib
import json
import os
import random
import time

from registry_refcount import layout
from registry_refcount import records

from . import baseline

LAYER = b'layer-bytes ' * 40


def image_id(name):
    return hashlib.sha256(('bench:%s' % name).encode('utf-8')).hexdigest()


# -- writers -----------------------------------------------------------------

class LocalWriter(object):
    """Plain files under a file driver's root (fast: no driver calls)."""

    def __init__(self, root):
        self.root = root
        self._dirs = set()

    def put(self, path, data):
        if not isinstance(data, bytes):
            data = data.encode('utf-8')
        target = os.path.join(self.root, path)
        folder = os.path.dirname(target)
        if folder not in self._dirs:
            try:
                os.makedirs(folder)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
            self._dirs.add(folder)
        with open(target, 'wb') as f:
            f.write(data)

    def flush(self):
        pass


class DriverWriter(object):
    """Through a driver's ``put_content`` (object storage), ``jobs`` at a
    time, in batches.  ``factory()`` makes one driver per thread (a boto
    connection is not to be shared between threads)."""

    def __init__(self, factory, jobs=8, batch=2000):
        import threading
        self.factory = factory
        self.jobs = jobs
        self.batch = batch
        self._pending = []
        self._local = threading.local()

    def _store(self):
        store = getattr(self._local, 'store', None)
        if store is None:
            store = self._local.store = self.factory()
        return store

    def put(self, path, data):
        if not isinstance(data, bytes):
            data = data.encode('utf-8')
        self._pending.append((path, data))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self):
        from multiprocessing.pool import ThreadPool
        pending, self._pending = self._pending, []
        if not pending:
            return
        pool = ThreadPool(self.jobs)
        try:
            pool.map(lambda item: self._store().put_content(*item), pending,
                     chunksize=max(1, len(pending) // (self.jobs * 4)))
        finally:
            pool.close()
            pool.join()


# -- the pieces ----------------------------------------------------------------

def write_image(w, image, ancestry_tail=()):
    """An image as a finished push leaves it.  ``ancestry_tail``: the
    parent's ancestry."""
    parent = ancestry_tail[0] if ancestry_tail else None
    doc = {'id': image, 'created': '2014-10-01T00:00:00Z',
           'container_config': {'Cmd': ['/bin/true']}}
    if parent:
        doc['parent'] = parent
    w.put(layout.image_file(image, 'json'), json.dumps(doc))
    w.put(layout.image_file(image, 'ancestry'),
          json.dumps([image] + list(ancestry_tail)))
    w.put(layout.image_file(image, 'layer'), LAYER)
    w.put(layout.image_file(image, '_checksum'), json.dumps(['sha256:0']))
    return [image] + list(ancestry_tail)


def write_tag(w, key, image):
    w.put(layout.tag_file(key), image)
    w.put('%s/tag%s_json' % (layout.repository_dir(key.namespace,
                                                   key.repository), key.tag),
          json.dumps({'last_update': 1412121600, 'docker_version': '1.3.0',
                      'arch': 'amd64', 'os': 'linux'}))


def write_child_marker(w, parent, child):
    w.put(layout.marker_path(parent, layout.child_marker(child)), b'')


def write_tag_records(w, key, image):
    """The tag marker and the ledger entry (design ``refcount``)."""
    w.put(layout.marker_path(image, key.marker), str(key))
    w.put(layout.ledger(key), records.encode({'image': image,
                                              'tag': str(key)}))


def write_state(w):
    w.put(layout.STATE, records.encode({'initialised': True,
                                        'since': time.time()}))


# -- part 1: N tags, each on its own image, on one shared base -----------------

class Fleet(object):
    """``base`` plus one image and one tag ``bench/appNNNNNN:v1`` per app.
    ``live`` is the list of app numbers whose tag exists."""

    def __init__(self, writer, design, store=None):
        assert design in ('refcount', 'baseline', 'none')
        self.w = writer
        self.design = design
        self.store = store          # for the baseline's base record
        self.base = image_id('base')
        self.live = []
        self.next = 0
        write_image(self.w, self.base)
        if design == 'refcount':
            write_state(self.w)
        self.w.flush()

    @staticmethod
    def key(n):
        return layout.TagKey('bench', 'app%06d' % n, 'v1')

    @staticmethod
    def image(n):
        return image_id('app-%d' % n)

    def new_app(self):
        """A number for the next app (used by the measured pushes too)."""
        n = self.next
        self.next += 1
        return n

    def grow(self, size):
        """Write apps until ``size`` tags are live."""
        added = []
        while len(self.live) < size:
            n = self.new_app()
            image, key = self.image(n), self.key(n)
            write_image(self.w, image, [self.base])
            write_tag(self.w, key, image)
            if self.design == 'refcount':
                write_child_marker(self.w, self.base, image)
                write_tag_records(self.w, key, image)
            elif self.design == 'baseline':
                name = baseline.entry_key(key)
                self.w.put(baseline.references_path(image),
                           json.dumps({name: image}))
            added.append(n)
            self.live.append(n)
        self.w.flush()
        if self.design == 'baseline' and added:
            refs = baseline.load(self.store, self.base)
            for n in added:
                refs[baseline.entry_key(self.key(n))] = self.image(n)
            baseline.save(self.store, self.base, refs)
        return added


# -- part 3: a registry of M images for the gc sweep ---------------------------

def gc_registry(w, images, depth=4, bases=None, untagged=0.05, seed=6):
    """Write a registry of about ``images`` images: ``bases`` root images
    (default one per 1 000 images), and chains of ``depth`` images on a
    random base, one tag on each chain's top; a fraction ``untagged`` of
    the chains has no tag (unreachable: gc candidates).  Design
    ``refcount``'s records are written too.  Returns a summary dict."""
    rnd = random.Random(seed)
    bases = bases or max(1, images // 1000)
    apps = max(1, (images - bases) // depth)
    write_state(w)
    base_ids = []
    for b in range(bases):
        base = image_id('gc-base-%d' % b)
        write_image(w, base)
        base_ids.append(base)
    tags = 0
    unreachable = 0
    for a in range(apps):
        chain = [rnd.choice(base_ids)]
        for d in range(depth):
            image = image_id('gc-%d-%d' % (a, d))
            write_image(w, image, chain)
            write_child_marker(w, chain[0], image)
            chain.insert(0, image)
        if rnd.random() < untagged:
            unreachable += depth
            continue
        key = layout.TagKey('gc%03d' % (a % 500), 'app%06d' % a, 'v1')
        write_tag(w, key, chain[0])
        write_tag_records(w, key, chain[0])
        tags += 1
    w.flush()
    return {'images': bases + apps * depth, 'bases': bases, 'chains': apps,
            'depth': depth, 'tags': tags, 'unreachable': unreachable}
