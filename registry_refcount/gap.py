"""Writes the extension did not see, and catching up with them.

The registry may write without the extension: while it was disabled or
its block absent, on a host of the fleet that runs without it, or when a
full disk let a request through untracked (:mod:`.wiring`).  Such a
write leaves a child's json naming a parent that carries no
``child-`` marker, or a tag file naming an image that carries no tag
marker - and a cascade that reaches that parent or image would delete
what the write made needed.

The extension notices these writes by the registry's own files, not by
its own liveness: every registry file that creates a reference (an
image's ``json``, a tag file) gets the storage's time when it is
written.  The record ``extensions/refcount/checked`` holds a time
(``until``, on the storage's clock) up to which every such file has been
checked: its reference carries its marker.  So the unchecked writes are
exactly the files stamped after ``until`` (less :data:`SLACK`, for coarse
timestamps), whoever made them and however short the gap:

* :func:`claims` - before a deletion removes anything: does an unchecked
  write name this image?  Then it is kept (``protocols._tear_down``);
* :func:`catch_up` - in every recovery round: register each unchecked
  write's reference (the handshake of ``protocols.add_reference``; a tag
  through ``reconcile_tag``), reconcile tags deleted unseen, then move
  ``until`` to the time the round began.

Both walk the names of every image and tag and stat their files (no
reads but of the new ones): cheaper than a rebuild, which reads them
all, but not a cost for every deletion.  So :func:`claims` walks only
while a gap is *suspected* (:func:`suspected`): until this process's
first round of :func:`catch_up` found every reference in place, while the
last round of any process found one missing (it records how many beside
the cursor), or after this process let a request through untracked.
Otherwise the answer is no at the cost of one read.  The one write a
deletion can then miss is a host without the extension writing beside
hosts with it, after the last round and before the deletion: the next
round finds it, and from then on every deletion looks (the log says so).
"""

from __future__ import absolute_import, unicode_literals

import errno
import json
import logging
import time

from . import layout
from . import locks
from . import protocols
from . import records

logger = logging.getLogger(__name__)

CHECKED = layout.PREFIX + '/checked'
#: Seconds before ``until`` that are checked again: timestamps may be
#: coarse (a second on S3), and a check is idempotent.
SLACK = 2.0


def no_space(error):
    """Is this error a full disk (or quota)?  Then a request goes through
    untracked, and :func:`catch_up` registers its write later."""
    return getattr(error, 'errno', None) in (errno.ENOSPC, errno.EDQUOT)


# -- the cursor ---------------------------------------------------------------

def _checked(store):
    """``(until, missing)``: the storage time up to which every registry
    write was checked (None: never, every file is unchecked), and how many
    references the last round found missing (None: unknown)."""
    try:
        doc = records.read(store, CHECKED) or {}
    except records.Unreadable:
        return None, None
    try:
        until = float(doc['until']) if 'until' in doc else None
    except (TypeError, ValueError):
        until = None
    missing = doc.get('missing')
    return until, (missing if isinstance(missing, int) else None)


def checked_until(store):
    return _checked(store)[0]


def mark_checked(store, until, missing=0):
    """Move the cursor forward to ``until`` (never back: two rounds may
    end in any order), with the count of references found missing."""
    old, was = _checked(store)
    if old is None or until > old or missing != was:
        records.write(store, CHECKED, {'until': max(until, old or until),
                                       'missing': missing})


#: This process, per storage (the driver object): has a round of
#: :func:`catch_up` found every reference in place, since it started or
#: since it let a request through untracked?
CLEAN = '_refcount_gap_clean'
_untracked = {'since': 0}


def untracked():
    """A request went through without the extension's records (a full
    disk): its write is a gap until the next round."""
    _untracked['since'] += 1


def _set_clean(store, clean):
    store.__dict__[CLEAN] = _untracked['since'] if clean else None


def suspected(store):
    """May a write the extension did not see name an image now?"""
    if store.__dict__.get(CLEAN) != _untracked['since']:
        return True
    until, missing = _checked(store)
    return until is None or missing != 0


def start_checked(store):
    """An empty registry: nothing is unchecked yet."""
    mark_checked(store, records.now(store))


# -- the unchecked writes --------------------------------------------------

def unchecked(store, since):
    """The writes stamped after ``since`` less :data:`SLACK` (all when
    None): ``(images, tags, newest)`` - the ids whose json, the keys whose
    tag file, is unchecked, and the newest of their stamps (None: there
    is none).  It stats every image's json: out of the way of the
    worker's requests (:func:`.records.scan`)."""
    return records.scan(store, _unchecked, store, since)


def _unchecked(store, since):
    """(See :func:`unchecked`.)  Two flat lists and one stamp, the ids as
    the listing gives them (bytes on Python 2), not a ``(kind, id,
    stamp)`` with a unicode id per write: when no cursor is set yet, as
    on a registry's first round, every image is unchecked (bench part 3,
    10 000 images: 420 B per image held through the catch-up, now ~110)."""
    after = None if since is None else since - SLACK
    images, tags, newest = [], [], [None]

    def new(written):
        if written is None or (after is not None and written <= after):
            return False
        if newest[0] is None or written > newest[0]:
            newest[0] = written
        return True
    for name, written in records.stamps(store, layout.IMAGES, 'json',
                                        layout.valid_id):
        if new(written):
            images.append(name)
    for key in _tag_files(store):
        if new(records.stamp(store, layout.tag_file(key))):
            tags.append(key)
    return images, tags, newest[0]


