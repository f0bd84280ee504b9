"""The reference protocols (DESIGN.md section 5), as plain functions over a
storage driver and a lock provider.

The signals, recovery, the gc sweep and the CLI all call these same
functions through a :class:`Context`.  Each function reads the truth (tag
files, image json) under the lock of what it changes, so it is idempotent
and may be run again after a crash at any point.

An image is *needed* while it has any marker under ``_references/``: a tag
(``tag-<digest>``), an existing child (``child-<id>``) or a tag write in
flight (``pending-<intent>``).  Removing the last marker deletes it, and
the deletion removes its marker from its parent: the cascade.

Deleting an image (all under the image's lock):

1. journal ``extensions/refcount/deleting/<id>`` (parent, reason) - so that
   recovery finds unfinished deletions without listing every image;
2. tombstone ``images/<id>/_deleting`` - refuses new references;
3. check again that no marker appeared, else cancel;
4. remove ``json`` (the registry now treats the image as absent), then
   every other file by its own path (the LRU cache is per path);

then, without the lock, remove ``child-<id>`` from the parent (which may
continue the cascade there) and only then drop the tombstone and journal.
"""

from __future__ import absolute_import, unicode_literals

import collections
import json
import logging
import time

from docker_registry.core import exceptions

from . import audit
from . import crash
from . import history
from . import layout
from . import locks
from . import owner
from . import records
from . import trash

logger = logging.getLogger(__name__)

#: What the protocols work with.  ``by`` names the caller in the audit
#: log.  ``undo_window``: seconds an image that loses its last referrer
#: waits in the trash (0: it is torn down at once; gc's own deletions and
#: the purge's always are).  ``purging``: the purge's, which tears down
#: what waits in the trash.
Context = collections.namedtuple('Context',
                                 'store locks dry_run by undo_window purging')


def context(store, locks, dry_run=False, by='online', undo_window=0):
    return Context(store, locks, dry_run, by, undo_window, False)


class BadInput(Exception):
    """Storage says something the extension will not act on (an invalid
    id, a missing ancestry): logged, and nothing is deleted."""


KEPT = object()      # a tear-down that did not happen
UNKNOWN = object()   # a ledger entry that cannot be read
NOT_STORED = object()  # an image whose json never came (stored_parent)
_ABSENT = object()       # no json (_json_parent)
_UNREADABLE = object()   # a json that cannot be read (_json_parent)


# -- state -----------------------------------------------------------------

def is_initialised(store):
    """True once every image has its markers: only then may we delete.
    (Remembered on the driver object once true: it never goes back.)"""
    if getattr(store, '_refcount_initialised', False):
        return True
    try:
        doc = records.read(store, layout.STATE)
    except records.Unreadable:
        return False
    if doc and doc.get('initialised') is True:
        store._refcount_initialised = True
        return True
    return False


def move_predecessor_aside(store):
    """Before anything is written under ``extensions/refcount/``: the
    per-tag-list extension (docker-registry PR #606) kept its version
    record in a *file* of that name, where our folder goes.  It is moved
    aside to :data:`.layout.PREDECESSOR_INFO_ASIDE` (it says only that
    PR #606 initialised its records; its per-image records are honoured
    until ``rebuild`` converts them).  None, or what to tell the
    operator (the caller says it: the registry's logging is not set up
    yet when its workers boot)."""
    if not records.move_file_aside(store, layout.PREFIX,
                                   layout.PREDECESSOR_INFO_ASIDE):
        return None
    return ('refcount: moved the version record of the per-tag-list '
            'extension (docker-registry PR #606) from %s aside to %s; its '
            'per-image records count as references until `registry-refcount '
            'rebuild` converts them' % (layout.PREFIX,
                                       layout.PREDECESSOR_INFO_ASIDE))


def initialise(store):
    """On first start: an empty registry is initialised at once; one that
    already holds images only tracks references until ``rebuild``."""
    try:
        if records.read(store, layout.STATE) is not None:
            return is_initialised(store)
    except records.Unreadable:
        return False
    empty = next(iter(records.listing(store, layout.IMAGES)), None) is None
    if empty:
        from . import gap
        gap.start_checked(store)     # no write is unchecked yet
    records.write(store, layout.STATE, {'initialised': empty,
                                        'since': time.time()})
    if not empty:
        logger.warning('refcount: this registry already holds images; '
                       'references are tracked but nothing is deleted until '
                       '`registry-refcount rebuild` has run')
    return empty


def record_lockspace(store, lock_provider):
    """At a worker's start: record in storage which lock space the
    registry's workers lock in (:meth:`.locks.LocalLocks.identity`), so
    that a command run with other locks can find out and refuse."""
    identity = lock_provider.identity()
    try:
        if (records.read(store, layout.LOCKSPACE) or {}).get(
                'identity') == identity:
            return identity
    except records.Unreadable:
        pass
    records.write(store, layout.LOCKSPACE, {'identity': identity,
                                            'host': owner.host()})
    return identity


def lockspace_mismatch(store, lock_provider):
    """None if this process locks where the registry's workers do (or no
    worker has said where it locks); else a sentence saying the two."""
    try:
        doc = records.read(store, layout.LOCKSPACE)
    except records.Unreadable:
        return None
    if not doc or not doc.get('identity'):
        return None
    mine = lock_provider.identity()
    if doc['identity'] == mine:
        return None
    return ('the registry\'s workers lock in %s (host %s), this command in '
            '%s: they would not exclude each other.  Run it with the '
            'registry\'s own configuration (lock_backend, lock_dir, redis), '
            'on its host, or stop the registry first and pass '
            '--ignore-lockspace' % (doc['identity'], doc.get('host'), mine))


def set_initialised(store):
    records.write(store, layout.STATE, {'initialised': True,
                                        'since': time.time()})


# -- reading the truth ------------------------------------------------------

def read_tag(store, key):
    """The image id a tag file names, None if there is no tag file.
    :class:`BadInput` if it names no valid id, or is there but cannot be
    read (a folder, a permission error): never taken for an absent tag."""
    for attempt in range(EMPTY_READS):
        try:
            value = records.read_file(store, layout.tag_file(key),
                                      probe=True)
        except EnvironmentError as e:
            raise BadInput('tag %s cannot be read: %s' % (key.display, e))
        if value is None:
            return None
        if value:
            break
        # the registry rewrites a tag file in place (truncate, then
        # write): read in between, it is empty for a moment
        time.sleep(EMPTY_WAIT)
    value = layout.text(value)     # not stripped: '<id>\n' is another image
    if not layout.valid_id(value):
        raise BadInput('tag %s names an invalid image id %r (a torn or '
                       'edited tag file: nothing is deleted on its word; '
                       'push the tag again, or delete it)'
                       % (key.display, value[:80]))
    return value


