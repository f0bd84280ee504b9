"""``restore``: put a tag (or every tag of a repository) back as it was
before a deletion or a retag, while the undo window keeps its images.

What a tag named is in its history (:mod:`.history`).  The tag is then
written the way a tag PUT is, through the same protocol: an intent and
a pending marker on the image first (refused if the image is being torn
down or gone - then it was purged), then the registry's files (the tag,
its json, the repository's ``json`` for ``latest``, ``_index_images``),
then the intent's reconcile puts the tag's marker on.  The image is no
longer in the trash from the pending marker on: the purge finds it
referenced and drops its record.
"""

from __future__ import absolute_import, unicode_literals

import json
import time

from . import audit
from . import crash
from . import history
from . import layout
from . import protocols
from . import records
from . import trash


class Refused(Exception):
    """The tag cannot be put back; the message says why."""


def plan(store, namespace, repository, tag=None, at=None):
    """``[(key, image, now)]``: what each tag of the repository (or only
    ``tag``) named just before ``at`` (default: before its last change),
    from the history (image None when it named nothing then), and what it
    names now by the history (None: deleted).  Names as storage quotes
    them."""
    by_tag = {}
    for _, doc in history.changes(store, namespace, repository):
        by_tag.setdefault(doc.get('tag'), []).append(doc)
    found = []
    for name, docs in sorted(by_tag.items()):
        try:
            key = layout.TagKey.parse(name)
        except (layout.InvalidName, AttributeError, TypeError):
            continue
        if tag is not None and key.tag != tag:
            continue
        now = docs[-1].get('image')
        if at is None:
            found.append((key, docs[-1].get('previous'), now))
            continue
        before = [d for d in docs if d['at'] < at]
        found.append((key, before[-1].get('image') if before else
                      docs[0].get('previous'), now))
    return found


def check(store, key, image, now, force=False):
    """Why ``key`` cannot be put back on ``image`` (a :class:`Refused`),
    or the ancestry to restore; None if the tag names it already.  ``now``:
    what the history says the tag names now; anything else means it was
    written again since."""
    if image is None:
        raise Refused('%s named no image then' % key.display)
    current = protocols.read_tag(store, key)
    if current == image:
        return None
    if current != now and not force:
        raise Refused('%s was written again since: it names %s now '
                      '(--force puts it back all the same)'
                      % (key.display, current))
    state = protocols.image_state(store, image)
    if state != 'live':
        raise Refused('%s named image %s, which has been purged%s' % (
            key.display, image, ' (it is being torn down)'
            if state == 'deleting' else ''))
    try:
        ancestry = protocols.read_ancestry(store, image)
    except protocols.BadInput as e:
        raise Refused('%s: %s' % (key.display, e))
    for ancestor in ancestry[1:]:
        if protocols.image_state(store, ancestor) != 'live':
            raise Refused('%s: image %s of its chain has been purged'
                          % (key.display, ancestor))
    return ancestry


def put_back(ctx, key, image, ancestry):
    """Write tag ``key`` naming ``image`` as a tag PUT does, through the
    tag write protocol.  :class:`Refused` if the image went meanwhile."""
    store = ctx.store
    intent_id = protocols.new_intent_id()
    stored = protocols.begin_tag_write(ctx, intent_id, key, dict(
        tag=str(key), image=image))
    if stored is None:
        raise Refused('%s: image %s was purged meanwhile'
                      % (key.display, image))
    crash.point('restore_after_pending')
    previous = protocols.read_tag(store, key)
    stamp = json.dumps({'last_update': int(time.time())}).encode('utf-8')
    records.registry_put(store, layout.tag_file(key), image.encode('utf-8'))
    records.registry_put(store, layout.tag_json_file(key), stamp)
    if key.tag == 'latest':
        records.registry_put(store, '%s/json' % layout.repository_dir(
            key.namespace, key.repository), stamp)
    _list_images(store, key, ancestry)
    if ctx.undo_window:
        history.record(ctx, key, previous, image, 'restore')
    crash.point('restore_before_finish')
    protocols.finish_intent(ctx, intent_id, stored)
    for each in ancestry:
        try:
            held = trash.read(store, each)
        except records.Unreadable:
            held = None
        if held is not None:
            trash.forget(store, each)
            audit.event('restored', each, 'tag %s put back' % key.display,
                        by=ctx.by)


def _list_images(store, key, ancestry):
    """The repository's ``_index_images`` lists every image of the chain
    (the registry's images list, which a pull of the repository reads)."""
    path = layout.index_images_file(key.namespace, key.repository)
    try:
        listed = json.loads(layout.text(records.read_file(store, path) or
                                        b'[]'))
        if not isinstance(listed, list):
            listed = []
    except (ValueError, UnicodeDecodeError, EnvironmentError):
        listed = []
    have = set(i.get('id') for i in listed if isinstance(i, dict))
    missing = [{'id': i} for i in reversed(ancestry) if i not in have]
    if missing:
        records.registry_put(store, path,
                             json.dumps(listed + missing).encode('utf-8'))
