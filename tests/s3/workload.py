"""A docker-like client that survives a busy registry, and a bounded mixed
workload of pushes, retags and deletes for several clients at once.

docker 1.x checks which images the registry already has (``GET json``)
and uploads only the others; a push refused because a parent is being
deleted is retried from the root (the parent is uploaded again).
"""

from __future__ import absolute_import

import random
import threading
import time

import requests

from ..registry.harness import Client, image_id


class Refused(Exception):
    pass


class PatientClient(Client):
    """Pushes like docker does, retrying what a busy registry refuses."""

    def _req(self, method, path, **kw):
        # a GET is tried again on a connection the server closed (a
        # gunicorn worker ends after --max-requests 100, closing its
        # keep-alive connections)
        for attempt in range(3):
            try:
                return Client._req(self, method, path, **kw)
            except requests.ConnectionError:
                if method != 'GET' or attempt == 2:
                    raise
                time.sleep(0.2)

    def has(self, image):
        return self._req('GET', '/v1/images/%s/json' % image).status_code \
            == 200

    def push_tolerant(self, repo, tag, chain, tries=8):
        """``chain`` is a list of (name, parent name or None), root first
        (the root may have an external parent id).  Returns the ids, or
        raises :class:`Refused` after ``tries``."""
        last = None
        for attempt in range(tries):
            ids = []
            parent = None
            try:
                for name, external_parent in chain:
                    image = image_id(name)
                    parent = external_parent or parent
                    if not self.has(image):
                        r = self.push_image(image, parent)
                        if r.status_code != 200:
                            raise Refused('%s: %s %s' % (
                                name, r.status_code, r.text[:200]))
                    ids.append(image)
                    parent = image
                r = self.put_tag(repo, tag, ids[-1])
                if r.status_code != 200:
                    raise Refused('tag %s:%s: %s %s' % (
                        repo, tag, r.status_code, r.text[:200]))
                return ids
            except Refused as e:
                last = e
                time.sleep(0.05 * (attempt + 1))
        raise Refused('gave up after %d tries: %s' % (tries, last))

    def current(self, repo, tag):
        r = self._req('GET', '/v1/repositories/%s/tags/%s' % (repo, tag))
        return r.json() if r.status_code == 200 else None


def run_clients(loop, args, timeout):
    """``loop(*a)`` for each ``a`` in ``args``, each in a thread of its
    own, all at once; waits up to ``timeout`` seconds for each."""
    threads = [threading.Thread(target=loop, args=a) for a in args]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), 'workload did not finish'

def mixed_workload(urls, base, rounds, seed=0, tags=('a', 'b', 'c'),
                   on_error=None):
    """``len(urls)`` clients, one per URL (so several hosts), each doing
    ``rounds`` operations on shared tags: push a new child of a shared,
    untagged middle image (re-uploaded whenever it was deleted) and tag it,
    retag another repository's tag to the image a shared tag names, delete
    a tag, push and delete a whole repository.  Returns the per-client
    logs; errors (other than the ones a busy registry answers) are
    collected and returned."""
    errors = []
    logs = [[] for _ in urls]
    middle = [('h-mid', base)]

    def client_loop(n, url):
        rnd = random.Random(seed * 1000 + n)
        client = PatientClient(url)
        for i in range(rounds):
            op = rnd.choice(('push', 'push', 'retag', 'delete', 'repo'))
            tag = rnd.choice(tags)
            try:
                if op == 'push':
                    chain = middle + [('h-%d-%d-%d' % (seed, n, i), None)]
                    ids = client.push_tolerant('ns/app', tag, chain)
                    logs[n].append(('push', tag, ids[-1]))
                elif op == 'retag':
                    image = client.current('ns/app', tag)
                    if image:
                        r = client.put_tag('ns/other', tag, image)
                        logs[n].append(('retag', tag, image, r.status_code))
                elif op == 'delete':
                    r = client.delete_tag('ns/app', tag)
                    logs[n].append(('delete', tag, r.status_code))
                else:
                    repo = 'ns/r%d' % n
                    chain = middle + [('h-%d-%d-%d-r' % (seed, n, i), None)]
                    client.push_tolerant(repo, 'x', chain)
                    r = client.delete_repository(repo)
                    logs[n].append(('repo', repo, r.status_code))
            except Exception as e:
                errors.append('client %d round %d %s: %r' % (n, i, op, e))
                if on_error:
                    on_error(e)
    run_clients(client_loop, list(enumerate(urls)), 300)
    return logs, errors


# -- a history of tag operations, and what it lets a tag name at the end -----

class Op(object):
    """One tag operation as a client saw it: ``value`` is the image a
    write named (None for a delete); ``ok`` whether it was acknowledged
    (200); ``start``/``end`` on the test's clock."""

    __slots__ = ('key', 'value', 'ok', 'start', 'end', 'what')

    def __init__(self, key, value, ok, start, end, what):
        self.key, self.value, self.ok = key, value, ok
        self.start, self.end, self.what = start, end, what

    def __repr__(self):
        return '%s %s:%s %s %s [%.2f-%.2f]' % (
            self.what, self.key[0], self.key[1],
            (self.value or '-')[:12], 'ok' if self.ok else 'refused',
            self.start, self.end)


