"""registry_refcount/protocols.py as IMPLEMENTED (the *hold*), as actors.

The same storage model and step conventions as :mod:`.protocol` (one
``yield step(...)`` = one atomic storage operation; locks ignored; crashes
anywhere), but each generator follows the code, function by function:

    begin_tag_write          p1 write intent and a1 pending marker (its
                             writer's name), in either order (variant
                             ``intent_first``); a2 image_state; refused:
                             marker off, intent off (p2)
    add_reference            a1 write marker; a2 image_state (tombstones,
                             then json); refused: the marker is removed,
                             except a tag marker tag:T (one shared file per
                             tag: left in place)
    add_reference_patiently  r4: add_reference, then image_state again:
                             'gone' -> False, else try again; BUSY after
                             ``retries`` tries
    _cascade / _maybe_tear_down / _tear_down / _finalize
                             d1 markers? tombstones? json? (gc: partial);
                             d2 own tombstone (+journal); d3 markers? ->
                             remove own tombstone, kept; d5 json, files;
                             d6 child:I off the parent, tear it down;
                             d7 (_finalize) the child's tombstone goes only
                             after the parent's step.  No truth check.
    reconcile_tag / _reconcile_round
                             r1 tag; r2 ledger (+ marker): done if
                             consistent; r3 ledger (truth, drop) unless not
                             needed; r4 tag marker on truth (patiently);
                             drop_tag_marker for each stale image; r6 final
                             ledger (or its removal); then the tag again,
                             another round if it moved (``rounds`` in all)
    drop_tag_marker          h0 tag names I -> skip; h1 hold:<me> (a1 a2,
                             refused with json gone -> tag:T off, done;
                             with json -> again, BUSY after ``retries``);
                             h2 tag:T off; h3 tag again: names I -> tag:T
                             back; h4 dead holds retired (retire_hold, each:
                             the hold's content read (its tag T'), tag T'
                             read, names I -> tag:T' written back, hold
                             off); h5 dropped: cascade from the hold
                             (reason given), else hold off
    Notes.note               n1 the intent rewritten with the image,
                             before tag:T (in r4) or a hold (in h1) goes on
                             an image the intent does not name yet
    finish_intent            reconcile (noting); _drop_strays: s1 each
                             image tag:T went on in an earlier round (a
                             live finish) or the intent names (recovery)
                             and T does not name: markers read, tag:T there
                             -> drop_tag_marker; s2 (recovery) its dead
                             holds retired through the cascade (d6, d1...);
                             pending:X off + tear-down;
                             intent off
    recovery                 dead deletions first (finish_deletion), then
                             dead intents (finish_intent, with the images
                             they noted)
    gc (sweep)               dead deletions; mark (tags read, stale
                             references repaired: an intent of its own,
                             then finish_intent; ancestries read); the
                             unreachable images' markers read; deepest first:
                             judge, drop_stale_marker (a dead hold:
                             retire_hold, as in h4; a pending marker:
                             pending_stale, its intent gone and its
                             writer over), collect

Simplifications (each a merge of reads, never of a write with anything):
the journal entry and the tombstone are one record (the journal is only
recovery's index of tombstones); ``in_flight`` and the listing of holds are
one status-dependent read (``list_dead_holds``, ``hold_live``); a hold is
in flight while its owner has not crashed (no clocks: HOLD_AGE is not
modelled, see README.md); recovery's "tombstone still there?" check is
omitted (no scenario runs two finishers at once); gc's candidates are
all ripe except an image whose push is live (the grace period); the
depth gc sorts by is the image graph's.
"""
from __future__ import absolute_import, division, print_function

from .explorer import Call, Return, step
from .protocol import (EMPTY, KEPT, OK, REFUSED, Protocols, childm, pendm,
                       tagm)

BUSY = 'BUSY'          # protocols.Busy (a LockTimeout): the work is left
GONE = 'GONE'          # add_reference_patiently: False (the image is gone)


def holdm(owner):
    return 'hold:' + owner