#: Reads of a tag file found empty, and the wait between them, before it
#: counts as torn.
EMPTY_READS, EMPTY_WAIT = 5, 0.02


def parent_of(store, image_id):
    """The parent id of an image (None for a root), from its json, or from
    its ancestry when the json is missing or cannot be read.
    :class:`BadInput` when neither says, or either names an invalid id."""
    parent = _json_parent(store, image_id)
    if parent is _ABSENT or parent is _UNREADABLE:
        return _ancestry_parent(store, image_id)
    return parent


def stored_parent(store, image_id):
    """The parent an image's stored json names (None for a root), or
    :data:`NOT_STORED` while its json never came: no json yet, or one a
    crash tore while the registry wrote it.  The registry writes its
    ``_inprogress`` mark before the json and drops it only once the push
    is complete, so an unreadable json beside that mark is a push that
    never finished (the registry refuses the image and takes its json
    again); without the mark it is a finished image damaged, whose parent
    the ancestry must say (:class:`BadInput` if it cannot)."""
    parent = _json_parent(store, image_id)
    if parent is _ABSENT:
        return NOT_STORED
    if parent is _UNREADABLE:
        if records.exists(store, layout.image_file(image_id,
                                                   layout.IN_PROGRESS)):
            return NOT_STORED
        return _ancestry_parent(store, image_id)
    return parent


def _json_parent(store, image_id):
    """The parent the json names, or :data:`_ABSENT` / :data:`_UNREADABLE`."""
    try:
        data = records.read_file(store, layout.image_file(image_id, 'json'))
    except EnvironmentError:
        return _UNREADABLE
    if data is None:
        return _ABSENT
    try:
        data = json.loads(layout.text(data))
    except (ValueError, UnicodeDecodeError):
        return _UNREADABLE
    if not isinstance(data, dict):
        return _UNREADABLE
    parent = data.get('parent') or None
    if parent is not None and not layout.valid_id(parent):
        raise BadInput('image %s names an invalid parent %r'
                       % (image_id, parent))
    return parent and layout.text(parent)


def _ancestry_parent(store, image_id):
    ancestry = read_ancestry(store, image_id)
    return ancestry[1] if len(ancestry) > 1 else None


def read_ancestry(store, image_id):
    """``[id, parent, ..., root]``, validated; :class:`BadInput` if missing
    or malformed."""
    try:
        data = records.read_file(store, layout.image_file(image_id,
                                                          'ancestry'))
    except EnvironmentError as e:
        raise BadInput('image %s has an unreadable ancestry: %s'
                       % (image_id, e))
    if data is None:
        raise BadInput('image %s has no ancestry' % image_id)
    try:
        data = json.loads(layout.text(data))
    except (ValueError, UnicodeDecodeError):
        raise BadInput('image %s has an unreadable ancestry' % image_id)
    if (not isinstance(data, list) or not data or data[0] != image_id
            or not all(layout.valid_id(i) for i in data)):
        raise BadInput('image %s has a malformed ancestry' % image_id)
    return [layout.text(i) for i in data]


def chain_of(store, image_id):
    """The image's ancestry, ``[id, parent, ..., root]``, or just ``[id]``
    when it cannot be read: for what only counts (sizes, who reaches
    what), never for a deletion."""
    try:
        return read_ancestry(store, image_id)
    except BadInput:
        return [image_id]


def tombstones(store, image_id):
    """The tokens of the deletions under way on an image ('' for the
    single tombstone of earlier versions): one listing."""
    found = []
    for name in records.names_starting(store, layout.image_dir(image_id),
                                       layout.TOMBSTONE):
        token = layout.tombstone_token(name)
        if token is not None:
            found.append(token)
    return found


def image_state(store, image_id):
    """``live``, ``deleting`` (a tombstone) or ``gone`` (no json).  The
    tombstones are read no later than the json (one listing on S3): a
    deletion removes the json before its tombstone, so an image that shows
    its json and no tombstone was not wholly deleted before the read."""
    names, has_json = records.names_then(store, layout.image_dir(image_id),
                                         layout.TOMBSTONE, 'json')
    if any(layout.tombstone_token(name) is not None for name in names):
        return 'deleting'
    return 'live' if has_json else 'gone'


def needed(store, image_id):
    """Any marker under ``_references/``, or a per-tag-list file of the
    earlier extension not yet converted (one operation, however many
    markers: see :func:`records.referenced`)."""
    return records.referenced(store, image_id)


# -- references --------------------------------------------------------------

def add_reference(ctx, image_id, marker, content=b'', same_as=None,
                  sync=False):
    """Write a marker on a live image.  False, and nothing left written,
    if the image is gone or being deleted.

    The marker is written first and the image checked after; a deletion
    writes its tombstone first and checks for markers after (see
    :func:`_tear_down`).  So one of the two always sees the other,
    whatever the locks do: locks decide only who waits, never whether a
    needed image survives.  Seeing a tombstone - even one a deletion is
    about to cancel - refuses: the caller tries again or fails loudly,
    and the marker goes again, unless it is a tag's.
    ``same_as``: a record whose content will do for the marker's (linked
    to it on local storage).  ``sync``: the marker's content and, once
    accepted, its name are durable when this returns (a hold: see
    docs/design.rst, *Power loss*); other callers sync the name
    themselves where an order needs it.
    """
    _put_marker(ctx.store, image_id, marker, content, same_as, sync)
    crash.point('add_before_check')
    return _accepted(ctx, image_id, marker, sync)


def _put_marker(store, image_id, marker, content, same_as=None, sync=False):
    if not (same_as and records.link(
            store, same_as, layout.marker_path(image_id, marker))):
        records.write_marker(store, image_id, marker, content, sync=sync)


def _accepted(ctx, image_id, marker, sync=False):
    """The second half of :func:`add_reference`: the image checked after
    its marker was written; a refused marker taken back."""
    store = ctx.store
    if image_state(store, image_id) == 'live':
        if sync:
            records.sync_names(store, layout.marker_path(image_id, marker))
        return True
    if not marker.startswith(layout.TAG_PREFIX):
        # (a tag's marker is one file for every writer of that tag: it may
        # be another's by now, and is left - on an image being deleted, a
        # marker errs on the safe side)
        records.remove_marker(store, image_id, marker)
        _prune_folder(store, image_id)
    return False


