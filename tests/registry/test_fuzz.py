# -*- coding: utf-8 -*-
"""Issue 21, "Done when": the extension against the registry alone.

Two real registries side by side - one with the extension, one without it
(the registry alone) - are fed the same seeded random sequence of
requests: pushes (json with random and malformed ids and parents, layers,
checksums), tag PUTs with random and malformed bodies and names, tag
DELETEs, repository DELETEs and PUTs, and GETs of tags and images.

After each request:

* **status codes** are identical, except the documented, clearer refusals
  (:func:`_documented`): the extension's 400 for names it cannot follow
  safely (``registry_refcount/names.py``: not ASCII, too long for storage,
  an empty namespace) and for an image id with a trailing newline, where
  the registry alone answers a 500, a 404, or stores the request in a
  place other requests cannot reach (``images/<id>%0A``).  A refusal
  where the registry alone answers 200 for any other request fails.
  GETs answered 200 also have identical bodies.
* the extension's work is **settled** (no intent, no deletion left), and
  the images it deleted were reachable from no tag and are the parent of
  no image left, on the registry alone's tree; each was reachable from a
  tag once (the extension collects what tags let go of, nothing else).
  The same images are then removed from the registry alone's tree, so
  that both go on from the same state and every later answer must be the
  same.  Where the extension refused a request (documented above), the
  registry alone's tree is put back as it was before that request.
* **S2, by tree comparison**: ``repositories/`` (every file and folder;
  contents too, except the tag json files, which hold the time of the
  write) and ``images/`` (every image's registry files, contents too;
  the extension's ``_references``, ``_references.legacy`` and
  ``_deleting`` left out) are equal on both sides, and nothing else
  outside ``extensions/refcount`` exists on the extension's side that the
  registry alone lacks (:func:`invariants.outside_listing`).

At the end every push still in progress is finished on both sides, every
tag is pulled on both (the same result), and ``verify`` exits 0 on the
extension's side (:func:`assert_invariants`: S1, R1, nothing unfinished).
Then ``gc --grace 0`` (twice) deletes only images no tag reaches, and
verify is still consistent.  The bugs the fuzz found have their own
tests at the end of this file.

Bounded for ``make test``: ``STEPS`` requests (150, about 30 s); 600 with
``REFCOUNT_STRESS=1``.  Seeded: ``REFCOUNT_FUZZ_SEED`` (default 2101); the
seed and the last requests are printed with any failure.
"""

from __future__ import absolute_import, print_function

import hashlib
import json
import os
import random
import shutil
import time

import pytest

from registry_refcount import invariants, layout

from .conftest import assert_invariants, refcount_settings
from .harness import Client, Registry, make_layer
from .test_cli import run

SEED = int(os.environ.get('REFCOUNT_FUZZ_SEED', '2101'))
STRESS = bool(os.environ.get('REFCOUNT_STRESS'))
#: Requests sent to each registry (the wind-down's come on top).
STEPS = 600 if STRESS else 150
#: Seconds the bounded run may take (a failure above it: keep it bounded).
BUDGET = 600 if STRESS else 60

#: The extension's entries in an image's folder (S2 leaves them out),
#: besides its tombstones (``_deleting-<token>``, one per deletion under
#: way, which layout.tombstone_token recognises).
EXT_IMAGE_ENTRIES = ('_references', '_references.legacy')


def _extensions(name):
    return name in EXT_IMAGE_ENTRIES or \
        layout.tombstone_token(name) is not None
#: The refusal messages of names.refusal and on_before_put_image_json.
NAME_REFUSAL = 'Invalid repository or tag name'
ID_REFUSAL = 'Invalid image id'
ANCESTOR_REFUSAL = 'An image cannot be its own ancestor'