class Implemented(Protocols):
    """The protocols of registry_refcount/protocols.py (variant switches:
    ``keep_refused_tag_marker``, ``retries``, ``rounds``; wrong on purpose:
    ``wrong_no_hold``, ``wrong_unretired_hold``)."""

    # -- add_reference ---------------------------------------------------------
    def image_state(self, I, label):
        tombs = yield step(label, 'read_tombstones', I)
        if tombs:
            yield Return('deleting')
        has = yield step(label, 'read_json', I)
        yield Return('live' if has else 'gone')

    def add_ref(self, I, m, content=True):
        if content is True:
            yield step('a1', 'add_marker', I, m)
        else:
            yield step('a1', 'add_marker', I, m, content)
        state = yield Call(self.image_state(I, 'a2'))
        if state == 'live':
            yield Return(OK)
        if not (m.startswith('tag:') and self.v.keep_refused_tag_marker):
            yield step('a2', 'remove_marker', I, m)
        yield Return(REFUSED)

    def add_ref_patiently(self, I, m):
        for _ in range(self.v.retries):
            r = yield Call(self.add_ref(I, m))
            if r == OK:
                yield Return(OK)
            state = yield Call(self.image_state(I, 'r4'))
            if state == 'gone':
                yield Return(GONE)
        yield Return(BUSY)

    # -- deletion ----------------------------------------------------------------
    def maybe_tear_down(self, I, me, partial=False):
        """Returns the deleter's token (torn down) or KEPT."""
        markers = yield step('d1', 'read_markers', I)
        if markers:
            yield Return(KEPT)
        tombs = yield step('d1', 'read_tombstones', I)
        if tombs:
            yield Return(KEPT)
        has = yield step('d1', 'read_json', I)      # stored_parent
        if not has:
            if not partial:
                yield Return(KEPT)
            anything = yield step('d1', 'list_folder', I)
            if not anything:
                yield Return(KEPT)
        tok = me
        yield step('d2', 'write_tombstone', I, tok, ())
        markers = yield step('d3', 'read_markers', I)
        if markers:
            yield step('d3', 'remove_tombstone', I, tok)     # _finalize
            yield Return(KEPT)
        yield Call(self.remove_files(I, 'd5'))
        yield Return(tok)

    def cascade_from(self, finished, I, marker, me, partial=False):
        """_cascade: ``finished`` = (image, token) whose tombstone goes once
        its child marker is off ``I`` and ``I`` was looked at."""
        while I is not None:
            if marker is not None:
                yield step('d6', 'remove_marker', I, marker)
            torn = yield Call(self.maybe_tear_down(I, me, partial))
            partial = False
            if finished is not None:
                yield step('d7', 'remove_tombstone', *finished)
                finished = None
            if torn == KEPT:
                yield Return(KEPT)
            finished = (I, torn)
            marker = childm(I)
            I = self.parent.get(I)
        if finished is not None:
            yield step('d7', 'remove_tombstone', *finished)
        yield Return(OK)

    # -- tags --------------------------------------------------------------------
    def reconcile(self, T, me, notes=None):
        truth = None
        for _ in range(self.v.rounds):
            r = yield Call(self.reconcile_round(T, me, notes))
            if r == BUSY:
                yield Return(BUSY)
            truth, changed = r
            if not changed:
                yield Return(truth)
            now = yield step('r6', 'read_tag', T)
            if now == truth:
                yield Return(truth)
        yield Return(truth)

    def note(self, notes, J, adds=False):
        """Touched.note: the intent rewritten with J before its reconcile
        puts tag:T or a hold on J (unless the intent names J already).
        ``adds``: tag:T goes on J (a live finish checks those again)."""
        if notes is not None and adds:
            notes['added'].add(J)
        if notes is not None and not self.v.wrong_no_notes and \
                J not in notes['images']:
            notes['images'].add(J)
            yield step('n1', 'note_touched', notes['X'], notes['T'],
                       notes['I'], notes['me'], J)
        yield Return(OK)

    def reconcile_round(self, T, me, notes=None):
        truth = yield step('r1', 'read_tag', T)
        image, others = yield step('r2', 'read_ledger', T)
        if image == truth and not others:
            if truth is None:
                yield Return((truth, False))
            markers = yield step('r2', 'read_markers', truth)
            if tagm(T) in markers:
                yield Return((truth, False))
        drop = (frozenset([image]) | others) - frozenset([truth, None])
        if (image, others) != (truth, drop) and not (
                drop and truth in (frozenset([None, image]) | others)):
            yield step('r3', 'write_ledger', T, truth, drop)
        if truth is not None:
            yield Call(self.note(notes, truth, adds=True))
            r = yield Call(self.add_ref_patiently(truth, tagm(T)))
            if r == BUSY:
                yield Return(BUSY)
        if not drop:
            yield Return((truth, True))
        for stale in sorted(drop):
            yield Call(self.note(notes, stale))
            r = yield Call(self.drop_tag_marker(T, stale, me, True))
            if r == BUSY:
                yield Return(BUSY)
        if truth is None:
            yield step('r6', 'remove_ledger', T)
        else:
            yield step('r6', 'write_ledger', T, truth, EMPTY)
        yield Return((truth, True))

    def drop_tag_marker(self, T, I, me, reason):
        named = yield step('h0', 'read_tag', T)
        if named == I:
            yield Return(False)
        hold = holdm(me)
        if self.v.wrong_no_hold:
            # WRONG ON PURPOSE (d): no hold; the tag marker comes off, the
            # tag is read again, and the image is torn down at once.
            yield step('h2', 'remove_marker', I, tagm(T))
            named = yield step('h3', 'read_tag', T)
            if named == I:
                yield step('h3', 'add_marker', I, tagm(T))
                yield Return(False)
            if reason:
                yield Call(self.cascade_from(None, I, None, me))
            yield Return(True)
        r = yield Call(self.add_hold(I, hold, T))
        if r == BUSY:
            yield Return(BUSY)
        if r == GONE:
            yield step('h1', 'remove_marker', I, tagm(T))
            yield Return(True)
        yield step('h2', 'remove_marker', I, tagm(T))
        named = yield step('h3', 'read_tag', T)
        dropped = named != I
        if not dropped:
            yield step('h3', 'add_marker', I, tagm(T))
        dead = yield step('h4', 'list_dead_holds', I, hold)
        for h in sorted(dead):                       # _drop_dead_holds
            yield Call(self.retire_hold(I, h, 'h4'))
        if reason and dropped:
            # remove_reference(hold): the cascade removes the hold first;
            # the `finally` removing it again is a no-op (nobody else ever
            # writes this name), not modelled.
            yield Call(self.cascade_from(None, I, hold, me))
        else:
            yield step('h5', 'remove_marker', I, hold)
        yield Return(dropped)

    def add_hold(self, I, hold, T):
        """_add_hold: the hold's content names the tag T."""
        for _ in range(self.v.retries):
            r = yield Call(self.add_ref(I, hold, T))
            if r == OK:
                yield Return(OK)
            has = yield step('h1', 'read_json', I)
            if not has:
                yield Return(GONE)
        yield Return(BUSY)

    def retire_hold(self, I, h, label, cascade_as=None):
        """retire_hold: the tag the hold's content names read again, its
        marker put back (a plain write, no refusal) if the tag names I,
        then the hold removed.  A hold whose content names no tag (here:
        gone meanwhile, marker_doc gives {}) is kept."""
        if self.v.wrong_unretired_hold:
            # WRONG ON PURPOSE (e): the code before the fix: a dead hold
            # is simply removed, its reconcile's h3 never redone.
            yield step(label, 'remove_marker', I, h)
            yield Return(True)
        T = yield step(label, 'read_marker_content', I, h)
        if T is None or T is True:
            yield Return(False)
        named = yield step(label, 'read_tag', T)
        if named == I:
            yield step(label, 'add_marker', I, tagm(T))
        if cascade_as is not None:       # recovery's: through the cascade
            yield Call(self.cascade_from(None, I, h, cascade_as))
        else:
            yield step(label, 'remove_marker', I, h)
        yield Return(True)

    def finish_intent(self, X, T, I, me, label, touched=None):
        """``touched``: recovery's, the images the intent's dead owner
        noted (a live finish handles them in its own rounds)."""
        notes = {'X': X, 'T': T, 'I': I, 'me': me, 'added': set(),
                 'images': set([I] if I is not None else []) |
                 set(touched or ())}
        r = yield Call(self.reconcile(T, me, notes))
        if r == BUSY:
            yield Return(BUSY)            # the intent stays
        # the images tag:T went on in an earlier round (or before a crash)
        strays = set([I]) if I is not None else set()
        if not self.v.wrong_no_notes:
            strays |= notes['added']
            if touched is not None:
                strays |= set(touched)
        for J in sorted(strays):          # _drop_strays
            if J != r:
                markers = yield step('s1', 'read_markers', J)
                if tagm(T) in markers:
                    dropped = yield Call(self.drop_tag_marker(T, J, me, True))
                    if dropped == BUSY:
                        yield Return(BUSY)
            if touched is not None and not self.v.wrong_no_notes:
                dead = yield step('s2', 'list_dead_holds', J, None)
                for h in sorted(dead):
                    yield Call(self.retire_hold(J, h, 's2', me))
        if I is not None:                 # release_pending
            yield Call(self.cascade_from(None, I, pendm(X), me))
        yield step(label, 'remove_intent', X)
        yield Return(OK)

    # -- clients ---------------------------------------------------------------
    def put_tag(self, me, X, T, I):
        # begin_tag_write: the intent and the pending marker (naming its
        # writer) go at once - in either order - then the image's check
        if self.v.intent_first:
            yield step('p1', 'write_intent', X, T, I, me)
        yield step('a1', 'add_marker', I, pendm(X), me)
        if not self.v.intent_first:
            yield step('p1', 'write_intent', X, T, I, me)
        state = yield Call(self.image_state(I, 'a2'))
        if state != 'live':
            yield step('a2', 'remove_marker', I, pendm(X))
            yield step('p2', 'remove_intent', X)
            yield Return('404')
        has = yield step('p3', 'read_json', I)
        answer = '404'
        if has:
            yield step('p4', 'write_tag', T, I)
            answer = '200'
        yield Call(self.finish_intent(X, T, I, me, 'p5'))
        yield Return(answer)

    def delete_tag(self, me, X, T):
        yield step('q1', 'write_intent', X, T, None, me)
        yield step('q2', 'remove_tag', T)
        yield Call(self.finish_intent(X, T, None, me, 'q3'))
        yield Return('200')

    def background_reconcile(self, me, X, T):
        yield step('b1', 'write_intent', X, T, None, me)
        yield Call(self.finish_intent(X, T, None, me, 'b2'))

    def push_child(self, me, C, P):
        tombs = yield step('c0', 'read_tombstones', C)
        if tombs:
            yield Return('refused')
        r = yield Call(self.add_ref(P, childm(C)))
        if r == REFUSED:
            yield Return('refused')
        yield step('c1', 'store_image', C)
        yield Return('stored')

    # -- recovery ----------------------------------------------------------------
    def recover(self, me, order=None):
        """``order``: a permutation of the dead intents (listed in the order
        of their random ids: any order)."""
        yield Call(self.finish_deletions(me, 'v1'))
        intents = yield step('v2', 'list_dead_intents_touched')
        if order is not None and len(order) == len(intents):
            intents = [intents[i] for i in order]
        for X, T, I, touched in intents:
            yield Call(self.finish_intent(X, T, I, me, 'v3', touched))

    def finish_deletions(self, me, label):
        tombs = yield step(label, 'list_dead_tombstones')
        for I, d, _ in tombs:
            yield Call(self.finish_deletion(I, d, me))

    def finish_deletion(self, I, d, me):
        has = yield step('v4', 'read_json', I)
        if has:
            markers = yield step('v4', 'read_markers', I)
            if markers:
                yield step('v4', 'remove_tombstone', I, d)   # cancel
                yield Return(KEPT)
        yield Call(self.remove_files(I, 'v5'))
        P = self.parent.get(I)
        if P is None:
            yield step('v7', 'remove_tombstone', I, d)
        else:
            yield Call(self.cascade_from((I, d), P, childm(I), me))
        yield Return(OK)

    # -- gc ----------------------------------------------------------------------
    def depth(self, I):
        return len(self.ancestry(I))

    def gc(self, me):
        # 0. deletions whose deleter died
        yield Call(self.finish_deletions(me, 'g0'))
        # 1. mark: every tag (with its reference), then repairs, then chains
        errors = False
        tops = []
        for T in self.tags:
            I = yield step('g1', 'read_tag', T)
            if I is None:
                continue
            ledger = yield step('g1', 'read_ledger', T)
            markers = yield step('g1', 'read_markers', I)
            tops.append((T, I, ledger != (I, EMPTY) or
                         tagm(T) not in markers))
        for n, (T, I, stale) in enumerate(tops):
            if not stale:
                continue
            # a reconcile of its own intent (a gc may die in it)
            X = '%s%dx' % (me, n)
            yield step('g2', 'write_intent', X, T, None, me)
            r = yield Call(self.finish_intent(X, T, None, me, 'g2'))
            if r == BUSY:
                errors = True
        reachable = set()
        for I in sorted(set(I for _, I, _ in tops)):
            has = yield step('g2', 'read_ancestry', I)
            if has:
                reachable.update(self.ancestry(I))
            else:
                errors = True
        # 3. candidates
        images = yield step('g3', 'list_images')
        unreachable = sorted(images - reachable)
        if errors:
            yield Return('errors')
        ripe = []
        for I in unreachable:
            young = yield step('g3', 'push_live', I)    # (the grace period)
            if not young:
                ripe.append(I)
        infos = {}
        for I in ripe:
            infos[I] = yield step('g3', 'read_markers', I)
        # 4. sweep, deepest first
        doomed = set()
        for I in sorted(ripe, key=lambda i: (-self.depth(i), i)):
            stale, live = [], False
            for m in sorted(infos[I]):
                kind, _, name = m.partition(':')
                if kind == 'tag':
                    stale.append(m)
                elif kind == 'pending':
                    exists = yield Call(self.pending_live(I, m, 'g4'))
                    if exists:
                        live = True
                    else:
                        stale.append(m)
                elif kind == 'hold':
                    alive = yield step('g4', 'hold_live', I, m)
                    if alive:
                        live = True
                    else:
                        stale.append(m)
                elif name in doomed:
                    pass                  # goes with the child's deletion
                else:
                    gone = yield step('g4', 'child_abandoned', name)
                    if gone:
                        stale.append(m)
                    else:
                        live = True
            if live:
                continue
            doomed.add(I)
            busy = False
            for m in stale:
                r = yield Call(self.drop_stale_marker(I, m, me))
                if r == BUSY:
                    busy = True           # an error for this image
                    break
            if not busy:
                yield Call(self.cascade_from(None, I, None, me, True))
            has = yield step('g5', 'read_json', I)
            if has:
                doomed.discard(I)
        yield Return(OK)

    def pending_live(self, I, m, label):
        if self.v.wrong_pending_unguarded:
            exists = yield step(label, 'read_intent', m[len('pending:'):])
        else:
            exists = yield step(label, 'pending_live', I, m)
        yield Return(exists)

    def drop_stale_marker(self, I, m, me):
        kind, _, name = m.partition(':')
        if kind == 'tag':
            r = yield Call(self.drop_tag_marker(name, I, me, None))
            yield Return(r)
        if kind == 'pending':
            exists = yield Call(self.pending_live(I, m, 'g6'))
            if exists:
                yield Return(False)
        elif kind == 'hold':
            alive = yield step('g6', 'hold_live', I, m)
            if alive:
                yield Return(False)
            r = yield Call(self.retire_hold(I, m, 'g6'))
            yield Return(r)
        else:
            gone = yield step('g6', 'child_abandoned', name)
            if not gone:
                yield Return(False)
        yield step('g6', 'remove_marker', I, m)
        yield Return(True)
