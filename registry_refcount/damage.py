"""Damaged records, and exactly what they could decide.

An image's ancestry (``[id, parent, ..., root]``) is what the mark reads
to learn a tag's chain: one read per chain.  A push killed between its
json and its ancestry leaves none; a crash or a full disk can leave one
cut short.  Trusting such an ancestry would leave the rest of the chain
unmarked; refusing to collect anything because of it stops cleanup for
the whole registry.  Instead the chain is *walked*: the ancestry where it
is whole, the json ``parent`` of each image where it is not, so the chain
a damaged record could decide is marked whole, and only where neither
can say (a json that cannot be read and no usable ancestry) is the parent
*unknown*: the caller then protects what the records name as its parent
(the ``child-<id>`` markers the protocols keep on it), and says so.

Every damaged record met is returned as a :class:`Damage`: the image,
what is wrong, and the images it protects (itself and its chain as
walked).  Reads only; the repair (:func:`write_ancestry`) is verify's.
"""

from __future__ import absolute_import, unicode_literals

import json

from . import layout
from . import protocols
from . import records

UNKNOWN = object()      # a parent neither the json nor the ancestry says


class Damage(object):
    """A damaged record on ``image``.  ``unknown``: its parent cannot be
    known from the truth (the chain stops there); ``protects``: the
    images kept because of it, in chain order."""
    __slots__ = ('image', 'problem', 'unknown', 'protects')

    def __init__(self, image, problem, unknown=False):
        self.image = image
        self.problem = problem
        self.unknown = unknown
        self.protects = []

    def as_dict(self):
        return {'image': self.image, 'problem': self.problem,
                'protects': list(self.protects)}


class Ends(object):
    """What the walks learnt of the last image of an ancestry: whether it
    is a root (``None``), names a parent (an id: the ancestry was cut
    short) or cannot tell (:data:`UNKNOWN`).  Shared by every walk of one
    sweep: chains share a few roots, so checking that an ancestry is not
    truncated costs one read per root, not per chain."""

    def __init__(self, store):
        self.store = store
        self.known = {}

    def parent(self, image_id):
        if image_id not in self.known:
            try:
                parent = protocols.stored_parent(self.store, image_id)
            except protocols.BadInput:
                parent = UNKNOWN
            # an ancestor whose json is gone is a broken chain (verify's
            # S1), not a truncated ancestry: the chain ends there
            self.known[image_id] = (None if parent is protocols.NOT_STORED
                                    else parent)
        return self.known[image_id]


def read_chain(store, image_id, ends):
    """``(ancestry, problem)``: the image's ancestry if it is whole, else
    ``(None, what is wrong)``.  Whole: it parses, names valid ids, starts
    with the image, and its last image is a root."""
    try:
        ancestry = protocols.read_ancestry(store, image_id)
    except protocols.BadInput as e:
        return None, str(e)
    last = ends.parent(ancestry[-1])
    if last is None:
        return ancestry, None
    if last is UNKNOWN:
        return None, ('the ancestry of %s ends at %s, which cannot say '
                      'whether it has a parent' % (image_id, ancestry[-1]))
    return None, ('the ancestry of %s ends at %s, whose json names parent '
                  '%s: it is truncated' % (image_id, ancestry[-1], last))


def stored(store, image_id):
    """Was the image's json stored?  An image whose json never came (none
    yet, or torn beside ``_inprogress``: see
    :func:`.protocols.stored_parent`) has no ancestry by right: that is a
    push in flight or abandoned, not damage."""
    try:
        return protocols.stored_parent(store, image_id) is not \
            protocols.NOT_STORED
    except protocols.BadInput:
        return True             # stored, and neither json nor ancestry says


def walk(store, top, ends):
    """``(chain, damages)``: every image ``top`` needs, in order, and the
    damaged records met on the way (each protecting the chain from itself
    on).  The ancestry where it is whole, the json parents where not."""
    chain, damages, seen = [], [], set()
    current = top
    while current is not None:
        if current in seen:
            damages.append(Damage(current, 'the json parents of %s loop '
                                  'back to %s' % (top, current), True))
            break
        ancestry, problem = read_chain(store, current, ends)
        if ancestry is not None:
            chain.extend(i for i in ancestry if i not in seen)
            break
        parent = _json_parent(store, current)
        seen.add(current)
        chain.append(current)
        damages.append(Damage(current, _explain(store, current, problem,
                                                parent),
                              parent is UNKNOWN))
        current = None if parent is UNKNOWN else parent
    for damage in damages:
        damage.protects = chain[chain.index(damage.image):]
    return chain, damages


def _json_parent(store, image_id):
    """The parent the stored json names, or :data:`UNKNOWN`."""
    try:
        parent = protocols.stored_parent(store, image_id)
    except protocols.BadInput:
        return UNKNOWN
    return UNKNOWN if parent is protocols.NOT_STORED else parent


def _explain(store, image_id, problem, parent):
    """What is wrong with an image whose ancestry is not whole, and what
    the walk did about it, in the operator's words."""
    if parent is not UNKNOWN:
        crashed = records.exists(store, layout.image_file(
            image_id, layout.IN_PROGRESS))
        return '%s%s; its chain was followed through the json parents' % (
            problem, ' (a push that stopped before its ancestry: '
            '_inprogress is there)' if crashed else '')
    return ('%s, and its json cannot be read or was never stored: neither '
            'says its parent, so the images whose records name it as a '
            'child are kept, with their chains' % problem)


def expected_ancestry(store, image_id, ends):
    """The ancestry the json parents give, if each of them is whole (a
    list), else None: what verify's repair may write."""
    chain, damages = walk(store, image_id, ends)
    if any(d.unknown for d in damages):
        return None
    return chain


def write_ancestry(store, image_id, ancestry):
    """Write an ancestry as docker-registry does (``generate_ancestry``: a
    JSON list, through the driver), into the image's own folder."""
    if not (ancestry and ancestry[0] == image_id and
            all(layout.valid_id(i) for i in ancestry)):
        raise protocols.BadInput('not an ancestry of %s: %r'
                                 % (image_id, ancestry))
    store.put_content(layout.image_file(image_id, 'ancestry'),
                      json.dumps(list(ancestry)).encode('utf-8'))
