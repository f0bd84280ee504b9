"""Work done after the response: the reference protocols of a tag request.

A tag write or delete records its intent before the registry touches the
tag (``wiring.on_request_started``); the intent, and for a write the
pending marker, keep everything the request may need alive.  What is left
- reconciling the tag's reference, releasing the pending marker, and the
collection of whatever the request made unreachable - changes nothing a
client can see, so it need not hold the response: it runs in a greenlet of
the same worker shortly after the response (:data:`DELAY`).  A tag delete
that frees a chain then answers about as fast as the registry alone does.

Nothing is lost if the worker dies first: the intent is still on storage,
and recovery finishes it after ``intent_timeout``, as it does for a worker
killed inside a request.

Without gevent's monkey patching (a sync worker, a test client, the CLI)
the work runs at once, in the request.  With it, at most ``SIZE`` tasks
run at a time per worker; beyond that the request does its own (the
backlog is bounded, and a client that floods the registry waits for it).
"""

from __future__ import absolute_import, unicode_literals

import atexit
import logging
import sys

logger = logging.getLogger(__name__)

#: Greenlets running deferred work, per worker.
SIZE = 32
#: Seconds the work waits before it starts.  The requests that follow
#: (a client's next push, its tag delete) are answered first, and work
#: that they make moot is not done twice: a tag written then deleted a
#: moment later is reconciled once, to "no tag".
DELAY = 0.005

#: The worker's pool of greenlets, once it runs gevent, and gevent's
#: ``sleep`` and ``get_hub`` (kept, not imported per task: under gevent an
#: import statement takes the patched import lock).
_pool = None
_sleep = _get_hub = None


def _gevent_pool():
    """The pool, once gevent has patched ``socket``; else None.  gevent is
    not imported unless its monkey-patching already is: ``from gevent
    import monkey`` loads gevent, ~3 MB that a process without it (the
    CLI; gc calls :func:`off_hub` in its catch-up) should not pay for -
    bench part 3, 10 000 images: 300 B per image of gc's peak memory."""
    global _pool, _sleep, _get_hub
    if _pool is not None:
        return _pool
    if 'gevent.monkey' not in sys.modules:
        return None
    try:
        from gevent import monkey
        if not monkey.is_module_patched('socket'):
            return None
        import gevent.pool
    except ImportError:
        return None
    _pool, _sleep = gevent.pool.Pool(SIZE), gevent.sleep
    _get_hub = gevent.get_hub
    atexit.register(drain)
    return _pool


def run(fn, *args):
    """Run ``fn(*args)`` after the current request (or now).  ``fn`` must
    log its own errors: nobody waits for its result."""
    pool = _gevent_pool()
    if pool is None or pool.full():
        fn(*args)
    else:
        pool.spawn(_later, fn, args)


def _later(fn, args):
    _sleep(DELAY)
    fn(*args)


def off_hub(fn, *args):
    """Call ``fn(*args)``, a system call that may wait in the kernel, in
    a native thread of the worker's hub, and wait for it cooperatively:
    the worker's other greenlets are served meanwhile.  (``rmdir`` of an
    image's folder waits for the file system's journal: on the hosts in
    bench/NOTES.md 0.8 ms at the median and up to 11 ms under load, time
    in which a plain call stops every request of the worker.)  Without
    gevent, or outside the hub's thread, it is a plain call."""
    if _gevent_pool() is None:
        return fn(*args)
    return _get_hub().threadpool.apply(fn, args)


def forever(fn):
    """Run ``fn`` (a loop that never returns: recovery's) in a greenlet
    of its own, stopped like deferred work when the worker exits."""
    import gevent
    _gevent_pool()              # registers :func:`drain` at exit
    _loops.append(gevent.spawn_later(0.5, fn))


#: The loops :func:`forever` started.
_loops = []


def drain(timeout=10):
    """Let deferred work finish (a worker about to exit); what does not
    finish in time, and recovery's loop, are stopped here and left to
    recovery.  Stopped, not left running: gunicorn recycles a worker
    (``--max-requests``) by returning from its loop, and a greenlet still
    alive then runs on while the interpreter tears its modules down, with
    their names set to None - a deletion that removed an image's files
    went on without dropping their cache entries, and the registry served
    the deleted image's ancestry from the cache for good."""
    for loop in _loops:
        loop.kill(block=False)
    if _pool is None:
        return
    if len(_pool):
        logger.info('refcount: finishing %d deferred tasks before exit',
                    len(_pool))
        _pool.join(timeout=timeout)
    if len(_pool):
        logger.warning('refcount: %d deferred tasks did not finish before '
                       'exit; left to recovery', len(_pool))
        _pool.kill(block=True, timeout=timeout)