#: Repositories as a docker client puts them in the URL, with a weight:
#: plain ones most often, then '..', '.', '%', '+', ' ', names starting
#: with '.', 'é' (not ASCII), an empty component, lengths about the
#: file system's limit (after the registry's two quotings: '%' is '%2525'
#: on disk, five bytes).  ('ns//app' is as near an empty namespace as a
#: URL gets: the view's path rule takes no leading '/', so '/app' or
#: '%2Fapp' match no route (404 on both sides), and 'ns//app' is
#: repository '/app' of 'ns', stored as '%252Fapp': the empty-namespace
#: refusal of names.py is not reachable over HTTP.)
REPOSITORIES = [
    ('ns/app', 12), ('ns/web', 6), ('app', 4), ('ns/%2e%2e', 2),
    ('ns/%2e', 2), ('%2e%2e/app', 1), ('ns/a%25b', 2), ('ns/a%2Bb', 2),
    ('ns/a%20b', 2), ('.ns/.repo', 2), ('ns/%C3%A9', 1), ('%C3%A9/app', 1),
    ('ns//app', 1), ('ns/' + 'y' * 250, 1), ('ns/' + 'y' * 300, 1),
    ('y' * 300 + '/app', 1), ('ns/' + '%25' * 50, 1),
    ('ns/' + '%25' * 60, 1), ('ns/x%3Ay', 1),
]
TAGS = [
    ('latest', 10), ('v1', 8), ('v2', 6), ('.v', 2), ('..x', 1),
    ('%2e%2e', 2), ('%2e', 2), ('a%20b', 1), ('a%2Bb', 1), ('a%25b', 1),
    ('%C3%A9', 1), ('y' * 240, 1), ('y' * 250, 1), ('y' * 300, 1),
    ('%25' * 50, 1), ('x%3Ay', 1), ('a%2Fb', 1),
]


def _pick(rng, weighted):
    total = sum(w for _, w in weighted)
    x = rng.uniform(0, total)
    for value, w in weighted:
        x -= w
        if x <= 0:
            return value
    return weighted[-1][0]


def _hex(rng, n):
    return ''.join(rng.choice('0123456789abcdef') for _ in range(n))


#: Bugs the fuzz found, fixed since (each has its test at the end): a
#: json PUT again for a push in progress naming another parent left
#: child-<id> on the first parent (verify exited 1, the parent was kept);
#: an image whose json named itself, or a descendant, as its parent kept
#: itself for ever (now refused: ANCESTOR_REFUSAL).


# -- the trees compared ------------------------------------------------------

def _snapshot(root):
    """Every folder and file (with its bytes) under ``root``."""
    dirs, files = set(), {}
    for folder, subdirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        dirs.add(rel)
        for name in names:
            with open(os.path.join(folder, name), 'rb') as f:
                files[os.path.normpath(os.path.join(rel, name))] = f.read()
    return dirs, files


def _restore(root, snap):
    """Put ``root`` back as :func:`_snapshot` saw it."""
    dirs, files = snap
    now_dirs, now_files = _snapshot(root)
    for path in set(now_files) - set(files):
        os.remove(os.path.join(root, path))
    for path in sorted(now_dirs - dirs, key=len, reverse=True):
        shutil.rmtree(os.path.join(root, path), ignore_errors=True)
    for path in sorted(dirs, key=len):
        if not os.path.isdir(os.path.join(root, path)):
            os.makedirs(os.path.join(root, path))
    for path, data in files.items():
        if now_files.get(path) != data:
            with open(os.path.join(root, path), 'wb') as f:
                f.write(data)


def _timestamped(path):
    """A file of the registry's that holds the time of its write: a tag's
    ``tag<tag>_json`` and a repository's ``json``."""
    name = path.rsplit('/', 1)[-1]
    return name == 'json' or (name.startswith('tag') and
                              not name.startswith('tag_') and
                              name.endswith('_json'))


def repositories_tree(storage):
    """``repositories/`` as folders and files with digests (the tag json
    files' contents left out)."""
    root = os.path.join(storage, 'repositories')
    found = {}
    for folder, subdirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        found[rel + '/'] = 'dir'
        for name in names:
            path = os.path.normpath(os.path.join(rel, name))
            if _timestamped(path):
                found[path] = 'timestamped'
            else:
                with open(os.path.join(folder, name), 'rb') as f:
                    found[path] = hashlib.sha1(f.read()).hexdigest()
    return found


def image_files(storage, image):
    """The registry's files of one image, with digests (the extension's
    entries left out)."""
    root = os.path.join(storage, 'images', image)
    found = {}
    for folder, subdirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel == '.':
            subdirs[:] = [d for d in subdirs if not _extensions(d)]
            names = [n for n in names if not _extensions(n)]
        for name in names:
            with open(os.path.join(folder, name), 'rb') as f:
                found[os.path.normpath(os.path.join(rel, name))] = \
                    hashlib.sha1(f.read()).hexdigest()
    return found


def image_folders(storage):
    try:
        return set(os.listdir(os.path.join(storage, 'images')))
    except OSError:
        return set()


