"""The storage steps of registry-refcount's protocols (issue 20), as actors.

Each generator below follows one protocol of the design, step by step; the
step ids (a1, d3, r5, p4, ...) are those of the issue's protocol text, so a
reader can hold this file beside it.  Every ``yield step(...)`` is ONE
atomic storage operation (one read, one write or one remove: what one S3
request does); nothing else is atomic.  Locks are not modelled at all: any
two actors may run any protocol on the same tag or image at once, which is
what a lock held twice allows.  A stall is just an interleaving; a crash is
the explorer stopping an actor for ever after any step.

Storage is a frozenset of (key, value) items:

    ('json', I): True               the image's json (the registry sees I)
    ('files', I): True              its other files (layer, ancestry, ...)
    ('marker', I, m): True          one reference marker: tag:T, child:C, pending:X
                                    (implemented.py: hold:A too, whose value is
                                    the tag T its content names)
    ('tomb', I, d): checks          deleter d's tombstone (+ its journal entry:
                                    the truth checks of that tear-down)
    ('tag', T): I                   the tag file (absent: no tag)
    ('ledger', T): (I, others)      the ledger (absent: (None, {}))
    ('intent', X): (T, I, owner)    an in-flight tag write / reconcile
    ('touched', X): {I, ...}        (implemented) images its reconcile noted
"""
from __future__ import absolute_import, division, print_function

from .explorer import Call, Return, step

OK, REFUSED, KEPT, DELETED, LEFT = 'OK', 'REFUSED', 'KEPT', 'DELETED', 'LEFT'
EMPTY = frozenset()


def tagm(T):
    return 'tag:' + T


def childm(C):
    return 'child:' + C


def pendm(X):
    return 'pending:' + X


class Variant(object):
    """Which protocol is modelled.  The defaults are the lead's design;
    the ``wrong_*`` switches are the models wrong on purpose, the ``fix_*``
    switches are proposed changes (see the report)."""

    def __init__(self, name='design', wrong_check_first=False,
                 wrong_no_truth_check=False, wrong_shared_tombstone=False,
                 fix_truth_check_pending=False, fix_gc_truth_check=False,
                 fix_recovery_truth_check=False,
                 fix_remove_under_tombstone=False,
                 fix_keep_refused_tag_marker=False, repeats=2,
                 implemented=False, keep_refused_tag_marker=True,
                 retries=2, rounds=3, wrong_no_hold=False,
                 wrong_unretired_hold=False, wrong_no_notes=False,
                 intent_first=False, wrong_pending_unguarded=False):
        self.name = name
        self.wrong_check_first = wrong_check_first
        self.wrong_no_truth_check = wrong_no_truth_check
        self.wrong_shared_tombstone = wrong_shared_tombstone
        self.fix_truth_check_pending = fix_truth_check_pending
        self.fix_gc_truth_check = fix_gc_truth_check
        self.fix_recovery_truth_check = fix_recovery_truth_check
        self.fix_remove_under_tombstone = fix_remove_under_tombstone
        self.fix_keep_refused_tag_marker = fix_keep_refused_tag_marker
        self.repeats = repeats
        # the protocol as implemented (implemented.py): the hold
        self.implemented = implemented
        self.keep_refused_tag_marker = keep_refused_tag_marker
        self.retries = retries          # RETRIES (5 in the code)
        self.rounds = rounds            # ROUNDS (3 in the code)
        self.wrong_no_hold = wrong_no_hold
        # begin_tag_write: the intent and the pending marker go at once, in
        # either order (False: the marker lands first); gc's judgement of a
        # pending marker without its intent: stale only once its writer is
        # over (in flight: no clocks), or at once (wrong on purpose)
        self.intent_first = intent_first
        self.wrong_pending_unguarded = wrong_pending_unguarded
        self.wrong_unretired_hold = wrong_unretired_hold
        # the intent's notes of touched images (recovery's R1) left out
        self.wrong_no_notes = wrong_no_notes