def _tag_files(store):
    """Every tag with a tag file (names the extension cannot handle are
    skipped: it refuses requests with them)."""
    for ns, repo in records.repositories(store, layout.REPOSITORIES):
        try:
            for key in protocols.repository_tags(store, ns, repo):
                yield key
        except layout.InvalidName:
            continue


def names(store, kind, value):
    """The image an unchecked write makes needed: a json's parent, the
    image a tag file names; None when it names none or cannot tell."""
    try:
        if kind == 'tag':
            return protocols.read_tag(store, value)
        parent = protocols.stored_parent(store, value)
        return None if parent is protocols.NOT_STORED else parent
    except (protocols.BadInput, layout.InvalidName) as e:
        logger.warning('refcount: an unchecked write says nothing: %s', e)
        return None


def claims(ctx, image_id):
    """Does a write not yet checked name ``image_id`` (a child's json, a
    tag file)?  A deletion that found no marker asks, after its
    tombstone: such a write made the image needed unseen.  Only while a
    gap is suspected (:func:`suspected`): a walk of every image."""
    store = ctx.store
    if not suspected(store):
        return False
    images, tags, _ = unchecked(store, checked_until(store))
    for kind, value in _writes(images, tags):
        if names(store, kind, value) == image_id:
            logger.warning('refcount: keeping %s: %s %s, written without '
                           'the extension, names it', image_id, kind,
                           getattr(value, 'display', value))
            return True
    return False


def _writes(images, tags):
    """``(kind, value)`` - ``('image', id)``, ``('tag', key)`` - of
    :func:`unchecked`'s lists, an id as text."""
    for image in images:
        yield 'image', layout.text(image)
    for key in tags:
        yield 'tag', key


# -- catching up --------------------------------------------------------------

class Refused(Exception):
    """A reference the catch-up could not add yet (its image is being
    deleted): the cursor stays, and the next round tries again."""


def catch_up(ctx):
    """Register the reference of every unchecked write, then move the
    cursor to the time this round began.  Returns a report; a write that
    could not be registered keeps the cursor where it was."""
    store = ctx.store
    began = records.now(store)
    report = {'registered': 0, 'errors': []}
    since = checked_until(store)
    images, tags, newest = unchecked(store, since)
    for kind, value in _writes(images, tags):
        try:
            report['registered'] += _register(ctx, kind, value)
        except (Refused, protocols.BadInput, layout.InvalidName,
                locks.LockTimeout, EnvironmentError) as e:
            report['errors'].append('%s %s: %s' % (
                kind, getattr(value, 'display', value), e))
    _deleted_tags(ctx, report)
    missing = report['registered']
    if not report['errors'] and (since is None or missing or
                                 _checked(store)[1] or (
                                     newest is not None and newest > since)):
        mark_checked(store, began, missing)  # (else nothing new: no write)
    _set_clean(store, not (missing or report['errors']))
    if report['registered'] or report['errors']:
        logger.warning('refcount: caught up with writes made without the '
                       'extension: %s', report)
    return report


def _register(ctx, kind, value):
    """1 if a missing reference was added, else 0."""
    image = names(ctx.store, kind, value)
    if image is None:
        return 0
    if kind == 'tag':
        return _register_tag(ctx, value, image)
    return _register_child(ctx, value, image)


def _register_child(ctx, child, parent):
    marker = layout.child_marker(child)
    if records.exists(ctx.store, layout.marker_path(parent, marker)):
        return 0
    doc = json.dumps({'at': time.time(), 'by': 'catch-up'})
    if protocols.add_reference(ctx, parent, marker, doc):
        return 1
    if protocols.image_state(ctx.store, parent) == 'deleting':
        raise Refused('parent %s is being deleted' % parent)
    logger.error('refcount: image %s was pushed without the extension on '
                 'parent %s, which is gone: push it again', child, parent)
    return 0


def _register_tag(ctx, key, image):
    store = ctx.store
    if records.exists(store, layout.marker_path(image, key.marker)) and (
            protocols.read_ledger(store, key) == image):
        return 0
    protocols.reconcile_tag(ctx, key)
    return 1


def _deleted_tags(ctx, report):
    """Tags deleted unseen: a ledger entry without a tag file, and no
    request in flight that will reconcile it (its intent).  Their
    reconcile drops the marker (and may delete the image, which asks
    :func:`claims` like any deletion)."""
    store = ctx.store
    owned = None
    for ns, repo in records.repositories(store, layout.LEDGER):
        try:
            keys = list(protocols.ledger_tags(store, ns, repo))
        except layout.InvalidName:
            continue
        for key in keys:
            if records.exists(store, layout.tag_file(key)):
                continue
            owned = _intended(store) if owned is None else owned
            if str(key) in owned or '%s/%s' % (ns, repo) in owned:
                continue
            try:
                protocols.reconcile_tag(ctx, key)
                report['registered'] += 1
            except (protocols.BadInput, locks.LockTimeout,
                    EnvironmentError) as e:
                report['errors'].append('%s: %s' % (key.display, e))


def _intended(store):
    """The tags and repositories that requests in flight name (their
    intents): their own reconcile, or recovery's, is theirs to run."""
    found = set()
    for name in records.listing(store, layout.INTENTS):
        if layout.is_scratch(name):
            continue
        try:
            doc = records.read(store, layout.intent(name)) or {}
        except (records.Unreadable, layout.InvalidName):
            continue
        found.update(doc.get(k) for k in ('tag', 'repository'))
    return found