def tags_in(storage):
    """``{tag file path: its content}`` under ``repositories/``."""
    root = os.path.join(storage, 'repositories')
    found = {}
    for folder, subdirs, names in os.walk(root):
        for name in names:
            if name.startswith('tag_'):
                path = os.path.join(folder, name)
                with open(path, 'rb') as f:
                    found[os.path.relpath(path, root)] = f.read()
    return found


def parents_of(storage, image):
    """Every image this one's json and ancestry name as its ancestors."""
    folder = os.path.join(storage, 'images', image)
    found = set()
    try:
        with open(os.path.join(folder, 'json'), 'rb') as f:
            parent = json.loads(f.read().decode('utf-8')).get('parent')
        if parent:
            found.add(parent)
    except (IOError, ValueError, AttributeError, UnicodeError):
        pass
    try:
        with open(os.path.join(folder, 'ancestry'), 'rb') as f:
            found.update(json.loads(f.read().decode('utf-8'))[1:])
    except (IOError, ValueError, TypeError, UnicodeError):
        pass
    return set(p for p in found if isinstance(p, type(u'')))


def reachable(storage):
    """Images a tag names, with every ancestor (json parents and
    ancestries both), on the registry's tree."""
    todo = [v.decode('utf-8', 'replace') for v in tags_in(storage).values()]
    seen = set()
    while todo:
        image = todo.pop()
        if image in seen:
            continue
        seen.add(image)
        todo.extend(parents_of(storage, image))
    return seen


# -- the two registries -------------------------------------------------------

class Divergence(AssertionError):
    pass


class Pair(object):
    """The registry alone and the registry with the extension, fed the
    same requests; checks after each (see the module's docstring)."""

    def __init__(self, alone, ext, seed):
        self.alone, self.ext = alone, ext
        self.ca, self.ce = Client(alone.url), Client(ext.url)
        for client in (self.ca, self.ce):
            # a connection per request: gunicorn restarts its worker every
            # 100 requests (docker-registry's --max-requests), and a kept
            # connection then ends without an answer
            client.http.headers['Connection'] = 'close'
        self.seed = seed
        self.history = []
        self.refused = []       # (request, alone's code): documented
        self.deleted = []       # images the extension deleted
        self.ever_reachable = set()
        self.requests = 0
        self.codes = {}         # 'METHOD endpoint': {status: count}

    def fail(self, message):
        raise Divergence('%s\nREFCOUNT_FUZZ_SEED=%d; the last requests '
                         '(method, path, body, alone, ext):\n  %s' % (
                             message, self.seed, '\n  '.join(
                                 repr(h) for h in self.history[-25:])))

    def send(self, method, path, body=None, headers=None, kind=None):
        """One request to each registry, then the checks; the extension's
        response."""
        mutating = method in ('PUT', 'DELETE')
        snap = _snapshot(self.alone.storage) if mutating else None
        ra = self.ca._req(method, path, data=body, headers=headers)
        re_ = self.ce._req(method, path, data=body, headers=headers)
        self.requests += 1
        shown = body if not isinstance(body, bytes) or len(body) < 200 \
            else body[:60] + b'...'
        self.history.append((method, path[:120], shown, ra.status_code,
                             re_.status_code))
        what = '%s %s' % (method, _endpoint(path))
        self.codes.setdefault(what, {})
        self.codes[what][re_.status_code] = \
            self.codes[what].get(re_.status_code, 0) + 1
        if not self.ext.settle(timeout=20):
            self.fail('the extension did not settle after the request')
        if ra.status_code != re_.status_code:
            reason = _documented(method, path, ra, re_)
            if reason is None:
                self.fail('status codes differ: alone %s %r, extension %s '
                          '%r' % (ra.status_code, ra.text[:200],
                                  re_.status_code, re_.text[:200]))
            self.refused.append(('%s (alone %d)' % (reason, ra.status_code),
                                 method, path[:80], ra.status_code))
            if snap is not None:
                _restore(self.alone.storage, snap)
        elif method == 'GET' and ra.status_code == 200 and \
                ra.content != re_.content and kind != 'timestamped':
            self.fail('GET bodies differ: alone %r, extension %r' % (
                ra.content[:200], re_.content[:200]))
        self.compare()
        return re_

    def compare(self):
        """Deletions were of images no tag reaches; mirror them; then the
        trees are equal."""
        alone, ext = self.alone.storage, self.ext.storage
        a_images = dict((i, image_files(alone, i))
                        for i in image_folders(alone))
        e_images = dict((i, image_files(ext, i))
                        for i in image_folders(ext))
        a_images = dict((i, f) for i, f in a_images.items() if f)
        e_images = dict((i, f) for i, f in e_images.items() if f)
        extra = set(e_images) - set(a_images)
        if extra:
            self.fail('images on the extension side only: %s' % sorted(extra))
        gone = set(a_images) - set(e_images)
        if gone:
            live = reachable(alone)
            parents = set()
            for image in set(a_images) - gone:
                parents |= parents_of(alone, image)
            for image in sorted(gone):
                if image in live:
                    self.fail('the extension deleted %s, which a tag '
                              'reaches' % image)
                if image in parents:
                    self.fail('the extension deleted %s, the parent of an '
                              'image left' % image)
                if image not in self.ever_reachable:
                    self.fail('the extension deleted %s, which no tag ever '
                              'reached' % image)
                shutil.rmtree(os.path.join(alone, 'images', image))
                self.deleted.append(image)
        for image in sorted(e_images):
            if a_images[image] != e_images[image]:
                self.fail('image %s differs: alone %r, extension %r' % (
                    image, sorted(a_images[image].items()),
                    sorted(e_images[image].items())))
        ra, re_ = repositories_tree(alone), repositories_tree(ext)
        if ra != re_:
            diff = sorted(set(ra.items()) ^ set(re_.items()))
            self.fail('repositories/ differs: %r' % diff[:20])
        oa = invariants.outside_listing(alone)
        oe = invariants.outside_listing(ext)
        odd = sorted(p for p in set(oa) ^ set(oe)
                     if not p.startswith('extensions/refcount'))
        if odd:
            self.fail('outside images/ and extensions/refcount, files on '
                      'one side only: %r' % odd)
        self.ever_reachable |= reachable(alone)