class Protocols(object):
    """The protocols of one variant over one image graph (``parent``)."""

    def __init__(self, variant, images, parent, tags):
        self.v = variant
        self.images = tuple(images)
        self.parent = dict(parent)      # child -> parent (the json's parent)
        self.tags = tuple(tags)

    def ancestry(self, I):
        out = []
        while I is not None:
            out.append(I)
            I = self.parent.get(I)
        return out

    def token(self, d):
        return 'shared' if self.v.wrong_shared_tombstone else d

    # -- add a reference (a1, a2) --------------------------------------------
    def add_reference(self, I, m):
        if self.v.wrong_check_first:
            # WRONG ON PURPOSE (a): check, then write.
            tombs = yield step('a2', 'read_tombstones', I)
            has = yield step('a2', 'read_json', I)
            if tombs or not has:
                yield Return(REFUSED)
            yield step('a1', 'add_marker', I, m)
            yield Return(OK)
        yield step('a1', 'add_marker', I, m)
        tombs = yield step('a2', 'read_tombstones', I)
        has = yield step('a2', 'read_json', I)
        if tombs or not has:
            if not (m.startswith('tag:') and self.v.fix_keep_refused_tag_marker):
                yield step('a2', 'remove_marker', I, m)
            # PROPOSED FIX: a refused tag:T is left in place: the same file
            # may have been written by another reconcile of T (or put back
            # by a tear-down's truth check) and still be needed.
            yield Return(REFUSED)
        yield Return(OK)

    # -- tear down an image (d1..d7) -----------------------------------------
    def tear_down(self, I, d, checks=()):
        """``checks``: ((T, m_T), ...): "tag T must not name I"."""
        tok = self.token(d)
        markers = yield step('d1', 'read_markers', I)
        if markers:
            yield Return(KEPT)
        yield step('d2', 'write_tombstone', I, tok, checks)
        markers = yield step('d3', 'read_markers', I)
        if markers:
            yield step('d3', 'remove_tombstone', I, tok)
            yield Return(KEPT)
        for T, m in checks:
            named = yield step('d4', 'read_tag', T)
            if named == I:
                yield step('d4', 'add_marker', I, m)
                yield step('d4', 'remove_tombstone', I, tok)
                yield Return(KEPT)
        yield Call(self.remove_files(I, 'd5'))
        yield Call(self.cascade(I, d, 'd6'))
        yield step('d7', 'remove_tombstone', I, tok)
        yield Return(DELETED)

    def remove_files(self, I, label):
        yield step(label, 'remove_json', I)
        yield step(label, 'remove_files', I)

    def cascade(self, I, d, label):
        P = self.parent.get(I)
        if P is not None:
            yield step(label, 'remove_marker', P, childm(I))
            yield Call(self.tear_down(P, d))

    def remove_and_tear_down(self, I, ms, d, checks):
        """Remove the markers ``ms`` from I, then tear I down (r5, p5, gc)."""
        if self.v.fix_remove_under_tombstone:
            yield Call(self.tear_down_removing(I, ms, d, checks))
            return
        for m in ms:
            yield step('rm', 'remove_marker', I, m)
        yield Call(self.tear_down(I, d, checks))

    def tear_down_removing(self, I, ms, d, checks):
        """PROPOSED FIX: the tombstone goes up, and the truth is checked,
        before the markers come off; so no other deleter can ever see I
        without a marker while a tag names it."""
        tok = self.token(d)
        yield step('d2', 'write_tombstone', I, tok, checks)
        for T, mt in checks:
            named = yield step('d4', 'read_tag', T)
            if named == I:
                yield step('d4', 'add_marker', I, mt)
                for m in ms:
                    if m != mt:
                        yield step('d4', 'remove_marker', I, m)
                yield step('d4', 'remove_tombstone', I, tok)
                yield Return(KEPT)
        for m in ms:
            yield step('rm', 'remove_marker', I, m)
        markers = yield step('d3', 'read_markers', I)
        if markers:
            yield step('d3', 'remove_tombstone', I, tok)
            yield Return(KEPT)
        yield Call(self.remove_files(I, 'd5'))
        yield Call(self.cascade(I, d, 'd6'))
        yield step('d7', 'remove_tombstone', I, tok)
        yield Return(DELETED)

    # -- reconcile a tag (r1..r6) --------------------------------------------
    def reconcile(self, T, d):
        for _ in range(self.v.repeats + 1):
            truth = yield step('r1', 'read_tag', T)
            image, others = yield step('r2', 'read_ledger', T)
            if image == truth and not others:
                if truth is None:
                    yield Return(OK)
                markers = yield step('r2', 'read_markers', truth)
                if tagm(T) in markers:
                    yield Return(OK)
            drop = (frozenset([image]) | others) - frozenset([truth, None])
            yield step('r3', 'write_ledger', T, truth, drop)
            if truth is not None:
                r = yield Call(self.add_reference(truth, tagm(T)))
                if r == REFUSED:
                    has = yield step('r4', 'read_json', truth)
                    if has:
                        yield Return(LEFT)
            for stale in sorted(drop):
                if self.v.wrong_no_truth_check:
                    # WRONG ON PURPOSE (b): no re-read, no truth check.
                    yield step('r5', 'remove_marker', stale, tagm(T))
                    yield Call(self.tear_down(stale, d))
                    continue
                named = yield step('r5', 'read_tag', T)
                if named == stale:
                    continue
                yield Call(self.remove_and_tear_down(
                    stale, (tagm(T),), d, ((T, tagm(T)),)))
            yield step('r6', 'write_ledger', T, truth, EMPTY)
            now = yield step('r6', 'read_tag', T)
            if now == truth:
                yield Return(OK)
        yield Return(LEFT)

    # -- clients ---------------------------------------------------------------
    def put_tag(self, me, X, T, I):
        yield step('p1', 'write_intent', X, T, I, me)
        r = yield Call(self.add_reference(I, pendm(X)))
        if r == REFUSED:
            yield step('p2', 'remove_intent', X)
            yield Return('404')
        has = yield step('p3', 'read_json', I)
        answer = '404'
        if has:
            yield step('p4', 'write_tag', T, I)
            answer = '200'
        r = yield Call(self.reconcile(T, me))
        if r == LEFT:
            yield Return(answer)          # the intent stays for recovery
        checks = ((T, tagm(T)),) if self.v.fix_truth_check_pending else ()
        yield Call(self.remove_and_tear_down(I, (pendm(X),), me, checks))
        yield step('p5', 'remove_intent', X)
        yield Return(answer)

    def delete_tag(self, me, X, T):
        yield step('q1', 'write_intent', X, T, None, me)
        yield step('q2', 'remove_tag', T)
        r = yield Call(self.reconcile(T, me))
        if r == LEFT:
            yield Return('200')
        yield step('q3', 'remove_intent', X)
        yield Return('200')

    def background_reconcile(self, me, X, T):
        """A reconcile of T on its own (the lease's next holder): like a tag
        delete without the delete, so that a crash leaves an intent."""
        yield step('b1', 'write_intent', X, T, None, me)
        r = yield Call(self.reconcile(T, me))
        if r != LEFT:
            yield step('b2', 'remove_intent', X)

    def push_child(self, me, C, P):
        r = yield Call(self.add_reference(P, childm(C)))
        if r == REFUSED:
            yield Return('refused')
        yield step('c1', 'store_image', C)
        yield Return('stored')

    def push_and_tag(self, me, C, P, X, T):
        r = yield Call(self.push_child(me, C, P))
        if r == 'stored':
            yield Call(self.put_tag(me, X, T, C))

    # -- recovery ----------------------------------------------------------------
    def recover(self, me):
        intents = yield step('v1', 'list_dead_intents')
        for X, T, I in intents:
            r = yield Call(self.reconcile(T, me))
            if r == LEFT:
                continue
            if I is not None:
                checks = ((T, tagm(T)),) if self.v.fix_truth_check_pending else ()
                yield Call(self.remove_and_tear_down(I, (pendm(X),), me, checks))
            yield step('v2', 'remove_intent', X)
        tombs = yield step('v3', 'list_dead_tombstones')
        for I, d, checks in tombs:
            yield Call(self.finish_deletion(I, d, checks, me))

    def finish_deletion(self, I, d, checks, me):
        has = yield step('v4', 'read_json', I)
        markers = yield step('v4', 'read_markers', I)
        if has and markers:
            yield step('v4', 'remove_tombstone', I, d)
            yield Return(KEPT)
        if has and self.v.fix_recovery_truth_check:
            for T, m in checks:
                named = yield step('v4', 'read_tag', T)
                if named == I:
                    yield step('v4', 'add_marker', I, m)
                    yield step('v4', 'remove_tombstone', I, d)
                    yield Return(KEPT)
        yield Call(self.remove_files(I, 'v5'))
        yield Call(self.cascade(I, me, 'v6'))
        yield step('v7', 'remove_tombstone', I, d)
        yield Return(DELETED)

    # -- gc (mark and sweep) -------------------------------------------------------
    def gc(self, me):
        reachable = set()
        for T in self.tags:
            I = yield step('g1', 'read_tag', T)
            reachable.update(self.ancestry(I))
        images = yield step('g2', 'list_images')
        for I in sorted(images):
            pushing = yield step('g2', 'push_live', I)
            if pushing:
                continue                  # (the grace period)
            markers = yield step('g3', 'read_markers', I)
            if I in reachable:
                # repair: child markers of pushes that never stored the child
                for m in sorted(markers):
                    if m.startswith('child:'):
                        stale = yield Call(self.stale(I, m))
                        if stale:
                            yield step('g4', 'remove_marker', I, m)
                continue
            live = False
            for m in sorted(markers):
                stale = yield Call(self.stale(I, m))
                if not stale:
                    live = True
                    break
            if live:
                continue
            drop, checks = [], []
            for m in sorted(markers):
                stale = yield Call(self.stale(I, m))       # re-checked
                if not stale:
                    live = True
                    break
                if m.startswith('tag:'):
                    if self.v.fix_gc_truth_check:
                        checks.append((m[4:], m))
                if m.startswith('tag:') and self.v.fix_remove_under_tombstone:
                    drop.append(m)
                else:
                    yield step('g4', 'remove_marker', I, m)
            if not live:
                yield Call(self.remove_and_tear_down(
                    I, tuple(drop), me, tuple(checks)))

    def stale(self, I, m):
        kind, _, name = m.partition(':')
        if kind == 'tag':
            named = yield step('g5', 'read_tag', name)
            yield Return(named != I)
        if kind == 'pending':
            exists = yield step('g5', 'read_intent', name)
            yield Return(not exists)
        if kind == 'child':
            gone = yield step('g5', 'child_abandoned', name)
            yield Return(gone)
        yield Return(False)


