"""An exhaustive explorer of interleavings, in plain Python (2.7 and 3).

An *actor* is a generator that never touches storage itself: it yields
storage steps (``Step``) and receives each step's result back.  One yield is
one atomic step; between two yields any other actor may run, and the actor
may crash (stop for ever).  Sub-protocols are called with ``yield Call(gen)``
and give their result with ``yield Return(value)`` (Python 2.7 has no
``yield from``; ``Trampoline`` runs the stack).

An actor's local state is fully determined by the results it has received so
far, so it is kept as a node of a tree (``Program``): node = the history of
results; a node's next step is found once, by replaying the generator on its
history, and memoised.  A global state is then ``(storage id, node or
CRASHED of each actor)``, small and hashable.

The search visits each global state once.  Every step strictly increases a
potential (the sum of the actors' progress, a crash counting as the most),
so the state graph is acyclic; states are expanded in increasing potential,
which makes every state's shortest depth, its predecessor on a shortest
path, and the number of distinct schedules reaching it final when it is
expanded.  That gives shortest counterexamples and an exact count of the
interleavings (complete schedules, crash choices included) that the visited
states stand for.
"""
from __future__ import absolute_import, division, print_function

import heapq
import time


class Step(tuple):
    """One atomic storage step: ``Step(('d2', 'write_tombstone', I, d))``.

    Element 0 is the design's step id (for traces only), element 1 the
    operation's name, the rest its arguments.
    """
    __slots__ = ()

    @property
    def label(self):
        return self[0]

    @property
    def op(self):
        return self[1:]

    def __repr__(self):
        args = ', '.join(_show(a) for a in self[2:])
        return '%s %s(%s)' % (self[0], self[1], args)


def _show(value):
    if isinstance(value, frozenset):
        return '{%s}' % ', '.join(sorted(_show(v) for v in value))
    if isinstance(value, tuple):
        return '(%s)' % ', '.join(_show(v) for v in value)
    return str(value)


def step(label, name, *args):
    return Step((label, name) + args)


class Call(object):
    __slots__ = ('gen',)

    def __init__(self, gen):
        self.gen = gen


class Return(object):
    __slots__ = ('value',)

    def __init__(self, value=None):
        self.value = value


class Done(object):
    """What an actor yields when it has finished (value: its result)."""
    __slots__ = ('value',)

    def __init__(self, value=None):
        self.value = value

    def __repr__(self):
        return 'Done(%r)' % (self.value,)


def trampoline(gen, results):
    """Run ``gen`` (with its calls) feeding it ``results`` in order; return the
    first step it yields after the last result (or a ``Done``)."""
    stack = [gen]
    results = iter(results)
    value = None
    while True:
        try:
            item = stack[-1].send(value)
        except StopIteration:
            item = Return(None)
        if isinstance(item, Call):
            stack.append(item.gen)
            value = None
            continue
        if isinstance(item, Return):
            stack.pop()
            if not stack:
                return Done(item.value)
            value = item.value
            continue
        assert isinstance(item, Step), item
        try:
            value = next(results)
        except StopIteration:
            return item


class Program(object):
    """The tree of one actor's possible runs."""

    def __init__(self, name, factory):
        self.name = name
        self.factory = factory          # () -> a fresh generator
        self.history = [()]             # node -> results received so far
        self.next_step = [trampoline(factory(), ())]
        self.children = {}              # (node, result) -> node

    def step(self, node):
        return self.next_step[node]

    def depth(self, node):
        return len(self.history[node])

    def advance(self, node, result):
        key = (node, result)
        child = self.children.get(key)
        if child is None:
            history = self.history[node] + (result,)
            child = len(self.history)
            self.history.append(history)
            self.next_step.append(trampoline(self.factory(), history))
            self.children[key] = child
        return child


CRASHED = -1
CRASH_POTENTIAL = 100000


class Violation(object):
    def __init__(self, kind, message, state, depth):
        self.kind = kind
        self.message = message
        self.state = state
        self.depth = depth
        self.trace = None

    def __repr__(self):
        return '%s: %s (%d steps)' % (self.kind, self.message, self.depth)


class Result(object):
    def __init__(self):
        self.states = 0
        self.transitions = 0
        self.terminals = 0
        self.interleavings = 0
        self.seconds = 0.0
        self.violations = {}            # kind -> shortest Violation
        self.outcomes = {}

    def summary(self, name):
        found = ', '.join(
            '%s in %d steps' % (k, v.depth)
            for k, v in sorted(self.violations.items())) or 'none'
        return ('%s: %d states, %d transitions, %d final states, '
                '%d interleavings, %.1f s; violations: %s'
                % (name, self.states, self.transitions, self.terminals,
                   self.interleavings, self.seconds, found))