def _documented(method, path, ra, re_):
    """Why the extension's answer may differ from the registry alone's, or
    None.  Documented in registry_refcount/names.py (its commit's table):
    the extension answers 400 for a name it cannot follow safely - not
    ASCII (alone: 500), too long for storage (alone: 500 on a tag PUT, its
    tag file written and its json not; 404 on a DELETE), an empty
    namespace (alone: 200, stored where ``repositories/<repo>`` is) - and
    for a json whose id ends in a newline (alone: 200, stored at
    ``images/<id>%0A``, a folder no valid id names)."""
    if re_.status_code != 400:
        return None
    if NAME_REFUSAL in re_.text and ra.status_code != 200:
        return 'name refused (%s)' % re_.text[:80]
    if NAME_REFUSAL in re_.text and 'empty namespace' in re_.text:
        return 'empty namespace refused'
    if ID_REFUSAL in re_.text and method == 'PUT' and \
            path.endswith('%0A/json'):
        return 'id with a trailing newline refused'
    if ANCESTOR_REFUSAL in re_.text and method == 'PUT' and \
            path.endswith('/json'):
        return 'an image as its own ancestor refused (alone: 200, and '\
            'the image kept for ever)'
    return None


def _endpoint(path):
    parts = path.split('/')
    if parts[2] == 'images':
        return 'image ' + parts[-1]
    if '/tags/' in path:
        return 'tag'
    return 'repository ' + parts[-1]


# -- the requests -------------------------------------------------------------

