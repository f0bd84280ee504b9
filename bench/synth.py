"""Synthetic registries written straight to storage, so that N = 10 000
(part 1) and 100 000 images (part 3) are quick to set up: the registry's
own files for each push and tag, and one design's records consistent with
them (``tests/bench`` checks with ``registry_refcount.invariants`` that a
small one is what the protocols would have built).
"""

from __future__ import absolute_import, unicode_literals

import hashlib
import json
import os
import random
import time

from registry_refcount import layout
from registry_refcount import records

from . import flow


def image_id(name):
    return hashlib.sha256(('bench:%s' % name).encode('utf-8')).hexdigest()


def _bytes(data):
    return data if isinstance(data, bytes) else data.encode('utf-8')


def local_writer(root):
    """``put(path, data)``: plain files under a file driver's root (no
    driver calls: 4x faster, which 100 000 images need)."""
    folders = set()

    def put(path, data):
        target = os.path.join(root, path)
        folder = os.path.dirname(target)
        if folder not in folders and not os.path.isdir(folder):
            os.makedirs(folder)
        folders.add(folder)
        with open(target, 'wb') as f:
            f.write(_bytes(data))
    return put


def store_writer(store):
    """``put(path, data)`` through a driver (S3: moto serves one request at
    a time, so threads would not help)."""
    return lambda path, data: store.put_content(path, _bytes(data))


def write_image(put, image, ancestry_tail=(), marker=True):
    """An image as a finished push leaves it, on ``ancestry_tail`` (its
    parent's ancestry), with its child marker on the parent (``marker``);
    returns its own ancestry."""
    chain = [image] + list(ancestry_tail)
    doc = {'id': image, 'created': '2014-10-01T00:00:00Z'}
    if ancestry_tail:
        doc['parent'] = ancestry_tail[0]
        if marker:
            put(layout.marker_path(ancestry_tail[0],
                                     layout.child_marker(image)), b'')
    for name, data in (('json', json.dumps(doc)), ('layer', b'x' * 480),
                       ('ancestry', json.dumps(chain)),
                       ('_checksum', '["sha256:0"]')):
        put(layout.image_file(image, name), data)
    return chain


def write_tag(put, key, image, design='refcount'):
    """The registry's tag files, and the design's records of the tag
    (``refcount``: its marker and ledger entry; ``baseline``: the image's
    record)."""
    put(layout.tag_file(key), image)
    put('%s/tag%s_json' % (layout.repository_dir(key.namespace,
                                                   key.repository), key.tag),
          json.dumps({'last_update': 1412121600, 'arch': 'amd64'}))
    if design == 'refcount':
        put(layout.marker_path(image, key.marker), str(key))
        put(layout.ledger(key), records.encode({'image': image,
                                                  'tag': str(key)}))
    else:
        put(flow.references_path(image),
              json.dumps({flow.entry_key(key): image}))


def write_state(put):
    put(layout.STATE, records.encode({'initialised': True,
                                        'since': time.time()}))


class Fleet(object):
    """Part 1's registry: ``base`` plus one image and one tag
    ``bench/appNNNNNN:v1`` per app; ``live``: the apps whose tag exists."""

    def __init__(self, put, design):
        self.put, self.design = put, design
        self.base = image_id('base')
        self.live, self.next = [], 0
        write_image(put, self.base)
        write_state(put)

    @staticmethod
    def key(n):
        return layout.TagKey('bench', 'app%06d' % n, 'v1')

    @staticmethod
    def image(n):
        return image_id('app-%d' % n)

    def new_app(self):
        """The number of the next app (the measured pushes take one too)."""
        self.next += 1
        return self.next - 1

    def grow(self, size):
        """Write apps until ``size`` tags are live."""
        while len(self.live) < size:
            n = self.new_app()
            write_image(self.put, self.image(n), [self.base],
                        marker=self.design == 'refcount')
            write_tag(self.put, self.key(n), self.image(n), self.design)
            self.live.append(n)
        if self.design == 'baseline':       # every live tag on the base
            self.put(flow.references_path(self.base), json.dumps(dict(
                (flow.entry_key(self.key(n)), self.image(n))
                for n in self.live)))


def gc_registry(put, images, depth=4, bases=None, untagged=0.05, seed=6):
    """Part 3's registry of about ``images`` images: ``bases`` root images
    (default one per 1 000), chains of ``depth`` images on a random base,
    one tag on each chain's top but on a fraction ``untagged`` of them
    (unreachable: gc candidates); the refcount records consistent."""
    rnd = random.Random(seed)
    bases = bases or max(1, images // 1000)
    chains = max(1, (images - bases) // depth)
    write_state(put)
    base_ids = [write_image(put, image_id('gc-base-%d' % b))[0]
                for b in range(bases)]
    tags = unreachable = 0
    for a in range(chains):
        chain = [rnd.choice(base_ids)]
        for d in range(depth):
            chain = write_image(put, image_id('gc-%d-%d' % (a, d)), chain)
        if rnd.random() < untagged:
            unreachable += depth
        else:
            tags += 1
            write_tag(put, layout.TagKey('gc%03d' % (a % 500), 'app%06d' % a,
                                       'v1'), chain[0])
    return {'images': bases + chains * depth, 'tags': tags,
            'unreachable': unreachable}