class Busy(locks.LockTimeout):
    """An image is being deleted while this work needs it to stay: a
    deletion that will cancel (it sees our reference), or one that has not
    decided yet.  The work is left as it is (its intent stays) and tried
    again later."""


#: How often, and how long apart, a reference refused by a deletion that
#: is cancelling is tried again before the work is left to recovery.
RETRIES, RETRY_WAIT = 5, 0.02


def add_reference_patiently(ctx, image_id, marker, content=b''):
    """:func:`add_reference` for work that must not go on without the
    reference (a tag's marker before its pending marker goes): while the
    image is only being deleted - a deletion that sees a pending marker or
    a hold cancels - try again; :class:`Busy` if it stays so.  False if
    the image is gone."""
    for attempt in range(RETRIES):
        if add_reference(ctx, image_id, marker, content):
            return True
        if image_state(ctx.store, image_id) == 'gone':
            return False
        time.sleep(RETRY_WAIT)
    raise Busy('image %s stays being deleted; %s not added, left for later'
               % (image_id, marker))


def remove_reference(ctx, image_id, marker, reason):
    """Drop one referrer; delete the image if it was the last one, and go
    on up the ancestry while parents lose their last child."""
    _cascade(ctx, None, image_id, marker, reason)


def purge(ctx, image_id, reason):
    """Tear down an image whose time in the trash has come (or that an
    operator purges now), if nothing references it, and cascade - at once,
    up the ancestry too: the window was the chain's.  Returns the images
    torn down, as :func:`collect`."""
    return _cascade(ctx._replace(undo_window=0, purging=True), None,
                    image_id, None, reason)


def collect(ctx, image_id, reason):
    """gc: delete an unreachable image if nothing references it (even one
    whose json was never stored), and cascade.  Returns the images this
    call deleted, the cascade's included: none if ``image_id`` was
    referenced again, or deleted meanwhile by another path."""
    return _cascade(ctx, None, image_id, None, reason, partial=True)


def _cascade(ctx, finished, image_id, marker, reason, partial=False):
    """Remove ``marker`` from ``image_id``, tear the image down if nothing
    needs it any more, and repeat on its parent.  ``finished`` is ``(image,
    token)`` of a deletion whose marker this is; its tombstone and journal
    go only once the marker is off its parent.  (A deletion that stops
    here on an error is left to recovery, at once: see :mod:`.owner`.)
    Returns the images torn down, in order."""
    torn_down = []
    try:
        while image_id is not None:
            with ctx.locks.image(image_id):
                if marker is not None and not _take_marker(
                        ctx.store, image_id, marker):
                    torn = KEPT
                else:
                    torn = _maybe_tear_down(ctx, image_id, reason, partial)
                partial = False
            if finished is not None:
                _finalize(ctx, *finished)
                finished = None
            if torn is KEPT:
                return torn_down
            torn_down.append(image_id)
            crash.point('between_cascade_steps')
            parent, token = torn
            finished = (image_id, token)
            marker = layout.child_marker(image_id)
            reason = 'its last child %s was deleted' % image_id
            image_id = parent
        if finished is not None:
            _finalize(ctx, *finished)
        return torn_down
    except BaseException:
        if finished is not None:
            owner.end(finished[1])
        raise


def _take_marker(store, image_id, marker):
    """Remove a marker; False if it was not there.  Then an earlier run of
    this very step removed it, and the image's fate was decided there
    (deleted, journalled, or - if that run stopped in between - left to
    gc): deciding it again could tear down the image pushed anew since
    (a tag write's pending marker released by recovery after the image
    was deleted and pushed again)."""
    if not records.exists(store, layout.marker_path(image_id, marker)):
        return False
    records.remove_marker(store, image_id, marker)
    return True


def _maybe_tear_down(ctx, image_id, reason, partial=False):
    """Holding the image's lock (which only spares work: see
    :func:`_tear_down`): tear it down if nothing needs it.  Returns
    ``(parent, token)`` (parent None for a root) or :data:`KEPT`.
    ``partial``: also an image whose json was never stored (gc only)."""
    store = ctx.store
    if needed(store, image_id):
        return KEPT
    if tombstones(store, image_id):
        return KEPT          # another deletion (or recovery) owns it
    if not (ctx.undo_window or ctx.purging) and trash.waiting(store,
                                                              image_id):
        return KEPT          # in the trash, its time not come: the purge's
    try:
        parent = stored_parent(store, image_id)
    except BadInput as e:
        logger.error('refcount: not deleting %s: %s', image_id, e)
        return KEPT
    if parent is NOT_STORED:
        if not (partial and next(iter(records.listing(
                store, layout.image_dir(image_id))), None)):
            return KEPT      # never stored, or already gone: gc's business
        try:
            parent = parent_of(store, image_id)
        except BadInput:
            parent = None    # its registration, if any, is gc's to clean
        if ctx.dry_run:
            return KEPT
        return _tear_down(ctx, image_id, parent, reason)
    if ctx.dry_run or not is_initialised(store):
        audit.deleted(image_id, reason + (
            '' if ctx.dry_run else ' (registry not initialised: run '
            '`registry-refcount rebuild`)'), layer_size(store, image_id),
            dry_run=True, by=ctx.by)
        return KEPT
    if ctx.undo_window:
        # (again if it has a record: a marker just came off, so it was
        # referenced again since - rescued - and its window starts anew)
        crash.point('before_trash_record')
        trash.put(ctx, image_id, reason)
        return KEPT
    return _tear_down(ctx, image_id, parent, reason)


def _step(ctx, point=None):
    """A named point before a destructive step or a record's write: crash
    or pause there in the fault tests, then make sure every lock this task
    holds is still ours (:class:`.locks.LockLost` if not: the work is left
    to recovery).  Safety does not depend on it; a lost lock found here
    only spares the records an interleaving that recovery would have to
    mend (a ledger written from a tag file read before another holder's
    write)."""
    if point is not None:
        crash.point(point)
    verify = getattr(ctx.locks, 'verify', None)
    if verify is not None:
        verify()


