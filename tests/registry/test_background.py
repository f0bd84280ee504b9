"""Work after the response (registry_refcount.background): in a gevent
worker it runs in a greenlet, shortly after; beyond the pool's size, or
without gevent, at once."""

from __future__ import absolute_import

import subprocess
import sys
import textwrap


def _run(code):
    out = subprocess.check_output([sys.executable, '-c',
                                   textwrap.dedent(code)])
    return out.decode().split()


def test_without_gevent_the_work_runs_at_once():
    assert _run('''
        from registry_refcount import background
        done = []
        background.run(done.append, 1)
        print(done == [1])
    ''') == ['True']


def test_in_a_gevent_worker_it_runs_after_the_caller_yields():
    assert _run('''
        from gevent import monkey; monkey.patch_all()
        import gevent
        from registry_refcount import background
        done = []
        background.run(done.append, 1)
        first = list(done)
        gevent.sleep(background.DELAY * 4)
        print(first == [] and done == [1])
        background.SIZE = 0
        background._pool = None
        background.run(done.append, 2)      # a full pool: at once
        print(done == [1, 2])
    ''') == ['True', 'True']


def test_a_worker_exiting_finishes_its_deferred_work():
    assert _run('''
        from gevent import monkey; monkey.patch_all()
        import atexit, sys
        from registry_refcount import background
        background.run(lambda: sys.stdout.write('finished\\n'))
    ''') == ['finished']


def test_a_call_that_waits_in_the_kernel_leaves_the_hub_serving():
    """off_hub: in a gevent worker the call runs in a native thread while
    the caller's greenlet waits for its result; other greenlets go on."""
    assert _run('''
        from gevent import monkey; monkey.patch_all()
        import gevent
        from registry_refcount import background
        background._gevent_pool()
        blocking_sleep = monkey.get_original('time', 'sleep')
        native_ident = monkey.get_original('thread', 'get_ident')
        ticks = []

        def ticker():
            while True:
                ticks.append(1)
                gevent.sleep(0.01)

        def call():
            blocking_sleep(0.3)
            return native_ident()

        main = native_ident()
        t = gevent.spawn(ticker)
        gevent.sleep(0)
        ident = background.off_hub(call)
        t.kill()
        print(ident != main)
        print(len(ticks) >= 10)
        try:
            background.off_hub(int, 'x')
        except ValueError:
            print('raised')
    ''') == ['True', 'True', 'raised']


def test_without_gevent_off_hub_is_a_plain_call():
    assert _run('''
        import thread
        from registry_refcount import background
        print(background.off_hub(thread.get_ident) == thread.get_ident())
    ''') == ['True']
