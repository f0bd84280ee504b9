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

from ..registry.harness import Client, image_id


class Refused(Exception):
    pass


class PatientClient(Client):
    """Pushes like docker does, retrying what a busy registry refuses."""

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
    threads = [threading.Thread(target=client_loop, args=(n, url))
               for n, url in enumerate(urls)]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), 'workload did not finish'
    return logs, errors