def _tear_down(ctx, image_id, parent, reason):
    """Delete an image nothing needed a moment ago: the deleter's journal
    entry and tombstone first, then - only if still no marker is there -
    its files.  A reference added meanwhile was written before its writer
    looked for tombstones (:func:`add_reference`): either this check sees
    it and the deletion cancels, or its writer sees our tombstone and
    gives up.  Each deleter has a tombstone of its own, so a deletion that
    cancels never removes the tombstone another one relies on."""
    store = ctx.store
    crash.point('before_tombstone')
    token = new_intent_id()
    doc = {'image': image_id, 'parent': parent, 'reason': reason,
           'at': time.time(), 'by': ctx.by, 'token': token,
           'owner': owner.me()}
    owner.begin(token)
    try:
        records.write(store, layout.journal(image_id, token), doc,
                      sync=True)
        # the tombstone holds the same document: on local storage it is
        # another name of the journal entry
        if not records.link(store, layout.journal(image_id, token),
                            layout.tombstone(image_id, token)):
            records.put(store, layout.tombstone(image_id, token),
                        json.dumps(doc).encode('utf-8'))
        crash.point('after_tombstone')
        crash.point('teardown_before_check')
        # the two checks and the layer's size (for the audit) at once: one
        # round trip on object storage, not three
        referenced, claimed, size = records.values(records.together(
            store, lambda: needed(store, image_id),
            lambda: _claimed(ctx, image_id),
            lambda: layer_size(store, image_id)))
        if referenced or claimed:
            # a marker written meanwhile, or a write the extension did
            # not see (:mod:`.gap`) names the image
            _finalize(ctx, image_id, token)
            return KEPT
        # the journal entry and the tombstone reach the disk before the
        # json's removal can: else a power loss may leave an image without
        # json and without a record that it was being deleted
        records.sync_names(store, layout.journal(image_id, token),
                           layout.tombstone(image_id, token))
        # (no lock is verified here: the handshake alone guards a
        # deletion, and one stopped on a lost lock left its image, whose
        # last marker had gone, to gc)
        crash.point('teardown_before_json')
        _remove_files(store, image_id)
    except BaseException:
        owner.end(token)
        raise
    audit.deleted(image_id, reason, size, by=ctx.by)
    return parent, token


def _remove_files(store, image_id):
    """``json`` first, then every other file by its own path (tombstones
    stay: each goes with its own deletion).  The removals reach the disk
    before the parent loses this image's ``child-`` marker: else a power
    loss may bring back a child whose parent is gone."""
    json_path = layout.image_file(image_id, 'json')
    _remove(store, json_path)
    crash.point('after_json_removed')
    paths = [layout.image_file(image_id, name) for name in
             records.listing(store, layout.image_dir(image_id))
             if name != 'json' and layout.tombstone_token(name) is None]
    # the other files at once (one round trip on object storage), and its
    # trash record, if any, with them: never one on the same id pushed
    # again
    records.values(records.together(store, *[
        lambda path=path: _remove(store, path) for path in paths] + [
        lambda: trash.forget(store, image_id),
        lambda: records.remove_scratch(store,
                                       layout.references_dir(image_id))]))
    records.removed(store, [json_path] + paths)
    records.sync_names(store, json_path)


def _claimed(ctx, image_id):
    """Does a registry write the extension has not checked yet name the
    image (:func:`.gap.claims`)?  (Imported here: :mod:`.gap` uses this
    module.)"""
    from . import gap
    return gap.claims(ctx, image_id)


def _finalize(ctx, image_id, token):
    """Last step of a deletion: drop its tombstone, the empty folder (local
    storage, only if empty: a new push of the same id may have begun, or
    another deletion holds a tombstone) and its journal entry."""
    crash.point('before_finalize')
    store = ctx.store
    records.remove(store, layout.tombstone(image_id, token))
    _prune_folder(store, image_id)
    records.remove(store, layout.journal(image_id, token))
    owner.end(token)


def _prune_folder(store, image_id):
    """Remove an image's folder if it is empty (only then: a new push of
    the same id may have begun in it)."""
    records.remove_empty_folders(store, layout.references_dir(image_id),
                                 layout.image_dir(image_id))


def finish_deletion(ctx, image_id, token=None):
    """Recovery: complete (or cancel) a deletion that left a journal entry
    (``token``: the deleter's; None for one of an earlier version).  Only
    for a deleter known to be gone (see :mod:`.recovery`).

    Without its tombstone there is nothing to finish: either the deletion
    was finalised (tombstone gone, journal not yet), or it stopped before
    its tombstone, which is before anything was removed (gc frees the
    image then).  The image may have been pushed again meanwhile, so it is
    not touched; only the journal entry goes."""
    store = ctx.store
    if not records.exists(store, layout.tombstone(image_id, token)):
        records.remove(store, layout.journal(image_id, token))
        return True
    try:
        doc = records.read(store, layout.journal(image_id, token))
    except records.Unreadable:
        doc = None
    if doc is None:
        doc = _tombstone_doc(store, image_id, token)
    if doc is None:
        return _finish_unrecorded(ctx, image_id, token)
    if 'parent' not in doc:
        logger.error('refcount: cannot finish deletion of %s: its journal '
                     'entry does not say its parent', image_id)
        return False
    parent = doc.get('parent')
    if parent is not None and not layout.valid_id(parent):
        logger.error('refcount: journal of %s names invalid parent %r',
                     image_id, parent)
        return False
    with ctx.locks.image(image_id):
        if records.exists(store, layout.image_file(image_id, 'json')):
            # the json goes first: while it is there nothing is removed yet
            if needed(store, image_id):
                logger.info('refcount: cancelling deletion of %s: it is '
                            'referenced again', image_id)
                _finalize(ctx, image_id, token)
                return True
            size = layer_size(store, image_id)
            _remove_files(store, image_id)
            audit.deleted(image_id, doc.get('reason', '?') +
                          ' (finished by recovery)', size, by=ctx.by)
        else:
            _remove_files(store, image_id)
    if parent is None:
        _finalize(ctx, image_id, token)
    else:
        _cascade(ctx, (image_id, token), parent,
                 layout.child_marker(image_id),
                 'its last child %s was deleted' % image_id)
    return True


def _finish_unrecorded(ctx, image_id, token):
    """A deletion whose journal entry and tombstone (one inode on local
    storage) came back unreadable, emptied by a power loss: what it was
    doing is lost, so nothing is decided on its word.  While the json is
    there it had removed nothing (the json goes first): it is cancelled,
    and gc judges the image again.  Without the json it had decided: the
    image's other files go, and its parent's ``child-`` marker is left to
    gc (a marker of a child without json is stale once its writer is
    gone).  Either way the tombstone goes: it never blocks for ever."""
    store = ctx.store
    with ctx.locks.image(image_id):
        whole = records.exists(store, layout.image_file(image_id, 'json'))
        if not whole:
            _remove_files(store, image_id)
    logger.warning('refcount: the record of a deletion of %s could not be '
                   'read (a power loss?); %s', image_id,
                   'cancelled it' if whole else 'finished its removals, '
                   'its parent is left to gc')
    _finalize(ctx, image_id, token)
    return True