class Fuzz(object):
    def __init__(self, pair, rng):
        self.pair, self.rng = pair, rng
        self.pool = [_hex(rng, 64) for _ in range(7)] + \
            [_hex(rng, 16) for _ in range(2)]
        self.pool.append(self.pool[0][:16])     # a prefix of another
        self.json_body = {}     # image: the json body last stored
        self.layer_body = {}    # image: the layer last stored
        self.tagged = set()     # (repository, tag) as in URLs, once 200

    def choice(self, seq):
        return self.rng.choice(seq)

    def image(self):
        return self.choice(self.pool)

    def stored(self):
        """An image whose json was stored (if any): likely to exist."""
        known = sorted(self.json_body)
        return self.choice(known) if known else self.image()

    def bad_url_id(self, image):
        return self.choice([
            image + '%0A', '..%2Fx', image[:32], 'z' * 64, image.upper(),
            image + '0', ''])

    # -- pushes

    def json_doc(self, image, url_id):
        r = self.rng.random()
        doc = {'id': image, 'created': '2014-10-01T00:00:00Z',
               'container_config': {'Cmd': ['/bin/true']}}
        if url_id.endswith('%0A'):
            doc['id'] = image + '\n'
        parent = self.parent(image)
        if parent is not None:
            doc['parent'] = parent
        if r < 0.04:
            return b'not json'
        if r < 0.07:
            return json.dumps([doc])
        if r < 0.10:
            doc.pop('id')
        elif r < 0.13:
            doc['id'] = self.image()
        elif r < 0.15:
            doc['id'] = image + '\n'
        return json.dumps(doc)

    def parent(self, image):
        r = self.rng.random()
        if r < 0.35:
            return None
        if r < 0.70:
            return self.stored()
        choices = [
            self.image(), '../x', '../repositories/ns', self.stored() + '\n',
            self.stored()[:16], 'z' * 64, 5, [], {'a': 1}, '', image,
            self.stored().upper()]
        return self.choice(choices)

    def push_json(self, image=None):
        image = image or self.image()
        url_id = image if self.rng.random() < 0.9 else self.bad_url_id(image)
        body = self.json_doc(image, url_id)
        r = self.pair.send('PUT', '/v1/images/%s/json' % url_id, body,
                           {'Content-Type': 'application/json'})
        if r.status_code == 200:
            self.json_body[image] = body.encode() if not isinstance(
                body, bytes) else body
            self.layer_body.pop(image, None)
        return r

    def push_layer(self, image=None):
        image = image or self.stored()
        url_id = image if self.rng.random() < 0.95 else self.bad_url_id(image)
        layer = make_layer(image + str(self.rng.random()),
                           size=self.rng.choice([16, 64, 300])) \
            if self.rng.random() < 0.8 else \
            bytes(bytearray(self.rng.randrange(256) for _ in range(40)))
        r = self.pair.send('PUT', '/v1/images/%s/layer' % url_id, layer)
        if r.status_code == 200 and url_id == image:
            self.layer_body[image] = layer
        return r

    def push_checksum(self, image=None, good=None):
        image = image or self.stored()
        good = self.rng.random() < 0.75 if good is None else good
        headers = {}
        if good and image in self.json_body:
            headers['X-Docker-Checksum-Payload'] = 'sha256:' + hashlib.sha256(
                self.json_body[image] + b'\n' +
                self.layer_body.get(image, b'')).hexdigest()
        else:
            value = self.choice([None, '', 'sha256', 'sha256:' + '0' * 64,
                                 'md5:x:y'])
            if value is not None:
                headers['X-Docker-Checksum-Payload'] = value
        return self.pair.send('PUT', '/v1/images/%s/checksum' % image,
                              headers=headers)

    def full_push(self):
        """docker's push of one image: json, layer, checksum (a new image
        now and then, up to 20)."""
        if len(self.pool) < 20 and self.rng.random() < 0.4:
            self.pool.append(_hex(self.rng, self.choice([64, 64, 16])))
            image = self.pool[-1]
        else:
            image = self.image()
        r = self.push_json(image)
        if r.status_code != 200:
            return
        r = self.push_layer(image)
        if r.status_code != 200:
            return
        self.push_checksum(image, good=True)

    # -- tags and repositories

    def tag_body(self):
        r = self.rng.random()
        if r < 0.55:
            return json.dumps(self.stored())
        return self.choice([
            json.dumps(self.image()), json.dumps(_hex(self.rng, 64)),
            json.dumps(self.stored()[:16]), json.dumps(self.stored() + '\n'),
            json.dumps('../repositories/ns/app'), 'not json', '5',
            json.dumps([self.stored()]), '""', 'null', '{"id": "x"}',
            json.dumps(u'\u00e9'), '', json.dumps(self.stored().upper()),
            json.dumps(' ' + self.stored())])

    def repository(self):
        return _pick(self.rng, REPOSITORIES)

    def tag_name(self):
        return _pick(self.rng, TAGS)

    def names(self, reuse):
        """A repository and a tag: with probability ``reuse`` ones a tag
        PUT answered 200 for (tags move and go; chains are freed)."""
        if self.tagged and self.rng.random() < reuse:
            return self.choice(sorted(self.tagged))
        return self.repository(), self.tag_name()

    def put_tag(self):
        repo, tag = self.names(0.5)
        r = self.pair.send('PUT', '/v1/repositories/%s/tags/%s' % (
            repo, tag), self.tag_body())
        if r.status_code == 200:
            self.tagged.add((repo, tag))
        return r

    def delete_tag(self):
        return self.pair.send('DELETE', '/v1/repositories/%s/tags/%s'
                              % self.names(0.7))

    def delete_repository(self):
        end = self.choice(['/', '/tags'])
        return self.pair.send('DELETE', '/v1/repositories/%s%s' % (
            self.names(0.6)[0], end))

    def put_repository(self):
        """The index's images list (standalone): docker's first and last
        request of a push."""
        listing = json.dumps([{'id': self.stored()}
                              for _ in range(self.rng.randrange(3))])
        end = self.choice(['/', '/images'])
        return self.pair.send('PUT', '/v1/repositories/%s%s' % (
            self.repository(), end), listing)

    def get(self):
        r = self.rng.random()
        if r < 0.3:
            return self.pair.send('GET', '/v1/repositories/%s/tags/%s' % (
                self.repository(), self.tag_name()))
        if r < 0.45:
            return self.pair.send('GET', '/v1/repositories/%s/tags'
                                  % self.repository())
        what = self.choice(['json', 'ancestry', 'layer'])
        image = self.stored() if self.rng.random() < 0.9 else \
            self.bad_url_id(self.image())
        return self.pair.send('GET', '/v1/images/%s/%s' % (image, what))

    ACTIONS = [('push_json', 16), ('push_layer', 8), ('push_checksum', 8),
               ('full_push', 16), ('put_tag', 30), ('delete_tag', 12),
               ('delete_repository', 4), ('put_repository', 3), ('get', 11)]

    def run(self, steps):
        while self.pair.requests < steps:
            getattr(self, _pick(self.rng, self.ACTIONS))()

    def wind_down(self):
        """Finish every push still in progress, on both sides."""
        for image in sorted(self.json_body):
            if os.path.exists(os.path.join(self.pair.ext.storage, 'images',
                                           image, '_inprogress')):
                if self.pair.send('PUT', '/v1/images/%s/layer' % image,
                                  make_layer(image)).status_code == 200:
                    self.layer_body[image] = make_layer(image)
                self.push_checksum(image, good=True)


