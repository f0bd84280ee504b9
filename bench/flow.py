"""docker-registry 0.9.1's request flow, at the storage level.

Each method does to storage what the registry's view does for the same
request (``docker_registry/images.py``, ``tags.py``, ``lib/layers.py``,
read from 0.9.1), and calls the extension where its receivers run
(``registry_refcount.wiring``: ``request_started``,
``before_put_image_json``, and the work it leaves to after the response),
or the per-tag-list baseline where that design hooked in (``tag_created``,
``tag_deleted``), or nothing.

The registry's own storage work is counted in section ``registry`` of the
meter, the extension's (or the baseline's) in section ``ext``.
"""

from __future__ import absolute_import, unicode_literals

import contextlib
import json
import time

from docker_registry.core import exceptions

from registry_refcount import layout
from registry_refcount import gap
from registry_refcount import protocols
from registry_refcount import records

from . import baseline

MODES = ('none', 'refcount', 'baseline')


class Refused(Exception):
    pass


class Flow(object):
    """``mode``: ``refcount`` (this project), ``baseline`` (the per-tag
    list) or ``none`` (the registry alone)."""

    def __init__(self, store, mode, locks=None, meter=None):
        assert mode in MODES, mode
        self.store = store
        self.mode = mode
        self.meter = meter
        self.ctx = (protocols.context(store, locks) if mode == 'refcount'
                    else None)
        if self.ctx is not None:
            # a worker's first recovery round, at its start: until one
            # found every reference in place, deletions look for writes
            # the extension did not see (gap.suspected)
            gap.catch_up(self.ctx)

    @contextlib.contextmanager
    def ext(self, hook):
        """The extension's (or baseline's) work in receiver ``hook``:
        meter section ``ext.<hook>``."""
        if self.meter is None:
            yield
        else:
            with self.meter.in_section('ext.' + hook):
                yield

    # -- images ------------------------------------------------------------
    def put_image_json(self, image, parent=None):
        store = self.store
        body = json.dumps({'id': image, 'parent': parent,
                           'created': '2014-10-01T00:00:00Z',
                           'container_config': {'Cmd': ['/bin/true']}}
                          if parent else
                          {'id': image, 'created': '2014-10-01T00:00:00Z'})
        if parent and not store.exists(layout.image_file(parent, 'json')):
            raise Refused('Image depends on a non existing parent')
        json_path = layout.image_file(image, 'json')
        mark_path = layout.image_file(image, '_inprogress')
        if store.exists(json_path) and not store.exists(mark_path):
            raise Refused('Image already exists')
        if self.mode == 'refcount':
            with self.ext('image_json.before_put_image_json'):
                if protocols.tombstones(store, image):
                    raise Refused('being deleted')
                if parent:
                    err = protocols.register_child(self.ctx, image, parent)
                    if err:
                        raise Refused(err)
        store.put_content(mark_path, b'true')
        try:
            store.remove(layout.image_file(image, '_checksum'))
        except Exception:
            pass
        store.put_content(json_path, body.encode('utf-8'))
        # layers.generate_ancestry
        if not parent:
            store.put_content(layout.image_file(image, 'ancestry'),
                              json.dumps([image]).encode('utf-8'))
        else:
            data = json.loads(layout.text(store.get_content(
                layout.image_file(parent, 'ancestry'))))
            data.insert(0, image)
            store.put_content(layout.image_file(image, 'ancestry'),
                              json.dumps(data).encode('utf-8'))
        return body

    def put_image_layer(self, image, layer):
        store = self.store
        store.get_content(layout.image_file(image, 'json'))
        layer_path = layout.image_file(image, 'layer')
        if (store.exists(layer_path) and not
                store.exists(layout.image_file(image, '_inprogress'))):
            raise Refused('Image already exists')
        import io
        store.stream_write(layer_path, io.BytesIO(layer))
        store.put_content(layout.image_file(image, '_checksum'),
                          json.dumps(['sha256:0']).encode('utf-8'))

    def put_image_checksum(self, image):
        store = self.store
        if not store.exists(layout.image_file(image, 'json')):
            raise Refused('Image not found')
        mark_path = layout.image_file(image, '_inprogress')
        if not store.exists(mark_path):
            raise Refused('Cannot set this image checksum')
        store.get_content(layout.image_file(image, '_checksum'))
        store.remove(mark_path)

    def push_image(self, image, parent=None, layer=b'x' * 512):
        self.put_image_json(image, parent)
        self.put_image_layer(image, layer)
        self.put_image_checksum(image)

    # -- tags --------------------------------------------------------------
    def put_tag(self, key, image):
        store = self.store
        intent_id = None
        if self.mode == 'refcount':
            with self.ext('tag_put.request_started'):
                intent_id = protocols.new_intent_id()
                doc = {'tag': str(key), 'image': image}
                protocols.write_intent(store, intent_id, **doc)
                if not protocols.add_pending(self.ctx, intent_id, key,
                                             image):
                    records.remove(store, layout.intent(intent_id))
                    raise Refused('Image not found')
        if not store.exists(layout.image_file(image, 'json')):
            raise Refused('Image not found')
        store.put_content(layout.tag_file(key), image.encode('utf-8'))
        if self.mode == 'baseline':
            with self.ext('tag_put.tag_created'):
                baseline.on_tag_created(store, key, image)
        store.put_content(self._tag_json(key), json.dumps({
            'last_update': int(time.time()), 'docker_version': '1.3.0',
            'docker_go_version': 'go1.3.3', 'arch': 'amd64',
            'os': 'linux', 'kernel': '3.16'}).encode('utf-8'))
        if self.mode == 'refcount':
            self._after_response('tag_put', intent_id, doc)

    def delete_tag(self, key):
        store = self.store
        if self.mode == 'refcount':
            with self.ext('tag_delete.request_started'):
                intent_id = protocols.new_intent_id()
                doc = {'tag': str(key)}
                protocols.write_intent(store, intent_id, **doc)
        try:
            image = layout.text(store.get_content(layout.tag_file(key)))
        except exceptions.FileNotFoundError:
            raise Refused('Tag not found')
        store.remove(layout.tag_file(key))
        store.remove(self._tag_json(key))
        if self.mode == 'baseline':
            with self.ext('tag_delete.tag_deleted'):
                baseline.on_tag_deleted(store, key, image)
        if self.mode == 'refcount':
            self._after_response('tag_delete', intent_id, doc)

    def _after_response(self, request, intent_id, doc):
        """What ``wiring`` leaves to after the response (a greenlet of the
        worker): finish the intent - reconcile, release the pending
        marker, collect."""
        with self.ext(request + '.after_response'):
            protocols.finish_intent(self.ctx, intent_id, doc)

    @staticmethod
    def _tag_json(key):
        return '%s/tag%s_json' % (layout.repository_dir(key.namespace,
                                                        key.repository),
                                  key.tag)