def _tombstone_doc(store, image_id, token=None):
    try:
        doc = json.loads(layout.text(records.read_raw(
            store, layout.tombstone(image_id, token)) or b''))
        return doc if isinstance(doc, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None


def layer_size(store, image_id):
    try:
        return store.get_size(layout.image_file(image_id, 'layer'))
    except (exceptions.FileNotFoundError, OSError):
        return 0


def _remove(store, path):
    records.remove_file(store, path)


def marker_doc(store, image_id, marker):
    """A pending, child or hold marker's content as a dict ({} if it has
    none: written by repair or an older version)."""
    try:
        doc = json.loads(layout.text(records.marker_content(
            store, image_id, marker)))
        return doc if isinstance(doc, dict) else {}
    except Exception:
        return {}


def in_flight(store, image_id, marker, min_age, now):
    """May the work that wrote this marker (a child push whose json has not
    come, a reconcile's hold) still be under way?  Not once its owner is
    known to be gone (:func:`.owner.alive`); else while the marker is
    younger than ``min_age`` on the storage's clock (``now`` from
    :func:`.records.now`): such work lasts one request, and a worker lives
    for many, so a live owner does not tell."""
    kind, value = layout.check_marker(marker)
    if owner.alive(marker_doc(store, image_id, marker).get('owner'),
                   value if kind in ('hold', 'pending') else None) is False:
        return False
    written = records.stamp(store, layout.marker_path(image_id, marker))
    if written is None:
        return False              # gone meanwhile
    return now - written < min_age


def marker_tag(store, image_id, marker):
    """The tag a tag marker stands for, from its content (None if torn)."""
    content = records.marker_content(store, image_id, marker)
    if content is None:
        return None
    try:
        key = layout.TagKey.parse(content)
    except (layout.InvalidName, ValueError, UnicodeDecodeError):
        return None
    return key if key.marker == marker else None


def drop_stale_marker(ctx, image_id, marker, min_age, key=None, now=None,
                      unclaimed=False):
    """Remove a marker the truth no longer supports - checked again, so a
    referrer that appeared since the caller looked is kept: a tag marker
    whose tag names another image (``key`` when its content is torn;
    through :func:`drop_tag_marker`), a pending marker without an intent
    and no longer in flight (:func:`pending_stale`),
    a child marker whose child names another parent, or never got its
    json (see :func:`stored_parent`) and is no longer in flight (see
    :func:`in_flight`), a hold whose reconcile is over.  Returns True if
    removed.  Never deletes the image.

    A torn tag marker of a tag nobody can name goes only if the caller saw
    no tag file and no ledger entry with its digest (``unclaimed``) and it
    is still torn under the image's lock (verify --repair only: it is
    the lock that keeps a reconcile from rewriting it meanwhile)."""
    store = ctx.store
    now = records.now(store) if now is None else now
    kind, value = layout.check_marker(marker)
    if kind == 'tag':
        key = marker_tag(store, image_id, marker) or key
        if key is None and unclaimed:
            with ctx.locks.image(image_id):
                if marker_tag(store, image_id, marker) is None:
                    records.remove_marker(store, image_id, marker)
                    return True
            key = marker_tag(store, image_id, marker)
        if key is None or key.marker != marker:
            return False          # cannot tell which tag: keep it
        with ctx.locks.tag(key):
            return drop_tag_marker(ctx, key, image_id, None)
    with ctx.locks.image(image_id):
        if kind == 'pending':
            if not pending_stale(store, image_id, marker, min_age, now):
                return False
        elif kind == 'hold':
            if in_flight(store, image_id, marker, HOLD_AGE, now):
                return False
            return retire_hold(ctx, image_id, marker)
        elif not child_marker_stale(store, image_id, value, min_age, now):
            return False
        records.remove_marker(store, image_id, marker)
    return True


def child_marker_stale(store, image_id, child, min_age, now):
    """Does the truth not support ``image_id``'s marker of ``child``: the
    child names another parent, or its json never came (see
    :func:`stored_parent`) and its push is no longer in flight (see
    :func:`in_flight`)?  What cannot be told counts as supported."""
    try:
        parent = stored_parent(store, child)
    except BadInput:
        return False
    if parent is NOT_STORED:
        return not in_flight(store, image_id, layout.child_marker(child),
                             min_age, now)
    return parent != image_id


# -- tags --------------------------------------------------------------------

def read_ledger(store, key):
    """The image the tag's reference is on: an id, None, or UNKNOWN."""
    entry = ledger_entry(store, key)
    return entry if entry is UNKNOWN else entry[0]


def ledger_entry(store, key):
    """``(image, others)`` from the ledger, or UNKNOWN.

    ``image`` is the image the tag's marker is on (None: no marker);
    ``others`` lists images that may still carry it while a reconcile is
    under way - after a crash the next reconcile, whatever the tag file
    says by then, knows every image to clean."""
    path = layout.ledger(key)
    try:
        doc = records.read(store, path)
    except records.Unreadable:
        return UNKNOWN
    if doc is None:
        return None, []
    image, others = doc.get('image'), doc.get('others') or []
    if not isinstance(others, list):
        others = [others]
    for value in [image] + others:
        if value is not None and not layout.valid_id(value):
            records.note_unreadable(store, path, 'invalid image id %r'
                                    % (value,))
            return UNKNOWN
    return ((image and layout.text(image)),
            sorted(layout.text(o) for o in others))


#: Rounds of a reconcile before it leaves the tag to the next one: each
#: round that changed something reads the tag file again after it, and
#: goes again if the tag moved meanwhile (another holder of the tag's
#: lock, whose ledger write may have come before ours).
ROUNDS = 3


def reconcile_tag(ctx, key, notes=None, gone=None):
    """Make the tag's reference agree with its tag file.

    Under the tag's lock: read the truth and the ledger; if they differ,
    first write to the ledger where the marker goes and every image it must
    leave (unless it names them all already: a tag deleted), then add the
    marker to the new image, take it off the others
    (:func:`drop_tag_marker`, which may start a cascade), and write the
    final ledger.  A crash anywhere leaves a ledger that names every image
    that may carry the marker, so running this again - whatever the tag
    file says by then - finishes the job.

    The lock only spares work: should two processes hold it at once (a
    lease that ran out under a stalled holder), no image the tag names is
    lost, since a marker comes off an image only after the tag file was
    read again under a hold on it; and the ledger ends as the tag file
    says, since a round that changed anything reads the tag file again
    after its last write and goes again if the tag moved.

    ``gone``: the audit's reason when the tag is gone (a repository
    delete says so).  ``notes`` (:class:`Notes`): the intent this
    reconcile works for, which learns each image before the tag's marker
    or a hold goes on it.  Returns the image the tag names (or None).
    """
    store = ctx.store
    with ctx.locks.tag(key):
        for attempt in range(ROUNDS):
            truth, changed = _reconcile_round(ctx, key, notes, gone)
            if not changed or read_tag(store, key) == truth:
                return truth
        logger.warning('refcount: tag %s kept moving while it was '
                       'reconciled; left to the next reconcile',
                       key.display)
        return truth


def _reconcile_round(ctx, key, notes, gone=None):
    """One round of :func:`reconcile_tag`: ``(truth, changed)``."""
    store = ctx.store
    truth = read_tag(store, key)
    crash.point('reconcile_read_truth')
    entry = ledger_entry(store, key)
    if entry is UNKNOWN:
        logger.warning('refcount: ledger of %s was unreadable; rebuilt '
                       'from the tag file (a stale marker elsewhere is '
                       'left for `verify --repair`)', key.display)
        image, others = None, []
    else:
        image, others = entry
        if image == truth and not others and (
                truth is None or records.exists(
                    store, layout.marker_path(truth, key.marker))):
            return truth, False
    drop = sorted(set([image] + others) - set([truth, None]))
    _step(ctx)
    if (image, others) != (truth, drop) and not (
            drop and truth in [None, image] + others):
        # where the marker goes and which images it must leave, before
        # it moves (with nothing to leave, this is the final ledger).
        # Not needed when the ledger already names every image that
        # may carry the marker, the new one included (a tag deleted):
        # the final write below follows the removals.
        records.write(store, layout.ledger(key), dict(
            {'image': truth, 'tag': str(key)},
            **({'others': drop} if drop else {})),
            sync=True)
    if truth is not None:
        if notes is not None:
            notes.note(truth, adds=True)
        if add_reference_patiently(ctx, truth, key.marker, str(key)):
            # durable before any marker comes off on its word (the other
            # images', the tag write's pending marker after this)
            records.sync_names(store, layout.marker_path(truth, key.marker))
        else:
            logger.error('refcount: tag %s names image %s, which is gone',
                         key.display, truth)
        crash.point('after_tag_reference')
    if not drop:
        return truth, True
    for stale in drop:
        reason = ((gone or 'tag %s was deleted' % key.display)
                  if truth is None else
                  'tag %s moved to image %s' % (key.display, truth))
        if notes is not None:
            notes.note(stale)               # a hold goes on it
        if ctx.undo_window and truth is not None and not ctx.dry_run:
            # (a deletion is noted from the registry's signal, which
            # names the image even when the ledger does not yet)
            history.record(ctx, key, stale, truth, reason)
        drop_tag_marker(ctx, key, stale, reason)
    _step(ctx, 'before_ledger')
    if truth is None:
        records.remove(store, layout.ledger(key))
    else:
        records.write(store, layout.ledger(key),
                      {'image': truth, 'tag': str(key)}, sync=True)
    return truth, True


def drop_tag_marker(ctx, key, image_id, reason):
    """Take the tag's marker off an image the tag no longer names, and
    then (``reason`` not None) delete the image if nothing else needs it.
    Returns True if the marker went.

    The tag may come back to this image at any moment (a retag), and the
    tag's writer adds its own marker only once its pending marker is on
    the image; a reconcile that read the tag file a while ago - or holds
    the tag's lock twice - must not take that marker away.  So: a *hold*
    marker first (the image now cannot be deleted by anyone), then the
    tag's marker off, then the tag file read again: if it names this
    image, the marker goes back (the hold still keeps the image).  Only
    then does the hold go, and with it, maybe, the image.  Holds that
    reconciles which died left behind go with ours."""
    store = ctx.store
    if read_tag(store, key) == image_id:
        return False
    token = new_intent_id()
    hold = layout.hold_marker(token)
    owner.begin(token)
    try:
        if not _add_hold(ctx, image_id, hold, key):
            # its json is gone: its marker (if any) holds nothing
            records.remove_marker(store, image_id, key.marker)
            return True
        try:
            _step(ctx, 'reconcile_before_drop')
            # the tag file, as read, outlives a power loss that the
            # marker's removal may outlive (the hold is durable already)
            records.sync_file(store, layout.tag_file(key))
            records.remove_marker(store, image_id, key.marker)
            dropped = read_tag(store, key) != image_id
            if not dropped:
                _put_back(store, image_id, key)
            _drop_dead_holds(ctx, image_id, hold)
        except Exception:
            # stopped (a lost lock, a storage error): the hold goes all the
            # same, through the cascade, or the image it may have been the
            # last marker of would wait for gc.  (A crash leaves it: dead,
            # it is retired by the next drop from this image, or by gc.)
            _release_hold(ctx, image_id, hold, reason)
            raise
        _release_hold(ctx, image_id, hold, reason if dropped else None)
    finally:
        owner.end(token)
    return dropped


def _release_hold(ctx, image_id, hold, reason):
    """Remove a hold: through the cascade (``reason``: the image goes if
    that was its last marker), else by itself.  When the image's lock
    cannot be had (Redis down) the hold stays and the reconcile stops
    (:class:`.locks.LockTimeout`): its intent, which noted the image
    (:class:`Notes`), is left to recovery, which retires the hold through
    the cascade once this reconcile is over.  (Removed by itself, the
    hold took the image's last marker with it and nobody came back: the
    tag was reconciled meanwhile by another process.)"""
    if reason is not None:
        remove_reference(ctx, image_id, hold, reason)
    else:
        records.remove_marker(ctx.store, image_id, hold)


def _add_hold(ctx, image_id, hold, key):
    """Put a hold on an image (True), or find its json gone (False); an
    image still whole but tombstoned is being deleted by a deletion that
    will cancel (the tag's marker is on it) or that died (recovery ends
    it): wait a little, then :class:`Busy`."""
    content = json.dumps({'tag': str(key), 'at': time.time(),
                          'owner': owner.me()})
    for attempt in range(RETRIES):
        # durable, its tag with it, before the tag's marker comes off
        if add_reference(ctx, image_id, hold, content, sync=True):
            return True
        if not records.exists(ctx.store, layout.image_file(image_id,
                                                           'json')):
            return False
        time.sleep(RETRY_WAIT)
    raise Busy('image %s stays being deleted; the marker of tag %s stays '
               'on it for now' % (image_id, key.display))


def _drop_dead_holds(ctx, image_id, ours, reason=None):
    """Remove the holds of reconciles that are over (their process died
    between the hold and its removal), so that the image can go
    (``reason``: through the cascade)."""
    store = ctx.store
    for name in records.names_starting(
            store, layout.references_dir(image_id), layout.HOLD_PREFIX):
        if name != ours and not in_flight(store, image_id, name, HOLD_AGE,
                                          records.now(store)):
            retire_hold(ctx, image_id, name, reason)


def retire_hold(ctx, image_id, hold, reason=None):
    """Remove the hold of a reconcile that is over - after doing what it
    may not have done: it may have died after taking its tag's marker off
    and before reading the tag file again (step 4 of
    :func:`drop_tag_marker`), so the tag file is read again here and the
    marker put back if the tag names the image (the hold still keeps it
    meanwhile).  A hold whose tag cannot be read is kept.  ``reason``:
    the hold goes through the cascade (the image with it, if that was
    its last marker).  Returns True if removed.  (Found by the model
    checker: without this, a dead hold removed by another reconcile loses
    the image.)"""
    store = ctx.store
    try:
        key = layout.TagKey.parse(marker_doc(store, image_id, hold)['tag'])
    except (KeyError, TypeError, ValueError, layout.InvalidName):
        logger.error('refcount: keeping hold %s on %s: it does not say '
                     'which tag it is for', hold, image_id)
        return False
    if read_tag(store, key) == image_id:
        _put_back(store, image_id, key)
    if reason is not None:
        remove_reference(ctx, image_id, hold, reason)
    else:
        records.remove_marker(store, image_id, hold)
    return True


def _put_back(store, image_id, key):
    """Write a tag's marker back on the image its tag names, durable
    before the hold that kept the image meanwhile goes."""
    records.write_marker(store, image_id, key.marker, str(key))
    records.sync_names(store, layout.marker_path(image_id, key.marker))


#: Seconds after which a hold whose owner cannot be seen (another host)
#: counts as left behind: a reconcile holds one for a few storage calls.
HOLD_AGE = 3600


def rewrite_ledger(ctx, key):
    """Rebuild one ledger entry from its tag file, whatever it held, and
    make sure the tag's image carries its marker."""
    store = ctx.store
    with ctx.locks.tag(key):
        truth = read_tag(store, key)
        if truth is None:
            records.remove(store, layout.ledger(key))
            return
        if not records.exists(store, layout.marker_path(truth, key.marker)):
            add_reference_patiently(ctx, truth, key.marker, str(key))
        records.write(store, layout.ledger(key),
                      {'image': truth, 'tag': str(key)}, sync=True)


def ledger_tags(store, namespace, repository):
    """Tag keys with a ledger entry in one repository."""
    for name in records.listing(store, layout.ledger_dir(namespace,
                                                         repository)):
        if not layout.is_temporary(name):     # a tag may start with '.'
            yield layout.TagKey(namespace, repository, name)


def repository_tags(store, namespace, repository):
    """Tag keys with a tag file in one repository (the truth)."""
    for name in records.listing(store, layout.repository_dir(namespace,
                                                             repository)):
        if name.startswith('tag_') and name != 'tag_':
            yield layout.TagKey(namespace, repository, name[4:])


def reconcile_repository(ctx, namespace, repository):
    """Reconcile every tag the ledger or the tag files know in a repo."""
    keys = set(ledger_tags(ctx.store, namespace, repository))
    keys.update(repository_tags(ctx.store, namespace, repository))
    for key in sorted(keys):
        reconcile_tag(ctx, key, gone='its repository %s/%s was deleted '
                      '(tag %s)' % (namespace, repository, key.tag))
    records.prune(ctx.store, layout.ledger_dir(namespace, repository))


# -- tag writes in flight ----------------------------------------------------

new_intent_id = layout.new_token


def write_intent(store, intent_id, **fields):
    """Record a tag request's work before the registry does its part; the
    intent names its owner, so that recovery finishes it only once that
    process is gone (see :mod:`.owner`).  Returns the document written
    (what :func:`finish_intent` takes)."""
    fields['at'] = time.time()
    fields['owner'] = owner.me()
    owner.begin(intent_id)
    # a tag write's intent: its bytes durable before its name, and before
    # the pending marker that is another name of it (:func:`add_pending`)
    records.write(store, layout.intent(intent_id), fields,
                  sync=fields.get('image') is not None)
    crash.point('after_intent')
    return fields


def reconcile_recorded(ctx, key):
    """:func:`reconcile_tag` under an intent of its own, as a tag request's
    (gc's repair of a reference): a process that dies in it leaves its
    work, and the images it touched, to recovery."""
    intent_id = new_intent_id()
    finish_intent(ctx, intent_id,
                  write_intent(ctx.store, intent_id, tag=str(key)))


class Notes(object):
    """The images an intent's reconcile may leave its tag's marker or a
    hold on.  Each is written into the intent (the document rewritten
    whole, durable) before the marker or the hold goes on it, unless the
    intent names it already - the tag write's own image needs no write, a
    retag's old image one.  A reconcile that loses its lock may add the
    marker from a stale read after the other holder wrote the final
    ledger, and a process may die holding a hold: the ledger then names
    neither image, and only these notes do (:func:`_drop_strays`)."""

    def __init__(self, store, intent_id, doc):
        self.store, self.intent_id = store, intent_id
        self.doc = dict((k, v) for k, v in doc.items() if k != 'failed')
        self.images = set(touched_images(doc))
        self.added = set()

    def note(self, image_id, adds=False):
        """``adds``: the tag's marker goes on the image (not a hold)."""
        if adds:
            self.added.add(image_id)
        if image_id in self.images:
            return
        self.images.add(image_id)
        self.doc['touched'] = sorted(self.images - set([
            self.doc.get('image')]))
        records.write(self.store, layout.intent(self.intent_id), self.doc,
                      sync=True)


def touched_images(doc):
    """The images an intent document names: its own, and those its
    reconciles noted (:class:`Notes`)."""
    image = doc.get('image')
    return ([image] if image else []) + list(doc.get('touched') or [])


def begin_tag_write(ctx, intent_id, key, fields):
    """Before the registry writes a tag: record the write's intent
    (:func:`write_intent`, ``fields`` naming the tag and its ``image``) and
    keep the image alive while the write is in flight (a pending marker,
    the handshake of :func:`add_reference`).  Returns the intent's
    document, or None - nothing left written - if the image is gone or
    being deleted (a refusal is better than a wait on a tag write's path).

    The intent and the marker do not depend on each other, so they go
    together: on object storage the response waits for one round trip for
    both, and one more for the image's check (bench part 7).  A marker may
    so be seen a moment before its intent; one without an intent is stale
    only once it is older than work in flight (:func:`pending_stale`).  On
    local storage the marker is another name of the intent, made after it.
    If either write fails, what the other wrote is taken back (what cannot
    be is left to recovery and gc) and the error raised."""
    store = ctx.store
    image_id = fields['image']
    marker = layout.pending_marker(intent_id)
    content = json.dumps({'tag': str(key), 'at': time.time(),
                          'owner': owner.me()})
    doc, put = records.together(
        store, lambda: write_intent(store, intent_id, **fields),
        lambda: _put_marker(store, image_id, marker, content,
                            same_as=layout.intent(intent_id)))
    if isinstance(doc, records.Failed) or isinstance(put, records.Failed):
        if not isinstance(put, records.Failed):
            _take_back(records.remove_marker, store, image_id, marker)
        drop_intent(store, intent_id)
        records.values((doc, put))          # raises the first failure
    crash.point('add_before_check')
    if not _accepted(ctx, image_id, marker):
        drop_intent(store, intent_id)
        return None
    # both names durable before the registry writes the tag file
    records.sync_names(store, layout.intent(intent_id),
                       layout.marker_path(image_id, marker))
    crash.point('after_pending')
    return doc


def drop_intent(store, intent_id):
    """Take back an intent whose request will not go on."""
    _take_back(records.remove, store, layout.intent(intent_id))
    owner.end(intent_id)


def _take_back(remove, store, *args):
    try:
        remove(store, *args)
    except Exception:
        logger.exception('refcount: could not take back %s; left to '
                         'recovery and gc', '/'.join(args))


def pending_stale(store, image_id, marker, min_age, now):
    """Is a pending marker stale: its intent gone, and the marker not
    written by a request that may still be writing the intent
    (:func:`in_flight`: its owner gone, or older than ``min_age``)?"""
    kind, intent_id = layout.check_marker(marker)
    if records.exists(store, layout.intent(intent_id)):
        return False
    return not in_flight(store, image_id, marker, min_age, now)


def release_pending(ctx, intent_id, image_id, tag):
    remove_reference(ctx, image_id, layout.pending_marker(intent_id),
                     'the write of tag %s that named it is over, and the '
                     'tag names it no longer' % tag)


def parse_intent(doc):
    """An intent document, checked: ``{'at': float, 'tag': TagKey or None,
    'repository': (ns, repo) or None, 'image': id or None}``.
    :class:`BadInput` if any field is malformed."""
    try:
        at = float(doc.get('at', 0))
        tag = doc.get('tag')
        tag = layout.TagKey.parse(tag) if tag is not None else None
        repository = doc.get('repository')
        if repository is not None:
            namespace, name = layout.text(repository).split('/', 1)
            layout.TagKey(namespace, name, 'x')   # validates both parts
            repository = (namespace, name)
        image = doc.get('image')
        if image is not None:
            image = layout.check_id(image)
            if tag is None:
                raise ValueError('an image without a tag')
        touched = doc.get('touched') or []
        if not isinstance(touched, list) or (touched and tag is None):
            raise ValueError('touched images must be a list, with a tag')
        for other in touched:
            layout.check_id(other)
    except (KeyError, TypeError, ValueError, AttributeError,
            layout.InvalidName) as e:
        raise BadInput('malformed intent %r: %s' % (doc, e))
    return {'at': at, 'tag': tag, 'repository': repository, 'image': image}


def finish_intent(ctx, intent_id, doc, recovered=False):
    """Complete the work an intent records: reconcile its tags, release its
    pending marker, then drop the intent (after a tag request's response,
    and in recovery: ``recovered``, its owner is gone).  ``doc`` is the
    document as written (:func:`write_intent`); ``doc['failed']``: the
    request did not write its tag, so its pending marker goes without
    deleting anything.  :class:`BadInput` if the intent is malformed."""
    try:
        intent = parse_intent(doc)
        if intent['repository']:
            reconcile_repository(ctx, *intent['repository'])
        if intent['tag']:
            notes = Notes(ctx.store, intent_id, doc)
            why = doc.get('why')      # a deletion the command made
            truth = reconcile_tag(ctx, intent['tag'], notes, gone=(
                why if isinstance(why, type(u'')) else None))
            # a live finish checks the images the marker went on in an
            # earlier round; recovery every image the dead owner noted
            _drop_strays(ctx, intent['tag'], truth, (
                notes.images if recovered else
                notes.added | set([intent['image']])), recovered)
        crash.point('finish_before_release')
        if intent['image'] and doc.get('failed'):
            # the request did not write its tag: it deletes nothing (an
            # image it alone named is left to gc and its grace period)
            records.remove_marker(ctx.store, intent['image'],
                                  layout.pending_marker(intent_id))
        elif intent['image']:
            release_pending(ctx, intent_id, intent['image'],
                            intent['tag'].display)
        records.remove(ctx.store, layout.intent(intent_id))
    finally:
        owner.end(intent_id)


def _drop_strays(ctx, key, truth, images, retire):
    """An image an intent's reconcile touched (:class:`Notes`) that the
    tag no longer names may still carry the tag's marker without the
    ledger saying so: put there by a reconcile of this intent that lost
    its lock, after the new holder wrote the ledger (the model's R1
    schedule; the stall tests saw it).  It comes off here (the hold and
    the second read of :func:`drop_tag_marker`).  ``retire``: the intent's
    owner died, and may have left a hold on any of them: the holds whose
    reconciles are over are retired (:func:`retire_hold`), through the
    cascade - the image goes if the hold was the last thing it had, as it
    would have gone at the end of that reconcile."""
    reason = 'tag %s moved on' % key.display
    for image_id in sorted(i for i in images if i is not None):
        if image_id != truth and records.exists(
                ctx.store, layout.marker_path(image_id, key.marker)):
            with ctx.locks.tag(key):
                drop_tag_marker(ctx, key, image_id, reason)
        if retire:
            _drop_dead_holds(ctx, image_id, None, reason)


# -- child registration ------------------------------------------------------

def register_child(ctx, child_id, parent_id):
    """Before a child's json is stored: mark the parent as needed by it.
    Returns an error string for the client, or None."""
    crash.point('child_before_marker')
    marker = layout.child_marker(child_id)
    if not add_reference(ctx, parent_id, marker,
                         json.dumps({'at': time.time(),
                                     'owner': owner.me()})):
        state = image_state(ctx.store, parent_id)
        return ('Parent image %s is %s; push it again'
                % (parent_id, 'being deleted' if state == 'deleting'
                   else 'not found'))
    # durable before the registry writes the child's json
    records.sync_names(ctx.store, layout.marker_path(parent_id, marker))
    crash.point('after_child_marker')
    return None