def final_check(pair):
    """verify on the extension's side: consistent, exit 0."""
    ext = pair.ext
    rep = invariants.check(ext.store(), jobs=4)
    if rep.r1 or rep.s1 or rep.unreadable or rep.journal or rep.legacy or \
            rep.intents:
        pair.fail('the invariants on the extension side:\n%s'
                  % invariants.as_json(rep))
    code, doc, out, err = run(ext, 'verify')
    if code != 0:
        pair.fail('verify exited %d:\n%s%s' % (code, out, err))
    assert_invariants(ext, client=None)
    # gc on the tree the fuzz left (twice: candidates, then deletions):
    # it deletes only images no tag reaches, and verify stays as it was
    live = reachable(ext.storage)
    before = set(i for i in image_folders(ext.storage)
                 if image_files(ext.storage, i))
    for _ in range(2):
        code, doc, out, err = run(ext, 'gc', '--grace', '0')
        if code != 0:
            pair.fail('gc exited %d:\n%s%s' % (code, out, err))
    after = set(i for i in image_folders(ext.storage)
                if image_files(ext.storage, i))
    if (before - after) & live:
        pair.fail('gc deleted %s, which a tag reaches'
                  % sorted((before - after) & live))
    print('fuzz: gc deleted %d of %d unreachable images' % (
        len(before - after), len(before - live)))
    code, doc, out, err = run(ext, 'verify')
    if code != 0:
        pair.fail('verify after gc exited %d:\n%s%s' % (code, out, err))


