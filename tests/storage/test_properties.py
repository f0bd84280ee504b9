"""Property tests (issue 3): random sequences of registry operations, with
crashes at the named points, on the real file driver, checked after every
step against a plain mark-and-sweep model of the truth.

The model (:class:`Model`) knows only what a registry operator knows: the
tags ``{key: image}``, the images ``{id: parent}``, and which images ever
had a referrer (a tag, a child, a tag write in flight).  From that it
predicts

* whether the registry refuses a request (a child of a deleted image, a tag
  naming a deleted image, an untag of a missing tag);
* which images an online operation deletes: an image that had a referrer
  and has none left (DESIGN.md section 4) - the top of an abandoned push,
  which never had one, is left for gc; a parent with a present child stays;
* what a gc sweep past its grace period leaves: exactly what the tags reach.

After every step: the tag files equal the model's tags, only tag files lie
outside ``images/`` and ``extensions/refcount/`` (S2), and every image a
tag reaches is present and whole (S1).  While no crash is unaccounted for
(the model is *clean*), storage must equal the model exactly and every
record must equal the truth (R1).  After a crash (a point reached: the
"process" dies, its ``with lock`` blocks release like a dead process's
flock) the model resyncs its tags from the tag files and its images from
storage, and is *dirty* until a recovery that reaches no crash: then R1
must hold and every image that lost its last referrer must be gone (L1,
online form).

Budget: ``REFCOUNT_STRESS=1`` (``make stress``) runs many more and longer
sequences; ``REFCOUNT_EXAMPLES=<n>`` sets the number of sequences;
``REFCOUNT_STATS=1`` prints what was covered.
"""

from __future__ import absolute_import, unicode_literals

import collections
import contextlib
import json
import logging
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from docker_registry.drivers import file as file_driver

from registry_refcount import crash
from registry_refcount import invariants
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import recovery
from registry_refcount import sweep
from registry_refcount import truth

from . import world
from .world import Refused

T = layout.TagKey

STRESS = os.environ.get('REFCOUNT_STRESS', '') not in ('', '0')
EXAMPLES = int(os.environ.get('REFCOUNT_EXAMPLES') or (2000 if STRESS
                                                          else 120))
MAX_OPS = 60 if STRESS else 30
BUDGET = settings(max_examples=EXAMPLES, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.data_too_large])

REPOS = [('ns', 'app'), ('ns', 'base'), ('lib', 'web')]
KEYS = [T(ns, repo, tag) for ns, repo in REPOS for tag in ('latest', 'v1')]

#: What the runs covered (printed with REFCOUNT_STATS=1 or in stress mode).
STATS = collections.Counter()


# -- crashes -----------------------------------------------------------------

class Crashed(BaseException):
    """The process died at a crash point (``os._exit`` in production).
    A BaseException: nothing in the protocols catches it, and the ``with``
    blocks of the locks release, like the flocks of a dead process."""


@contextlib.contextmanager
def crash_at(point):
    """Arm ``point`` for the duration: reaching it raises :class:`Crashed`
    where the real process would ``os._exit``."""
    saved = crash._armed, os._exit

    def die(code):
        raise Crashed(point)

    crash._armed = frozenset([point])
    os._exit = die
    try:
        yield
    finally:
        crash._armed, os._exit = saved


@contextlib.contextmanager
def quiet():
    """The protocols log every deletion; thousands of them only slow the
    runs down (a failure prints the sequence of operations instead)."""
    logger = logging.getLogger('registry_refcount')
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- requests in two halves (two requests interleaved) -----------------------

def begin_tag(ctx, key, image):
    """``request_started`` of a tag PUT: the intent, the pending marker."""
    intent_id = protocols.new_intent_id()
    doc = {'tag': str(key), 'image': image}
    protocols.write_intent(ctx.store, intent_id, **doc)
    if not protocols.add_pending(ctx, intent_id, key, image):
        records.remove(ctx.store, layout.intent(intent_id))
        raise Refused('Image not found')
    return intent_id, doc


def end_tag(ctx, key, image, intent_id, doc):
    """The rest of the tag PUT: the view, ``tag_created``, the teardown."""
    store = ctx.store
    if not store.exists(layout.image_file(image, 'json')):
        protocols.finish_intent(ctx, intent_id, doc)
        raise Refused('Image not found')
    store.put_content(layout.tag_file(key), image.encode())
    protocols.reconcile_tag(ctx, key)
    protocols.finish_intent(ctx, intent_id, doc, reconcile=False)


