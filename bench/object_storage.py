"""Part 7 (issue 25, goal 2): the online cost on object storage.  Two
registries of the ``s3`` flavor, with the extension and without, on one
moto server behind a relay on loopback that adds a fixed latency to each
request (``tests.services.Delaying``), at each delay:

* the round trips one after the other that a request's response waits
  for, with and without (their difference is the extension's), each
  request alone with the storage quiet around it: image json PUT, tag PUT,
  tag DELETE; and the requests of a tag delete's work after its response
  (all of them, and how many one after the other);
* p50 and p99 of the image json PUT and the tag PUT, with and without,
  at concurrency 1;
* at concurrency 16 on each registry for ``--seconds``: the extension's
  unfinished work (tag requests' intents on storage), sampled every
  second; after a fifth of warm-up, it keeps up when the second half's
  mean is within 20% (plus one) of the first half's, and once the load
  stops it drains.

    python -m bench.object_storage [--delays 10,30] [--seconds 60]
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import threading
import time

from . import common
from . import online

#: The requests whose round trips are counted.
COUNTED = ('image_json', 'tag_put', 'tag_delete')


def _new_image():
    return hashlib.sha256(os.urandom(16)).hexdigest()


def round_trips(relay, regs, base, layer, samples):
    """Per registry and request: the round trips one after the other its
    response waited for (the fewest of ``samples``: another worker's
    background loop may touch storage in a window), and for a tag delete,
    the requests of its work after the response."""
    from tests.services import sequential
    out = dict((name, dict((e, []) for e in COUNTED + (
        'after_delete_requests', 'after_delete_sequential')))
               for name in regs)
    for n in range(samples):
        for name, reg in sorted(regs.items()):
            send = online.sender(reg.port)
            image = _new_image()
            tag = '/v1/repositories/bench/rt/tags/t%d' % n

            def counted(endpoint, seconds):
                # (online.call's record: the request took ``seconds``, up
                # to now)
                if endpoint in COUNTED:
                    now = time.time()
                    out[name][endpoint].append(sequential(
                        relay.between(now - seconds, now)))
            relay.quiet(0.3)
            online.push_image(send, image, base[name], layer, counted)
            for method, endpoint, body in (
                    ('PUT', 'tag_put', json.dumps(image)),
                    ('DELETE', 'tag_delete', None)):
                relay.quiet(0.3)
                online.call(send, counted, endpoint, method, tag, body)
            answered = time.time()
            relay.quiet(0.5)
            after = relay.between(answered, time.time())
            out[name]['after_delete_requests'].append(len(after))
            out[name]['after_delete_sequential'].append(sequential(after))
    return dict((name, dict((k, min(v)) for k, v in got.items()))
                for name, got in out.items())


def latency(regs, base, layer, seconds):
    """p50 and p99 per registry of the image json PUT and the tag PUT at
    concurrency 1, the two registries in turn in one loop."""
    got, _ = online.run_load(regs, base, layer, 1, seconds, 7)
    out = {}
    for name, endpoint, took in got:
        out.setdefault(name, {}).setdefault(endpoint, []).append(took)
    return dict((name, dict((e, {
        'n': len(v), 'p50_ms': round(1000 * common.percentile(v, 50), 1),
        'p99_ms': round(1000 * common.percentile(v, 99), 1)})
        for e, v in eps.items() if e in ('image_json', 'tag_put')))
        for name, eps in out.items())


def backlog(regs, base, layer, seconds, count):
    """Concurrency 16 on each registry for ``seconds``: the intents on
    storage (``count()``) every second, and how long they take to drain
    once the load stops."""
    samples, done = [], []

    def sample():
        while not done:
            samples.append((time.time(), count()))
            time.sleep(1)
    watcher = threading.Thread(target=sample)
    watcher.daemon = True
    started = time.time()
    watcher.start()
    got, window = online.run_load(regs, base, layer, 16, seconds, 16)
    stopped = time.time()
    deadline = stopped + 120
    while count() and time.time() < deadline:
        time.sleep(0.5)
    drained = time.time() - stopped
    done.append(True)
    watcher.join()
    during = [n for t, n in samples if started <= t <= stopped]
    # the first fifth is the warm-up (each client pushes before it tags)
    steady = during[len(during) // 5:]
    half = max(1, len(steady) // 2)
    first, last = steady[:half], steady[-half:]
    mean = lambda xs: sum(xs) / float(len(xs))
    return {'seconds': seconds, 'samples': during,
            'first_half_mean': round(mean(first), 1),
            'second_half_mean': round(mean(last), 1),
            # not growing: the second half within 20% (noise) of the first
            'keeps_up': mean(last) <= 1.2 * mean(first) + 1,
            'drain_seconds': round(drained, 1), 'drained': not count(),
            'iterations': dict((n, w[1]) for n, w in window.items()),
            'tag_put_p50_ms': dict(
                (name, round(1000 * common.percentile(
                    [s for n, e, s in got if n == name and e == 'tag_put'],
                    50), 1)) for name in regs)}


def main(argv=None):
    from tests.registry.harness import Registry, make_layer
    from tests.services import Delaying, MotoServer, RedisServer
    quick = common.quick()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--delays', default='10,30',
                        help='milliseconds the relay adds to a request')
    parser.add_argument('--seconds', type=float, default=None,
                        help='of the load at concurrency 16 (default 60; '
                        'QUICK 8)')
    parser.add_argument('--samples', type=int, default=None,
                        help='requests counted alone (default 3; QUICK 1)')
    args = parser.parse_args(argv)
    seconds = args.seconds or (8 if quick else 60)
    samples = args.samples or (1 if quick else 3)
    workdir = common.workdir('object_storage')
    moto = MotoServer(os.path.join(workdir, 'moto')).start()
    redis = RedisServer(os.path.join(workdir, 'redis')).start()
    relay = Delaying(moto.port, 0)
    regs, out = {}, {'delays': {}}
    try:
        bucket = moto.new_bucket()
        env = dict(moto.env(bucket), AWS_PORT=str(relay.port))
        block = dict(common.enabled_block(), lock_backend='redis',
                     redis=redis.settings())
        for name in ('enabled', 'absent'):
            folder = os.path.join(workdir, name)
            os.makedirs(folder)
            regs[name] = Registry(
                folder, flavor='s3', workers=2,
                refcount=block if name == 'enabled' else None,
                env=dict(env, STORAGE_PATH='/' + name))
        base = {}
        layer = make_layer('object-storage-bench', size=2048)
        for name, reg in regs.items():
            reg.start()
            base[name] = online.push_base(online.sender(reg.port),
                                          make_layer('base', 4096))
        s3 = moto.connection().get_bucket(bucket)

        def intents():
            return sum(1 for _ in s3.list(
                prefix='enabled/extensions/refcount/intents/'))
        for delay in [int(d) for d in args.delays.split(',')]:
            relay.delay = delay / 1000.0
            common.log('part 7: %d ms a request' % delay)
            run = {'round_trips': round_trips(relay, regs, base, layer,
                                              samples)}
            trips = run['round_trips']
            run['extension_round_trips'] = dict(
                (e, trips['enabled'][e] - trips['absent'][e])
                for e in COUNTED)
            common.log('  round trips of the extension: %s' % ', '.join(
                '%s %d' % kv for kv in sorted(
                    run['extension_round_trips'].items())))
            run['latency'] = latency(regs, base, layer,
                                     4 if quick else 20)
            run['backlog'] = backlog(regs, base, layer, seconds, intents)
            common.log('  backlog: first half %.1f, second half %.1f, '
                       'drained in %.1f s' % (
                           run['backlog']['first_half_mean'],
                           run['backlog']['second_half_mean'],
                           run['backlog']['drain_seconds']))
            out['delays'][str(delay)] = run
        out.update(online.log_errors(regs['enabled']))
    finally:
        for reg in regs.values():
            reg.stop()
        relay.close()
        redis.stop()
        moto.stop()
    common.save('object_storage', out)
    common.cleanup(workdir)
    return out


if __name__ == '__main__':
    main()
