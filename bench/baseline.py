"""The earlier per-tag-list design, written for the benchmark only.

Each ancestor of a tagged image keeps one record, the *file*
``images/<id>/_references``: a JSON object ``{"[ns, repo, tag]":
descendant}`` naming every tag built on it (DESIGN.md section 4).

* tag created: for every image in the tag's ancestry, read the record,
  add ``[ns, repo, tag] -> image``, write the whole record back;
* tag deleted: for every image in the deleted image's ancestry, re-check
  the whole record against the truth - for each entry, does the
  descendant's layer still exist, and does the tag file still name it? -
  drop the entries that fail, write the record back, and remove the image
  folder when no entry is left.

This is the behaviour of the refcount extension proposed for
docker-registry before this project (re-implemented here from its
description, without its bugs in receiver signatures: it is only driven
directly by the benchmark).  There are no locks: it is a cost model, not a
safe implementation (concurrent writers lose updates).
"""

from __future__ import absolute_import, unicode_literals

import json

from docker_registry.core import exceptions

from registry_refcount import layout


def references_path(image_id):
    return 'images/%s/_references' % layout.check_id(image_id)


def entry_key(key):
    """The record's key for a tag: ``json.dumps([ns, repo, tag])``."""
    return json.dumps([key.namespace, key.repository, key.tag])


def load(store, image_id):
    try:
        return json.loads(layout.text(store.get_content(
            references_path(image_id))))
    except exceptions.FileNotFoundError:
        return {}


def save(store, image_id, refs):
    store.put_content(references_path(image_id),
                      json.dumps(refs).encode('utf-8'))


def ancestry(store, image_id):
    return json.loads(layout.text(store.get_content(
        layout.image_file(image_id, 'ancestry'))))


def on_tag_created(store, key, image_id):
    """Add the tag to the record of every image in its ancestry."""
    name = entry_key(key)
    for ident in ancestry(store, image_id):
        refs = load(store, ident)
        refs[name] = image_id
        save(store, ident, refs)


def on_tag_deleted(store, key, image_id):
    """Re-check the records of every image in the deleted image's
    ancestry; remove images no entry is left on."""
    for ident in ancestry(store, image_id):
        check(store, ident)


def check(store, image_id):
    refs = load(store, image_id)
    changed = False
    for name, descendant in list(refs.items()):
        ns, repo, tag = json.loads(name)
        if store.exists(layout.image_file(descendant, 'layer')):
            try:
                tagged = layout.text(store.get_content(layout.tag_file(
                    layout.TagKey(ns, repo, tag)))).strip()
            except exceptions.FileNotFoundError:
                tagged = None
            if tagged != descendant:
                del refs[name]
                changed = True
        else:
            del refs[name]
            changed = True
    if changed and refs:
        save(store, image_id, refs)
    if not refs:
        try:
            store.remove(layout.image_dir(image_id))
        except exceptions.FileNotFoundError:
            pass
    return refs
