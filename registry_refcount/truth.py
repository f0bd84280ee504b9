"""The truth, read from storage alone: tag files and image ancestries.

Used by the gc sweep, ``verify``, ``rebuild``, ``status`` and the
invariants checker - the walks that are allowed to touch everything.
Reads run on a pool (``jobs`` at a time: greenlets under gevent, threads
otherwise) because on object storage each read is a round trip; memory
grows with the number of images only (one small tuple each).
"""

from __future__ import absolute_import, unicode_literals

import contextlib
import logging
import sys

from . import layout
from . import protocols
from . import records

logger = logging.getLogger(__name__)


def pool_map(fn, items, jobs=8, tick=None, pool=None):
    """``[fn(x) for x in items]``, ``jobs`` at a time, order kept;
    ``tick()`` after each item (progress).  ``pool``: one from
    :func:`workers` to use instead of starting one for this call."""
    return list(pool_imap(fn, items, jobs, tick, pool))


def pool_imap(fn, items, jobs=8, tick=None, pool=None):
    """:func:`pool_map` as a generator: each result is yielded as soon as
    it and those before it are done, so a caller that folds the results
    into something smaller (the mark) never holds them all."""
    items = list(items)
    tick = tick or (lambda: None)
    if pool is None and len(items) <= 1:
        pool = _Serial()
    if pool is None:
        with workers(jobs) as own:
            for result in _results(own.imap(fn, items)):
                yield result
                tick()
    else:
        for result in _results(pool.imap(fn, items)):
            yield result
            tick()


def _results(iterator):
    """A pool's results as they come, the wait interruptible: Python 2
    delivers no Ctrl-C to a thread blocked on a lock without a timeout,
    so the operator's interrupt would wait for the last task queued."""
    threads = sys.modules.get('multiprocessing.pool')   # imported if used
    if threads is None or not isinstance(iterator, threads.IMapIterator):
        for result in iterator:
            yield result
        return
    while True:
        try:
            yield iterator.next(1)
        except threads.TimeoutError:
            continue
        except StopIteration:
            return


class _Serial(object):
    """The pool of ``jobs <= 1``: everything in the caller's thread."""

    def imap(self, fn, items):
        return (fn(x) for x in items)


@contextlib.contextmanager
def workers(jobs=8):
    """A pool of ``jobs`` workers for several :func:`pool_map` calls: one
    walk in batches (the sweep) then starts its threads once, not twice
    per batch, and has them all exited when it ends.  (Pools that are not
    joined leave their threads, and the stacks and malloc arenas those
    touched, alive while the next batch starts more.)

    Greenlets when gevent has patched ``socket``, threads otherwise.
    gevent is not imported unless its monkey-patching already is: a CLI
    process that does not use it should not pay for loading it (~1 MB)."""
    pool = None
    if jobs <= 1:
        pool = _Serial()
    elif 'gevent.monkey' in sys.modules:
        from gevent import monkey
        if monkey.is_module_patched('socket'):
            from gevent.pool import Pool
            pool = Pool(jobs)
    if pool is None:
        from multiprocessing.pool import ThreadPool
        pool = ThreadPool(jobs)
    try:
        yield pool
    except BaseException:
        if hasattr(pool, 'terminate'):
            # (Ctrl-C, an error) the tasks queued go; those begun finish,
            # so that none is cut short by the interpreter's exit
            pool.terminate()
            pool.join()
        raise
    else:
        if hasattr(pool, 'close'):
            pool.close()    # its threads exit on their own, soon after


def no_progress(stage, total=None):
    """The default progress reporter: ``progress(stage, total)`` returns
    the ``tick`` to call after each item."""
    return lambda: None


def iter_tags(store):
    """Every tag key that has a tag file (a generator)."""
    for ns, repo in records.repositories(store, layout.REPOSITORIES):
        try:
            for key in protocols.repository_tags(store, ns, repo):
                yield key
        except layout.InvalidName as e:
            logger.error('refcount: skipping tag: %s', e)


def list_tags(store):
    return list(iter_tags(store))