def begin_push(ctx, image, parent):
    """The image json PUT up to ``before_put_image_json``."""
    store = ctx.store
    if not store.exists(layout.image_file(parent, 'json')):
        raise Refused('Image depends on a non existing parent')
    if store.exists(layout.tombstone(image)):
        raise Refused('being deleted')
    err = protocols.register_child(ctx, image, parent)
    if err:
        raise Refused(err)


def end_push(ctx, image, parent):
    """The rest of the push: json, ancestry, layer, checksum."""
    store = ctx.store
    store.put_content(layout.image_file(image, '_inprogress'), b'true')
    store.put_content(layout.image_file(image, 'json'), json.dumps(
        {'id': image, 'parent': parent}).encode())
    ancestry = [image] + json.loads(layout.text(store.get_content(
        layout.image_file(parent, 'ancestry'))))
    store.put_content(layout.image_file(image, 'ancestry'),
                      json.dumps(ancestry).encode())
    store.put_content(layout.image_file(image, 'layer'),
                      b'layer of ' + image.encode())
    store.put_content(layout.image_file(image, '_checksum'), b'["sha256:x"]')
    store.remove(layout.image_file(image, '_inprogress'))


# -- the model ---------------------------------------------------------------

class Model(object):
    """Mark and sweep over tags and parents, plus the online rule."""

    def __init__(self):
        self.tags = {}          # TagKey -> image id
        self.images = {}        # image id -> parent: json present
        self.known = {}         # image id -> parent: every id ever pushed
        self.referenced = set()  # had a referrer in its current life
        self.ghosts = {}        # child -> parent: registered, never stored
        self.pushes = collections.OrderedDict()      # in flight: child -> p
        self.tag_writes = collections.OrderedDict()  # in flight: id -> (k, i)
        self.dirty = False      # a crash not yet followed by a recovery
        self.counter = 0

    def new_id(self, parent):
        self.counter += 1
        image = world.image_id('p%d' % self.counter)
        self.known[image] = parent
        return image

    def chain(self, image):
        ids = []
        while image is not None:
            ids.append(image)
            image = self.known[image]
        return ids

    def closure(self, tops):
        seen = set()
        for top in tops:
            seen.update(self.chain(top))
        return seen

    def reachable(self):
        return self.closure(self.tags.values())

    def pinned(self):
        """Images a tag write in flight names (their pending marker)."""
        return set(w[1] for w in self.tag_writes.values())

    def needed(self):
        need = set(self.tags.values())
        need.update(p for p in self.images.values() if p is not None)
        need.update(self.ghosts.values())
        need.update(self.pushes.values())
        need.update(self.pinned())
        return need

    def settle(self):
        """Online deletions: every image that had a referrer and has none
        left goes, and its parent loses a child.  Returns what went."""
        gone = set()
        while True:
            need = self.needed()
            doomed = [i for i in self.images
                      if i in self.referenced and i not in need]
            if not doomed:
                return gone
            for image in doomed:
                del self.images[image]
                self.referenced.discard(image)
                gone.add(image)

    def swept(self):
        """A gc sweep with no grace: only what a tag or a tag write in
        flight reaches stays."""
        keep = self.closure(set(self.tags.values()) | self.pinned())
        self.images = dict((i, p) for i, p in self.images.items()
                           if i in keep)
        self.ghosts = dict((c, p) for c, p in self.ghosts.items()
                           if p in keep)
        self.referenced &= set(self.images)


# -- the runner --------------------------------------------------------------