def test_extension_answers_as_the_registry_alone(tmpdir):
    print('REFCOUNT_FUZZ_SEED=%d STEPS=%d' % (SEED, STEPS))
    started = time.time()
    alone = Registry(str(tmpdir.mkdir('alone')), refcount=None, workers=1)
    ext = Registry(str(tmpdir.mkdir('ext')),
                   refcount=refcount_settings(tmpdir), workers=1)
    try:
        alone.start()
        ext.start()
        pair = Pair(alone, ext, SEED)
        fuzz = Fuzz(pair, random.Random(SEED))
        fuzz.run(STEPS)
        fuzz.wind_down()
        assert sorted(tags_in(alone.storage)) == sorted(tags_in(ext.storage))
        for repo, tag in sorted(fuzz.tagged):
            a = pair.ca.pullable(repo, tag)
            e = pair.ce.pullable(repo, tag)
            if a != e:
                pair.fail('pull of %s:%s: alone %r, extension %r' % (
                    repo, tag, a, e))
        final_check(pair)
        elapsed = time.time() - started
        print('fuzz: codes %s' % json.dumps(pair.codes, sort_keys=True))
        print('fuzz: %d requests in %.1f s; %d images deleted by the '
              'extension; %d documented refusals: %r' % (
                  pair.requests, elapsed, len(pair.deleted),
                  len(pair.refused), sorted(set(
                      r[0][:24] + r[0][-11:] for r in pair.refused))))
        assert elapsed < BUDGET, 'the bounded fuzz took %.1f s' % elapsed
    finally:
        alone.stop()
        ext.stop()


# -- what the fuzz found ----------------------------------------------------

@pytest.fixture
def ext_registry(make_registry):
    return make_registry(workers=1).start()


def test_repush_with_another_parent_leaves_no_stale_marker(ext_registry):
    """A push in progress whose json is PUT again with another parent
    (the registry alone allows it: the json is replaced while _inprogress
    is there) moves its child marker: the first parent is no longer
    referred to, and verify is consistent."""
    reg = ext_registry
    client = Client(reg.url)
    first, = client.push_chain(['repush-first'])
    second, = client.push_chain(['repush-second'])
    child = hashlib.sha256(b'repush-child').hexdigest()
    for parent in (first, second):
        r = client.http.put(reg.url + '/v1/images/%s/json' % child,
                            data=json.dumps({'id': child, 'parent': parent}))
        assert r.status_code == 200, r.text
    reg.settle()
    code, doc, out, err = run(reg, 'verify')
    assert code == 0, out + err


def test_repush_with_another_parent_then_untag_frees_the_first_parent(
        ext_registry):
    """The same push, finished, tagged and untagged: the child and both
    parents are freed (the first parent's stale child marker kept it, and
    verify --repair could not drop a marker whose child is gone); the
    first parent as soon as the push named another."""
    reg = ext_registry
    client = Client(reg.url)
    first, = client.push_chain(['repush-first'])
    second, = client.push_chain(['repush-second'])
    child = hashlib.sha256(b'repush-child').hexdigest()
    client.http.put(reg.url + '/v1/images/%s/json' % child,
                    data=json.dumps({'id': child, 'parent': first}))
    assert client.push_image(child, second).status_code == 200
    client.tag('ns/app', 'v1', child)
    reg.settle()
    # the first parent lost its one referrer: deleted online
    assert reg.images() == set([second, child])
    assert client.delete_tag('ns/app', 'v1').status_code == 200
    assert reg.images() == set(), 'the first parent is kept'
    code, doc, out, err = run(reg, 'verify')
    assert code == 0, out + err


def test_an_image_pushed_as_its_own_parent_is_freed_by_its_untag(
        ext_registry):
    """An image whose json, PUT again while its push is in progress, names
    itself as its parent: tagged then untagged, it is deleted like any
    other (or its json was refused)."""
    reg = ext_registry
    client = Client(reg.url)
    image = hashlib.sha256(b'self-parent').hexdigest()
    url = reg.url + '/v1/images/%s/json' % image
    assert client.http.put(url, data=json.dumps(
        {'id': image})).status_code == 200
    r = client.push_image(image, parent=image)
    assert r.status_code == 400 and ANCESTOR_REFUSAL in r.text, r.text
    # two pushes in progress naming each other: the second is refused
    other = hashlib.sha256(b'self-parent-2').hexdigest()
    assert client.http.put(reg.url + '/v1/images/%s/json' % other,
                           data=json.dumps({'id': other, 'parent': image})
                           ).status_code == 200
    r = client.http.put(url, data=json.dumps({'id': image,
                                              'parent': other}))
    assert r.status_code == 400 and ANCESTOR_REFUSAL in r.text, r.text
    client.push_image(image)
    client.push_image(other, parent=image)
    client.tag('ns/app', 'v1', other)
    assert client.delete_tag('ns/app', 'v1').status_code == 200
    assert reg.images() == set(), 'the image names itself and is kept'