def batches(items, size):
    """Lists of up to ``size`` items from an iterable."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def compact(image_id):
    """What the sweep keeps in memory per reachable image: the first 60
    bits of its id, a machine-sized int (instead of a 64-character
    string).  Two ids sharing them (odds about 1 in 10^8 for a million
    images) only make an unreachable image look reachable: it is kept,
    never the other way round."""
    return int(image_id[:15], 16)


def read_tags(store, jobs=8, progress=no_progress):
    """``{key: image id}`` for every tag file; invalid ones in ``bad``."""
    keys = list_tags(store)
    bad = {}

    def one(key):
        try:
            return protocols.read_tag(store, key)
        except protocols.BadInput as e:
            bad[key] = str(e)
            return None
    values = pool_map(one, keys, jobs, progress('tags', len(keys)))
    return dict((k, v) for k, v in zip(keys, values) if v), bad


def list_images(store):
    return [i for i in records.listing(store, layout.IMAGES)
            if layout.valid_id(i)]


class Image(object):
    """What the walk keeps of one image.  ``has_json``: its json was
    stored (see :func:`protocols.stored_parent`); ``parent`` is then the
    one it names (None for a root), unless ``parent_unknown``: neither
    the json nor the ancestry can say (``problem`` tells why)."""
    __slots__ = ('id', 'parent', 'ancestry', 'has_json', 'deleting',
                 'problem', 'parent_unknown')

    def __init__(self, image_id):
        self.id = image_id
        self.parent = None
        self.ancestry = None
        self.has_json = False
        self.deleting = False
        self.problem = None
        self.parent_unknown = False


def read_image(store, image_id):
    """One image's json parent, ancestry and state (a few reads)."""
    img = Image(image_id)
    img.deleting = bool(protocols.tombstones(store, image_id))
    try:
        parent = protocols.stored_parent(store, image_id)
    except protocols.BadInput as e:
        img.has_json, img.parent_unknown, img.problem = True, True, str(e)
    else:
        if parent is protocols.NOT_STORED:
            return img
        img.has_json, img.parent = True, parent
    try:
        img.ancestry = protocols.read_ancestry(store, image_id)
    except protocols.BadInput as e:
        img.problem = img.problem or str(e)
    return img


def read_images(store, jobs=8, ids=None, progress=no_progress):
    ids = list_images(store) if ids is None else ids
    return dict((i.id, i) for i in pool_map(
        lambda x: read_image(store, x), ids, jobs,
        progress('images', len(ids))))


def mark(tags, images):
    """Mark every image reachable from a tag through its ancestry - or,
    where that is damaged (:func:`ancestry_problem`), its json parents.

    Returns ``(reachable, broken)``: ``broken`` maps a tag to what is wrong
    with its chain (a missing image, a parent neither the json nor the
    ancestry can say).
    """
    reachable = set()
    broken = {}
    for key, top in tags.items():
        img = images.get(top)
        if img is None or not img.has_json:
            broken[key] = 'image %s is missing' % top
            continue
        chain = img.ancestry
        if chain is None or ancestry_problem(images, img):
            chain = json_chain(images, top)
            if chain is None:
                broken[key] = img.problem or 'no ancestry for %s' % top
                continue
        for image_id in chain:
            member = images.get(image_id)
            if member is None or not member.has_json:
                broken[key] = 'ancestor %s of %s is missing' % (image_id, top)
            reachable.add(image_id)
    return reachable, broken


def ancestry_problem(images, img):
    """What is wrong with a stored image's ancestry, None if it is whole:
    missing, malformed, or not what the json parents say (its second id
    is not the json's parent; its last image names a parent: cut
    short).  Only what the json can tell is checked."""
    if not img.has_json:
        return None
    if img.ancestry is None:
        return img.problem or 'image %s has no ancestry' % img.id
    if img.parent_unknown:
        return None             # the json is damaged, not the ancestry
    second = img.ancestry[1] if len(img.ancestry) > 1 else None
    if second != img.parent:
        return ('the ancestry of %s names parent %s, its json %s'
                % (img.id, second, img.parent))
    last = images.get(img.ancestry[-1])
    if last is not None and last.has_json and not last.parent_unknown \
            and last.parent is not None:
        return ('the ancestry of %s ends at %s, whose json names parent '
                '%s: it is truncated' % (img.id, last.id, last.parent))
    return None


def damaged_ancestries(images):
    """Every stored image whose ancestry is not whole, with the one its
    json parents give (None when they cannot: a json that cannot be read,
    an ancestor missing): ``[{'image', 'problem', 'ancestry'}]``."""
    found = []
    for image_id in sorted(images):
        problem = ancestry_problem(images, images[image_id])
        if problem:
            found.append({'image': image_id, 'problem': problem,
                          'ancestry': json_chain(images, image_id)})
    return found


def json_chain(images, top):
    """``[top, parent, ..., root]`` by the json parents, None unless each
    image on the way has a stored json that names its parent."""
    chain, seen = [], set()
    current = top
    while current is not None:
        img = images.get(current)
        if (current in seen or img is None or not img.has_json or
                img.parent_unknown):
            return None
        seen.add(current)
        chain.append(current)
        current = img.parent
    return chain