class Run(object):
    """One sequence of operations on a fresh registry storage."""

    def __init__(self, root):
        self.root = os.path.join(root, 'storage')
        self.store = file_driver.Storage(path=self.root)
        protocols.initialise(self.store)
        self.ctx = protocols.context(self.store, locks.LocalLocks(
            os.path.join(root, 'locks'), timeout=5))
        self.m = Model()
        self.touched = set()     # images a crash of this op leaves referenced
        self.pushing = None      # (child, parent) of a push in this op

    # storage facts
    def has_json(self, image):
        return self.store.exists(layout.image_file(image, 'json'))

    def tombstoned(self, image):
        return self.store.exists(layout.tombstone(image))

    def usable(self, image):
        return image in self.m.images and not self.tombstoned(image)

    def pick(self, ref):
        """A present image, or (``dead``) one that is not any more."""
        kind, n = ref
        live = sorted(self.m.images)
        dead = sorted(i for i in self.m.known if i not in self.m.images
                      and i not in self.m.pushes)
        pool = dead if kind == 'dead' and dead else live
        return pool[n % len(pool)] if pool else None

    def outcome(self, expected, fn, *args):
        try:
            result = fn(*args)
        except Refused:
            assert not expected, 'refused, but the model expected success'
            return False, None
        assert expected, 'accepted, but the model expected a refusal'
        return True, result

    # -- operations
    def apply(self, op):
        STATS['operations'] += 1
        self.touched, self.pushing = set(), None
        if op[0] == 'crash':
            point, inner = op[1], op[2]
            try:
                with crash_at(point):
                    self.apply_plain(inner)
            except Crashed:
                event('crash at %s during %s' % (point, inner[0]))
                STATS['crash at %s' % point] += 1
                STATS['crash during %s' % inner[0]] += 1
                self.crashed()
        else:
            self.apply_plain(op)
        if self.m.dirty:
            self.refresh()
        else:
            self.m.settle()
        self.check()

    def apply_plain(self, op):
        STATS['op %s' % op[0]] += 1
        getattr(self, 'do_' + op[0])(*op[1:])

    def do_push(self, ref):
        parent = None if ref is None else self.pick(ref)
        self._push(self.m.new_id(parent), parent)

    def do_repush(self, n):
        """The same id again, with its parent: a client retrying, or
        pushing again what was deleted."""
        dead = sorted(i for i in self.m.known if i not in self.m.images
                      and i not in self.m.pushes)
        if dead:
            image = dead[n % len(dead)]
            self._push(image, self.m.known[image])

    def _push(self, image, parent):
        expected = ((parent is None or self.usable(parent)) and
                    not self.tombstoned(image))
        self.pushing = (image, parent)
        if parent is not None:
            self.touched.add(parent)
        ok, _ = self.outcome(expected, world.push, self.ctx, image, parent)
        if ok:
            self.m.images[image] = parent
            self.m.ghosts.pop(image, None)
            if parent is not None:
                self.m.referenced.add(parent)
        STATS['push %s' % ('accepted' if ok else 'refused')] += 1

    def do_tag(self, k, ref):
        key, image = KEYS[k % len(KEYS)], self.pick(ref)
        if image is None:
            return
        self.touched.add(image)
        ok, _ = self.outcome(self.usable(image), world.put_tag, self.ctx,
                             key, image)
        if ok:
            self.m.tags[key] = image
            self.m.referenced.add(image)
        STATS['tag %s' % ('accepted' if ok else 'refused')] += 1

    def do_untag(self, k):
        key = KEYS[k % len(KEYS)]
        ok, _ = self.outcome(key in self.m.tags, world.delete_tag, self.ctx,
                             key)
        if ok:
            del self.m.tags[key]

    def do_delrepo(self, r):
        ns, repo = REPOS[r % len(REPOS)]
        self.outcome(True, world.delete_repository, self.ctx, ns, repo)
        self.m.tags = dict((k, v) for k, v in self.m.tags.items()
                           if (k.namespace, k.repository) != (ns, repo))

    def do_begin_tag(self, k, ref):
        key, image = KEYS[k % len(KEYS)], self.pick(ref)
        if image is None:
            return
        self.touched.add(image)
        ok, started = self.outcome(self.usable(image), begin_tag, self.ctx,
                                   key, image)
        if ok:
            self.m.tag_writes[started[0]] = (key, image, started[1])
            self.m.referenced.add(image)

    def do_end_tag(self, n):
        if not self.m.tag_writes:
            return
        intent_id = list(self.m.tag_writes)[n % len(self.m.tag_writes)]
        key, image, doc = self.m.tag_writes.pop(intent_id)
        self.touched.add(image)
        # the pending marker kept the image: the write must go through
        self.outcome(True, end_tag, self.ctx, key, image, intent_id, doc)
        self.m.tags[key] = image

    def do_begin_push(self, ref):
        parent = self.pick(ref)
        if parent is None:
            return
        image = self.m.new_id(parent)
        self.pushing = (image, parent)
        self.touched.add(parent)
        ok, _ = self.outcome(self.usable(parent), begin_push, self.ctx,
                             image, parent)
        if ok:
            self.m.pushes[image] = parent
            self.m.referenced.add(parent)

    def do_end_push(self, n):
        if not self.m.pushes:
            return
        image = list(self.m.pushes)[n % len(self.m.pushes)]
        parent = self.m.pushes.pop(image)
        self.pushing = (image, parent)
        # the child marker kept the parent: the push must go through
        self.outcome(True, end_push, self.ctx, image, parent)
        self.m.images[image] = parent

    def do_recover(self):
        # recovery with intent_timeout=0 would take the tag writes in
        # flight for abandoned ones: give them their timeout
        timeout = 3600 if self.m.tag_writes else 0
        rep = recovery.recover(self.ctx, intent_timeout=timeout)
        assert rep['errors'] == [] and rep['unreadable'] == [], rep
        if timeout == 0:
            self.recovered()

    def do_gc(self):
        # a push in flight is what the grace period protects
        grace = 3600 if self.m.pushes else 0
        reachable = self.m.reachable()
        rep = sweep.sweep(self.ctx, grace_period=grace, jobs=1)
        assert rep['errors'] == [], rep
        if grace:
            return
        if not self.m.dirty:
            self.m.swept()
            return
        # after a crash: what else may stay is what a tombstone (recovery
        # finishes it), a pending marker of a live intent or a push in
        # flight holds, and their ancestors
        held = set(self.m.pinned()) | set(self.m.pushes.values())
        for image in world.folders(self.store):
            if self.tombstoned(image):
                held.add(image)
            for marker in records.markers(self.store, image):
                if (marker.startswith(layout.PENDING_PREFIX) and
                        self.store.exists(layout.intent(
                            marker[len(layout.PENDING_PREFIX):]))):
                    held.add(image)
        extra = world.present(self.store) - reachable - self.m.closure(
            i for i in held if i in self.m.known)
        assert not extra, 'gc left unreachable images %s' % sorted(extra)

    # -- crashes and resync
    def crashed(self):
        m = self.m
        m.dirty = True
        m.referenced |= self.touched
        if self.pushing:
            image, parent = self.pushing
            if (parent is not None and not self.has_json(image) and
                    self.store.exists(layout.marker_path(
                        parent, layout.child_marker(image)))):
                m.ghosts[image] = parent
        # the tag files are the truth
        m.tags, bad = truth.read_tags(self.store, jobs=1)
        assert bad == {}
        self.refresh()

    def refresh(self):
        """Take the images from storage (while dirty)."""
        m = self.m
        present = world.present(self.store)
        assert present <= set(m.known), 'unknown images appeared'
        m.images = dict((i, m.known[i]) for i in present)
        m.referenced &= present
        m.ghosts = dict((c, p) for c, p in m.ghosts.items()
                        if c not in present and p in present)

    def recovered(self):
        """After a recovery that reached no crash point."""
        m = self.m
        rep = invariants.check(self.store, jobs=1)
        assert rep.journal == [] and rep.intents == [], rep.as_dict()
        assert rep.unreadable == [] and rep.s1 == [], rep.as_dict()
        assert not [i for i in world.folders(self.store)
                    if self.tombstoned(i)], 'tombstones left by recovery'
        ghosts, rest = self.split_r1(rep)
        if m.dirty:
            self.refresh()
            m.ghosts = dict((c, p) for c, p in ghosts.items()
                            if c not in m.pushes)
            gone = m.settle()
            assert not gone, ('L1: recovery left images that lost their '
                              'last referrer: %s' % sorted(gone))
            m.dirty = False
        assert rest == [], 'R1 after recovery: %s' % rest

    def split_r1(self, rep):
        """R1 differences, less the child markers of children whose json
        never came (a push in flight or abandoned: gc's business)."""
        ghosts, rest = {}, []
        for diff in rep.r1:
            marker = diff.get('marker', '')
            if (diff['kind'] == 'stale_marker' and
                    marker.startswith(layout.CHILD_PREFIX)):
                child = marker[len(layout.CHILD_PREFIX):]
                if not self.has_json(child):
                    ghosts[child] = diff['image']
                    continue
            rest.append(diff)
        return ghosts, rest

    # -- the checks after every step
    def check(self):
        m, store = self.m, self.store
        tags, bad = truth.read_tags(store, jobs=1)
        assert bad == {}
        assert tags == m.tags, 'tag files differ from the model'
        # S2: outside images/ and extensions/refcount/: the tag files only
        assert set(invariants.outside_listing(self.root)) == set(
            layout.tag_file(k) for k in m.tags)
        # S1: every image a tag reaches is present and whole
        for key, top in sorted(m.tags.items()):
            chain = m.chain(top)
            for image in chain:
                for name in ('json', 'layer', 'ancestry'):
                    assert store.exists(layout.image_file(image, name)), (
                        'S1: %s of %s (reached by %s) is missing'
                        % (name, image, key.display))
                assert not self.tombstoned(image), (
                    'S1: %s (reached by %s) has a tombstone'
                    % (image, key.display))
            assert json.loads(layout.text(store.get_content(
                layout.image_file(top, 'ancestry')))) == chain
        rep = invariants.check(store, jobs=1)
        assert rep.s1 == [], rep.s1
        if m.dirty:
            return
        # clean: storage is the model, and every record is the truth
        assert world.present(store) == set(m.images), (
            'present images differ from the model: extra %s, missing %s'
            % (sorted(world.present(store) - set(m.images)),
               sorted(set(m.images) - world.present(store))))
        assert world.folders(store) == set(m.images), 'leftover folders'
        assert rep.journal == [] and rep.unreadable == [] and not rep.legacy
        assert set(rep.intents) == set(m.tag_writes)
        ghosts, rest = self.split_r1(rep)
        assert rest == [], 'R1: %s' % rest
        want = dict(m.ghosts)
        want.update(m.pushes)
        assert ghosts == want

    def finish(self):
        """Requests end, recovery runs, then a gc: nothing unreachable is
        left, and only child markers of abandoned pushes differ from the
        truth (see test_gc_leaves_stale_child_marker_on_reachable_parent)."""
        for image in list(self.m.pushes):
            self.apply(('end_push', 0))
        for intent_id in list(self.m.tag_writes):
            self.apply(('end_tag', 0))
        self.apply(('recover',))
        assert not self.m.dirty
        self.apply(('gc',))
        rep = invariants.check(self.store, jobs=1)
        assert rep.unreachable == [] and rep.s1 == []
        assert world.present(self.store) == self.m.reachable()
        ghosts, rest = self.split_r1(rep)
        assert rest == []
        assert set(ghosts.values()) <= self.m.reachable()


