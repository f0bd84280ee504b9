"""Part 1's requests at the storage level: what docker-registry 0.9.1's
views do to storage for a push, a tag PUT and a tag DELETE, with the
extension's work where its receivers run (``registry_refcount.wiring``),
or the baseline's where it hooked in (``tag_created``, ``tag_deleted``),
counted apart in section ``ext``.

The baseline is the refcount extension proposed for docker-registry before
this project, re-implemented from its description as a cost model (no
locks, not safe): every ancestor of a tagged image keeps one record,
``images/<id>/_references`` = ``{"[ns, repo, tag]": descendant}``, read and
written back whole for each tag created, and re-checked entry by entry
against the tag files and layers for each tag deleted.
"""

from __future__ import absolute_import, unicode_literals

import io
import json
import time

from docker_registry.core import exceptions

from registry_refcount import gap
from registry_refcount import layout
from registry_refcount import protocols



class Refused(Exception):
    """What the registry would answer with an HTTP error."""


class Flow(object):
    """``design``: ``refcount`` (this project) or ``baseline``; ``store``:
    a :class:`counting.CountingStore`.  The registry's own checks are made
    as it makes them (each a counted call) but not acted on: the
    benchmark's requests are valid."""

    def __init__(self, store, design, locks=None):
        self.store, self.design = store, design
        if design == 'refcount':
            self.ctx = protocols.context(store, locks)
            gap.catch_up(self.ctx)      # a worker's first recovery round

    def push_image(self, image, parent, layer=b'x' * 512):
        """PUT json (with ``parent``), layer, checksum."""
        s, f = self.store, lambda name: layout.image_file(image, name)
        s.exists(layout.image_file(parent, 'json'))
        s.exists(f('json'))
        if self.design == 'refcount':
            with s.section('ext'):
                err = protocols.tombstones(s, image) or \
                    protocols.register_child(self.ctx, image, parent)
            if err:
                raise Refused(err)
        s.put_content(f('_inprogress'), b'true')
        try:
            s.remove(f('_checksum'))
        except exceptions.FileNotFoundError:
            pass
        s.put_content(f('json'), json.dumps({
            'id': image, 'parent': parent,
            'created': '2014-10-01T00:00:00Z'}).encode('utf-8'))
        ancestry = json.loads(layout.text(s.get_content(
            layout.image_file(parent, 'ancestry'))))
        s.put_content(f('ancestry'), json.dumps([image] + ancestry).encode())
        s.get_content(f('json'))                            # the layer
        s.exists(f('layer'))
        s.stream_write(f('layer'), io.BytesIO(layer))
        s.put_content(f('_checksum'), b'["sha256:0"]')
        s.exists(f('json'))                                 # the checksum
        s.exists(f('_inprogress'))
        s.get_content(f('_checksum'))
        s.remove(f('_inprogress'))

    def put_tag(self, key, image):
        s = self.store
        if self.design == 'refcount':
            with s.section('ext'):
                intent_id = protocols.new_intent_id()
                doc = protocols.begin_tag_write(self.ctx, intent_id, key, {
                    'tag': str(key), 'image': image})
                if doc is None:
                    raise Refused('Image not found')
        s.exists(layout.image_file(image, 'json'))
        s.put_content(layout.tag_file(key), image.encode('utf-8'))
        if self.design == 'baseline':
            with s.section('ext'):
                on_tag_created(s, key, image)
        s.put_content(tag_json(key), json.dumps({
            'last_update': int(time.time()), 'docker_version': '1.3.0',
            'arch': 'amd64', 'os': 'linux'}).encode('utf-8'))
        if self.design == 'refcount':
            self.after_response(intent_id, doc)

    def delete_tag(self, key):
        s = self.store
        if self.design == 'refcount':
            with s.section('ext'):
                intent_id = protocols.new_intent_id()
                doc = protocols.write_intent(s, intent_id, tag=str(key))
        image = layout.text(s.get_content(layout.tag_file(key)))
        s.remove(layout.tag_file(key))
        s.remove(tag_json(key))
        if self.design == 'baseline':
            with s.section('ext'):
                on_tag_deleted(s, key, image)
        else:
            self.after_response(intent_id, doc)

    def after_response(self, intent_id, doc):
        """What ``wiring`` leaves to after the response: finish the intent
        (``doc``: as :func:`protocols.write_intent` stored it)."""
        with self.store.section('ext'):
            protocols.finish_intent(self.ctx, intent_id, doc)


def tag_json(key):
    return '%s/tag%s_json' % (layout.repository_dir(key.namespace,
                                                    key.repository), key.tag)


# -- the per-tag-list baseline ----------------------------------------------

def references_path(image_id):
    return 'images/%s/_references' % layout.check_id(image_id)


def entry_key(key):
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
    for ident in ancestry(store, image_id):
        refs = load(store, ident)
        refs[entry_key(key)] = image_id
        save(store, ident, refs)


def on_tag_deleted(store, key, image_id):
    for ident in ancestry(store, image_id):
        refs = load(store, ident)
        kept = dict(refs)
        for name, descendant in refs.items():
            try:
                tagged = store.exists(layout.image_file(
                    descendant, 'layer')) and layout.text(store.get_content(
                        layout.tag_file(layout.TagKey(*json.loads(name)))))
            except exceptions.FileNotFoundError:
                tagged = None
            if (tagged or '').strip() != descendant:
                del kept[name]
        if kept and kept != refs:
            save(store, ident, kept)
        elif not kept:
            try:
                store.remove(layout.image_dir(ident))
            except exceptions.FileNotFoundError:
                pass