class Explorer(object):
    """Explore every interleaving (and crash) of ``world``'s actors.

    ``world`` provides: ``initial_storage()`` (a frozenset of items),
    ``actors()`` (list of (name, factory)), ``apply(storage, op, status)``
    -> (storage, result) where ``status`` is a tuple saying for each actor
    'live', 'done' or 'crashed', ``status_dependent(op)``, ``check_state(storage)``
    -> list of (kind, message), and ``check_final(storage, status)`` -> list of
    (kind, message).
    """

    def __init__(self, world, crashes=True, max_states=None, crash_after=None):
        self.world = world
        self.crashes = crashes
        # {actor name: step id}: that actor crashes right after the first
        # step with that id (a crash point), and nowhere else explicitly
        self.crash_after = dict(crash_after or {})
        self.max_states = max_states
        self.programs = [Program(n, f) for n, f in world.actors()]
        self.storages = []
        self.storage_ids = {}
        self.state_checks = []          # storage id -> list of problems
        self.apply_memo = {}
        self.final_memo = {}

    # -- storage interning -------------------------------------------------
    def intern(self, storage):
        sid = self.storage_ids.get(storage)
        if sid is None:
            sid = len(self.storages)
            self.storages.append(storage)
            self.storage_ids[storage] = sid
            self.state_checks.append(self.world.check_state(storage))
        return sid

    def status(self, nodes):
        out = []
        for prog, node in zip(self.programs, nodes):
            if node == CRASHED:
                out.append('crashed')
            elif isinstance(prog.step(node), Done):
                out.append('done')
            else:
                out.append('live')
        return tuple(out)

    def apply(self, sid, op, nodes):
        if self.world.status_dependent(op):
            key = (sid, op, self.status(nodes))
        else:
            key = (sid, op)
        hit = self.apply_memo.get(key)
        if hit is None:
            storage, result = self.world.apply(
                self.storages[sid], op, key[2] if len(key) == 3 else None)
            hit = (self.intern(storage), result)
            self.apply_memo[key] = hit
        return hit

    def potential(self, nodes):
        return sum(CRASH_POTENTIAL if n == CRASHED else p.depth(n)
                   for p, n in zip(self.programs, nodes))

    def successors(self, state):
        sid, nodes = state
        for i, (prog, node) in enumerate(zip(self.programs, nodes)):
            if node == CRASHED:
                continue
            st = prog.step(node)
            if isinstance(st, Done):
                continue
            nsid, result = self.apply(sid, st.op, nodes)
            new = list(nodes)
            new[i] = prog.advance(node, result)
            if self.crash_after.get(prog.name) == st.label:
                new[i] = CRASHED
                yield (i, node, 'dies'), (nsid, tuple(new))
                continue
            yield (i, node), (nsid, tuple(new))
            if self.crashes is True or (
                    isinstance(self.crashes, frozenset)
                    and prog.name in self.crashes):
                new = list(nodes)
                new[i] = CRASHED
                yield (i, None), (sid, tuple(new))

    # -- the search --------------------------------------------------------
    def run(self):
        started = time.time()
        res = Result()
        init = (self.intern(self.world.initial_storage()),
                tuple(0 for _ in self.programs))
        info = {init: [1, 0, None, None]}   # paths, depth, parent, label
        heap = [(self.potential(init[1]), 0, init)]
        counter = 1
        while heap:
            _, _, state = heapq.heappop(heap)
            paths, depth, _, _ = info[state]
            res.states += 1
            if self.max_states and res.states > self.max_states:
                raise RuntimeError('more than %d states' % self.max_states)
            sid, nodes = state
            for kind, msg in self.state_checks[sid]:
                self._record(res, kind, msg, state, depth, info)
            terminal = True
            for label, nxt in self.successors(state):
                terminal = False
                res.transitions += 1
                entry = info.get(nxt)
                if entry is None:
                    info[nxt] = [paths, depth + 1, state, label]
                    heapq.heappush(heap, (self.potential(nxt[1]), counter, nxt))
                    counter += 1
                else:
                    entry[0] += paths
                    if depth + 1 < entry[1]:
                        entry[1:] = [depth + 1, state, label]
            if terminal or self.crashes is not True:
                # 'at-end': every state is also the end of the runs in which
                # every actor still live crashes here (nobody can tell when
                # a stalled actor crashed unless it watches for crashes:
                # recovery and gc do, so scenarios with them use crashes=True;
                # a frozenset of names: those crash explicitly, others at end)
                if terminal:
                    res.terminals += 1
                res.interleavings += paths
                status = tuple('crashed' if s == 'live' else s
                               for s in self.status(nodes))
                key = (sid, status)
                problems = self.final_memo.get(key)
                if problems is None:
                    problems = self.world.check_final(self.storages[sid], status)
                    self.final_memo[key] = problems
                for kind, msg in problems:
                    self._record(res, kind, msg, state, depth, info, final=True)
        res.seconds = time.time() - started
        for v in res.violations.values():
            v.trace = self.trace(v.state, info)
            if v.final:
                v.trace.append('(end: every actor still running has crashed; '
                               'recovery runs to completion alone, then gc)')
        return res

    def _record(self, res, kind, msg, state, depth, info, final=False):
        old = res.violations.get(kind)
        if old is None or depth < old.depth:
            res.violations[kind] = Violation(kind, msg, state, depth)
            res.violations[kind].final = final

    def trace(self, state, info):
        steps = []
        while True:
            _, _, parent, label = info[state]
            if parent is None:
                break
            i, node = label[:2]
            prog = self.programs[i]
            if node is None:
                steps.append('%s: CRASHES' % prog.name)
            else:
                steps.append('%s: %r%s' % (prog.name, prog.step(node),
                                           ' -- and CRASHES' if len(label) > 2
                                           else ''))
            state = parent
        steps.reverse()
        return steps


def run_alone(gen, storage, apply, after_step=None):
    """Run one actor to its end with nobody else running (the final
    recovery and gc).  ``apply(storage, op) -> (storage, result)``;
    ``after_step(storage, step)`` is called after every step.  Returns
    (storage, value, steps)."""
    stack = [gen]
    value = None
    steps = []
    while True:
        try:
            item = stack[-1].send(value)
        except StopIteration:
            item = Return(None)
        if isinstance(item, Call):
            stack.append(item.gen)
            value = None
            continue
        if isinstance(item, Return):
            stack.pop()
            if not stack:
                return storage, item.value, steps
            value = item.value
            continue
        storage, value = apply(storage, item.op)
        steps.append(item)
        if after_step is not None:
            after_step(storage, item)