def run(ops, root=None):
    """Run a sequence of operations on a fresh storage; checks as it goes."""
    own = root is None
    root = root or tempfile.mkdtemp(prefix='refcount-prop-')
    try:
        with quiet():
            r = Run(root)
            for op in ops:
                r.apply(op)
            r.finish()
        STATS['sequences'] += 1
        return r
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


# -- strategies ----------------------------------------------------------------

N = st.integers(min_value=0, max_value=40)
KEY = st.integers(min_value=0, max_value=len(KEYS) - 1)
REPO = st.integers(min_value=0, max_value=len(REPOS) - 1)
REF = st.tuples(st.sampled_from(['live', 'live', 'live', 'dead']), N)


def op(name, *args):
    return st.tuples(st.just(name), *args)


BASIC = [
    op('push', st.none()),
    op('push', REF),
    op('push', REF),
    op('repush', N),
    op('tag', KEY, REF),
    op('tag', KEY, REF),
    op('untag', KEY),
    op('delrepo', REPO),
    op('recover'),
    op('gc'),
]
INTERLEAVED = [
    op('begin_tag', KEY, REF),
    op('end_tag', N),
    op('begin_push', REF),
    op('end_push', N),
]
PLAIN = st.one_of(*(BASIC + INTERLEAVED))
CRASH = op('crash', st.sampled_from(crash.POINTS), PLAIN)


@pytest.fixture(scope='module', autouse=True)
def report_stats(request):
    yield
    if STRESS or os.environ.get('REFCOUNT_STATS'):
        reporter = request.config.pluginmanager.get_plugin('terminalreporter')
        lines = ['%s: %d' % kv for kv in sorted(STATS.items())]
        if reporter is not None:
            reporter.write_line('')
            reporter.write_line('property tests covered:')
            for line in lines:
                reporter.write_line('  ' + line)


@BUDGET
@given(st.lists(st.one_of(*BASIC), max_size=MAX_OPS))
def test_sequences_stress(ops):
    """No crash: storage equals the model after every step."""
    run(ops)


@BUDGET
@given(st.lists(PLAIN, max_size=MAX_OPS))
def test_interleaved_requests_stress(ops):
    """Tag writes and pushes in two halves, other requests in between."""
    run(ops)


@BUDGET
@given(st.lists(st.one_of(PLAIN, CRASH), max_size=MAX_OPS))
def test_crashes_stress(ops):
    """Crashes at every named point, recovery sooner or later."""
    run(ops)
