"""Space per repository (``registry-refcount du``), from the truth in
one pass: every tag's chain is read once, each image learns which
repositories reach it, and each repository's images split into those
only it reaches (what deleting it frees) and those it shares.

An image only one repository reaches is not freed by that repository's
delete when an image no tag reaches still stands on it (a push not
tagged yet, an orphan gc has not taken): its ``child-`` marker keeps it.
Those are counted as shared (with "untagged")."""

from __future__ import absolute_import, unicode_literals

import collections

from . import layout
from . import protocols
from . import records
from . import truth


def usage(store, jobs=8):
    """``{'repositories': {name: {tags, images, exclusive_images,
    exclusive_bytes, shared_bytes, bytes}}, 'images', 'bytes',
    'reclaimable_bytes'}``; names as the registry shows them."""
    tags, _ = truth.read_tags(store, jobs)
    chains = {}
    for image in set(tags.values()):
        chains[image] = protocols.chain_of(store, image)
    present = [layout.text(n) for n in records.listing(store, layout.IMAGES)
               if layout.valid_id(n)]
    sizes = dict(zip(present, truth.pool_map(
        lambda i: protocols.layer_size(store, i) or 0, present, jobs)))
    reached_by = collections.defaultdict(set)
    names = {}
    repo_tags = collections.Counter()
    for key, image in tags.items():
        name = names.setdefault(key[:2], key.display.rsplit(':', 1)[0])
        repo_tags[name] += 1
        for each in chains[image]:
            reached_by[each].add(name)
    held = set()            # ancestors of images no tag reaches
    for image in present:
        if image not in reached_by and records.exists(
                store, layout.image_file(image, 'json')):
            held.update(protocols.chain_of(store, image)[1:])
    repos = dict((name, {'tags': n, 'images': 0, 'exclusive_images': 0,
                         'exclusive_bytes': 0, 'shared_bytes': 0,
                         'bytes': 0}) for name, n in repo_tags.items())
    for image, by in reached_by.items():
        size = sizes.get(image, 0)
        for name in by:
            entry = repos[name]
            entry['images'] += 1
            entry['bytes'] += size
            if len(by) == 1 and image not in held:
                entry['exclusive_images'] += 1
                entry['exclusive_bytes'] += size
            else:
                entry['shared_bytes'] += size
    return {'repositories': repos, 'images': len(present),
            'bytes': sum(sizes.values()),
            'reclaimable_bytes': sum(s for i, s in sizes.items()
                                     if i not in reached_by)}
