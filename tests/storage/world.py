"""A registry in miniature, on the real file driver.

Each function does to storage what docker-registry 0.9.1's view does for
the same request, and calls the protocols where the extension's receivers
would (request_started, before_put_image_json, tag_created/tag_deleted,
repository_deleted, request_tearing_down).  The storage-level tests and
the property tests drive the protocols through it.
"""

from __future__ import absolute_import, unicode_literals

import hashlib
import json
import os
import time

from docker_registry.core import exceptions

from registry_refcount import history
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import owner
from registry_refcount import protocols
from registry_refcount import records


class Refused(Exception):
    """The registry would answer this request with an error."""


def image_id(n):
    return hashlib.sha256(('image-%s' % n).encode()).hexdigest()


def push(ctx, image, parent=None):
    begin_push(ctx, image, parent)
    end_push(ctx, image, parent)


def begin_push(ctx, image, parent=None):
    """The image json PUT up to ``before_put_image_json``."""
    store = ctx.store
    if parent is not None:
        if not store.exists(layout.image_file(parent, 'json')):
            raise Refused('Image depends on a non existing parent')
    if protocols.tombstones(store, image):
        raise Refused('being deleted')
    if parent is not None:
        err = protocols.register_child(ctx, image, parent)
        if err:
            raise Refused(err)


def end_push(ctx, image, parent=None):
    """The rest of the push: json, ancestry, layer, checksum."""
    store = ctx.store
    store.put_content(layout.image_file(image, '_inprogress'), b'true')
    doc = {'id': image}
    if parent:
        doc['parent'] = parent
    store.put_content(layout.image_file(image, 'json'),
                      json.dumps(doc).encode())
    ancestry = [image]
    if parent:
        ancestry += json.loads(layout.text(store.get_content(
            layout.image_file(parent, 'ancestry'))))
    store.put_content(layout.image_file(image, 'ancestry'),
                      json.dumps(ancestry).encode())
    store.put_content(layout.image_file(image, 'layer'),
                      b'layer of ' + image.encode())
    store.put_content(layout.image_file(image, '_checksum'), b'["sha256:x"]')
    store.remove(layout.image_file(image, '_inprogress'))


def put_tag(ctx, key, image):
    intent_id, doc = begin_tag(ctx, key, image)
    end_tag(ctx, key, image, intent_id, doc)


def begin_tag(ctx, key, image):
    """``request_started`` of a tag PUT: the intent, the pending marker."""
    intent_id = protocols.new_intent_id()
    doc = {'tag': str(key), 'image': image}
    doc = protocols.begin_tag_write(ctx, intent_id, key, doc)
    if doc is None:
        raise Refused('Image not found')
    return intent_id, doc


def end_tag(ctx, key, image, intent_id, doc):
    """The rest of the tag PUT: the view, then (``tag_created`` leaves the
    tag to the intent) the work after the response."""
    store = ctx.store
    if not store.exists(layout.image_file(image, 'json')):
        after_response(ctx, intent_id, doc)
        raise Refused('Image not found')
    store.put_content(layout.tag_file(key), image.encode())
    after_response(ctx, intent_id, doc)


def after_response(ctx, intent_id, doc):
    """A request's work after its response, as wiring runs it: what
    cannot be done now (a lock, an image being deleted) is logged and left
    to recovery."""
    try:
        protocols.finish_intent(ctx, intent_id, doc)
    except locks.LockTimeout:
        pass


def delete_tag(ctx, key):
    store = ctx.store
    intent_id = protocols.new_intent_id()
    doc = {'tag': str(key)}
    doc = protocols.write_intent(store, intent_id, **doc)
    try:
        image = protocols.read_tag(store, key)
        store.remove(layout.tag_file(key))
    except exceptions.FileNotFoundError:
        after_response(ctx, intent_id, doc)
        raise Refused('Tag not found')
    if ctx.undo_window and image:     # tag_deleted's receiver notes it
        history.record(ctx, key, image, None, 'the tag was deleted')
    after_response(ctx, intent_id, doc)


def delete_repository(ctx, namespace, repository):
    """Each tag's ``tag_deleted`` reconciles it at once (the intent names
    the repository, not the tag); the repository's reconcile is left to
    the work after the response."""
    store = ctx.store
    intent_id = protocols.new_intent_id()
    doc = {'repository': '%s/%s' % (namespace, repository)}
    doc = protocols.write_intent(store, intent_id, **doc)
    keys = list(protocols.repository_tags(store, namespace, repository))
    for key in keys:
        image = protocols.read_tag(store, key)
        store.remove(layout.tag_file(key))
        if ctx.undo_window and image:     # tag_deleted's receiver
            history.record(ctx, key, image, None,
                           'its repository was deleted')
        try:        # the signal's receiver logs, as wiring._run does
            protocols.reconcile_tag(ctx, key)
        except locks.LockTimeout:
            pass
    try:
        store.remove(layout.repository_dir(namespace, repository))
    except exceptions.FileNotFoundError:
        pass
    after_response(ctx, intent_id, doc)


def present(store):
    """Image ids whose json exists."""
    return set(i for i in records.listing(store, layout.IMAGES)
               if store.exists(layout.image_file(i, 'json')))


def folders(store):
    return set(records.listing(store, layout.IMAGES))


def abandoned_intent(store, **doc):
    """An intent whose process died right after writing it (recovery may
    finish it at once: its owner is known to be gone)."""
    intent_id = protocols.new_intent_id()
    doc = protocols.write_intent(store, intent_id, **doc)
    owner.end(intent_id)
    return intent_id


def as_another_hosts(store, path):
    """Make the record at ``path`` one written by another host's process:
    nothing of it can be seen from here, only its age on the storage's
    clock."""
    doc = records.read(store, path)
    doc['owner'] = {'host': 'elsewhere/boot/ns', 'pid': 1, 'start': '1'}
    records.write(store, path, doc)


def written_ago(store, image, seconds):
    """Date every entry in ``image``'s folder ``seconds`` back (local
    storage: the file system's own mtimes, as on a registry that has
    held it that long)."""
    folder = os.path.join(records.local_root(store), layout.image_dir(image))
    when = time.time() - seconds
    for name in os.listdir(folder):
        os.utime(os.path.join(folder, name), (when, when))