class History(object):
    """Every tag write and delete of every client, thread-safe."""

    def __init__(self):
        self.ops = []
        self.lock = threading.Lock()

    def add(self, key, value, ok, start, what):
        op = Op(key, value, ok, start, time.time(), what)
        with self.lock:
            self.ops.append(op)
        return op

    def counts(self):
        with self.lock:
            ops = list(self.ops)
        return {'ops': len(ops), 'acknowledged': sum(o.ok for o in ops),
                'refused': sum(not o.ok for o in ops)}

    def allowed(self, key):
        """What the tag may name once every operation has ended: None if
        no operation on it was acknowledged (nothing to check), else the
        set of values (None: no tag) of the operations that no
        acknowledged one followed (began after it ended).  An operation a
        client saw refused or fail may have taken effect, so it counts
        too - it only widens the set.  A single value: the acknowledged
        tag nobody changed after, which must be there exactly."""
        ops = [o for o in self.ops if o.key == key]
        acked = [o for o in ops if o.ok]
        if not acked:
            return None
        return set(o.value for o in ops
                   if not any(a.start > o.end for a in acked))

    def keys(self):
        return sorted(set(o.key for o in self.ops))

    def violations(self, client):
        """S1 over HTTP: each tag with an acknowledged operation names an
        image it may name, and that image is pullable with its whole
        chain (ancestry, json and layer of each)."""
        found = []
        for key in self.keys():
            allowed = self.allowed(key)
            if allowed is None:
                continue
            now = client.current(*key)
            if now not in allowed:
                found.append('%s:%s names %s; allowed %s; ops %s' % (
                    key[0], key[1], now, sorted(allowed, key=str),
                    [o for o in self.ops if o.key == key]))
            elif now is not None:
                problem = client.pullable(*key)
                if problem:
                    found.append('%s:%s -> %s not pullable: %s; ops %s' % (
                        key[0], key[1], now, problem,
                        [o for o in self.ops if o.key == key]))
        return found


class RecordingClient(PatientClient):
    """A patient client whose tag writes and deletes go into a
    :class:`History`."""

    def __init__(self, url, history):
        PatientClient.__init__(self, url)
        self.history = history

    def put(self, repo, tag, image):
        start = time.time()
        try:
            ok = self.put_tag(repo, tag, image).status_code == 200
        except Exception:
            ok = False
        self.history.add((repo, tag), image, ok, start, 'put')
        return ok

    def delete(self, repo, tag):
        start = time.time()
        try:
            ok = self.delete_tag(repo, tag).status_code == 200
        except Exception:
            ok = False
        self.history.add((repo, tag), None, ok, start, 'delete')
        return ok

    def push_tagged(self, repo, tag, chain, tries=8):
        """:meth:`push_tolerant`, recorded as a write of the chain's top
        (its start is the push's: earlier than the tag PUT, which only
        widens what the tag may name).  The ids, or None if refused."""
        start = time.time()
        top = image_id(chain[-1][0])
        try:
            ids = self.push_tolerant(repo, tag, chain, tries=tries)
        except Exception:
            self.history.add((repo, tag), top, False, start, 'push')
            return None
        self.history.add((repo, tag), top, True, start, 'push')
        return ids

    def drop_repository(self, repo, tags):
        """DELETE a whole repository, recorded as a delete of ``tags``."""
        start = time.time()
        try:
            ok = self.delete_repository(repo).status_code == 200
        except Exception:
            ok = False
        for tag in tags:
            self.history.add((repo, tag), None, ok, start, 'repo delete')
        return ok


def timed_workload(urls, base, until, history, seed=0, tags=('a', 'b', 'c')):
    """:func:`mixed_workload`'s operations, recorded in ``history``, until
    the time ``until`` (then each client finishes the operation it is
    in).  Returns the number of operations; clients never raise."""
    middle = [('h-mid', base)]
    done = [0] * len(urls)
    errors = []

    def client_loop(n, url):
        rnd = random.Random(seed * 1000 + n)
        client = RecordingClient(url, history)
        i = 0
        while time.time() < until:
            i += 1
            op = rnd.choice(('push', 'push', 'retag', 'delete', 'repo'))
            tag = rnd.choice(tags)
            try:
                if op == 'push':
                    client.push_tagged('ns/app', tag, middle + [
                        ('s-%d-%d-%d' % (seed, n, i), None)])
                elif op == 'retag':
                    image = client.current('ns/app', tag)
                    if image:
                        client.put('ns/other', tag, image)
                elif op == 'delete':
                    client.delete('ns/app', tag)
                else:
                    repo = 'ns/s%d' % n
                    if client.push_tagged(repo, 'x', middle + [
                            ('s-%d-%d-%d-r' % (seed, n, i), None)]):
                        client.drop_repository(repo, ['x'])
            except Exception as e:          # a GET that timed out, ...
                errors.append('client %d op %d %s: %r' % (n, i, op, e))
            done[n] += 1
    run_clients(client_loop, list(enumerate(urls)),
                max(60, until - time.time() + 120))
    return sum(done), errors