# -- the storage operations (each one atomic) --------------------------------------

class Storage(object):
    """Applies one operation to a frozen storage; ``dead(owner)`` says
    whether an actor crashed (or, in the final phase, simply: has ended)."""

    STATUS_DEPENDENT = frozenset(['list_dead_intents', 'list_dead_tombstones',
                                  'list_dead_intents_touched',
                                  'push_live', 'child_abandoned',
                                  'list_dead_holds', 'hold_live',
                                  'pending_live'])

    def __init__(self, protocols, owners_of_images):
        self.p = protocols
        self.pushers = owners_of_images   # image -> actor that pushes it

    def apply(self, storage, op, dead, live):
        d = dict(storage)
        name, args = op[0], op[1:]
        result = getattr(self, 'op_' + name)(d, dead, live, *args)
        return frozenset(d.items()), result

    # reads
    def op_read_markers(self, d, dead, live, I):
        return frozenset(k[2] for k in d if k[0] == 'marker' and k[1] == I)

    def op_read_tombstones(self, d, dead, live, I):
        return frozenset(k[2] for k in d if k[0] == 'tomb' and k[1] == I)

    def op_read_json(self, d, dead, live, I):
        return ('json', I) in d

    def op_read_tag(self, d, dead, live, T):
        return d.get(('tag', T))

    def op_read_ledger(self, d, dead, live, T):
        return d.get(('ledger', T), (None, EMPTY))

    def op_read_marker_content(self, d, dead, live, I, m):
        # marker_doc: None once the marker is gone
        return d.get(('marker', I, m))

    def op_read_intent(self, d, dead, live, X):
        return ('intent', X) in d

    def op_list_images(self, d, dead, live):
        # every image folder with anything in it (markers added after the
        # folder was emptied stay behind, as they would in storage)
        return frozenset(k[1] for k in d
                         if k[0] in ('json', 'files', 'marker', 'tomb'))

    def op_list_dead_intents(self, d, dead, live):
        return tuple(sorted((k[1], v[0], v[1]) for k, v in d.items()
                            if k[0] == 'intent' and dead(v[2])))

    def op_list_dead_intents_touched(self, d, dead, live):
        # (implemented) the intents with the images their reconciles noted
        return tuple(sorted((k[1], v[0], v[1],
                             d.get(('touched', k[1]), frozenset()))
                            for k, v in d.items()
                            if k[0] == 'intent' and dead(v[2])))

    def op_list_dead_tombstones(self, d, dead, live):
        return tuple(sorted((k[1], k[2], v) for k, v in d.items()
                            if k[0] == 'tomb' and dead(k[2])))

    def op_push_live(self, d, dead, live, I):
        owner = self.pushers.get(I)
        return owner is not None and live(owner)

    def op_child_abandoned(self, d, dead, live, C):
        owner = self.pushers.get(C)
        return ('json', C) not in d and (owner is None or not live(owner))

    def op_list_dead_holds(self, d, dead, live, I, ours):
        # _drop_dead_holds: the holds of reconciles that crashed
        return frozenset(k[2] for k in d if k[0] == 'marker' and k[1] == I
                         and k[2].startswith('hold:') and k[2] != ours
                         and dead(k[2][5:]))

    def op_hold_live(self, d, dead, live, I, m):
        # in_flight of a hold: its owner has not crashed (no clocks)
        return not dead(m[5:])

    def op_pending_live(self, d, dead, live, I, m):
        # pending_stale, negated: its intent is there, or its writer (the
        # marker's content) has not crashed (no clocks: in flight)
        writer = d.get(('marker', I, m))
        return ('intent', m[len('pending:'):]) in d or (
            writer not in (None, True) and not dead(writer))

    def op_list_folder(self, d, dead, live, I):
        return any(k[0] in ('json', 'files', 'marker', 'tomb') and k[1] == I
                   for k in d)

    def op_read_ancestry(self, d, dead, live, I):
        return ('files', I) in d

    # writes
    def op_remove_ledger(self, d, dead, live, T):
        d.pop(('ledger', T), None)

    def op_add_marker(self, d, dead, live, I, m, content=True):
        d[('marker', I, m)] = content

    def op_remove_marker(self, d, dead, live, I, m):
        d.pop(('marker', I, m), None)

    def op_write_tombstone(self, d, dead, live, I, tok, checks):
        d[('tomb', I, tok)] = checks

    def op_remove_tombstone(self, d, dead, live, I, tok):
        d.pop(('tomb', I, tok), None)

    def op_remove_json(self, d, dead, live, I):
        d.pop(('json', I), None)

    def op_remove_files(self, d, dead, live, I):
        d.pop(('files', I), None)

    def op_store_image(self, d, dead, live, I):
        d[('json', I)] = True
        d[('files', I)] = True

    def op_write_tag(self, d, dead, live, T, I):
        d[('tag', T)] = I

    def op_remove_tag(self, d, dead, live, T):
        d.pop(('tag', T), None)

    def op_write_ledger(self, d, dead, live, T, I, others):
        d[('ledger', T)] = (I, others)

    def op_write_intent(self, d, dead, live, X, T, I, owner):
        d[('intent', X)] = (T, I, owner)

    def op_remove_intent(self, d, dead, live, X):
        d.pop(('intent', X), None)
        d.pop(('touched', X), None)

    def op_note_touched(self, d, dead, live, X, T, I, owner, J):
        # (implemented) the intent rewritten whole, with J among the images
        # its reconcile may leave tag:T or a hold on (back if it had gone)
        d[('intent', X)] = (T, I, owner)
        d[('touched', X)] = d.get(('touched', X), frozenset()) | \
            frozenset([J])
