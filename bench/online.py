"""Part 2: online overhead in the real registry.

Two real registries run at once on this machine (docker-registry 0.9.1's
own console script, gunicorn + gevent workers, file storage): one with the
extension enabled, one without its block in the config (the extension
absent).  The same load goes to both at the same time.  At concurrency 1
one client thread, for each iteration, visits the two registries in a
random order; at higher concurrency each registry has its own client
threads, all running at once (see :func:`run_load` for why).  An iteration
is what a CI pipeline's push and cleanup do:

    PUT /v1/images/<new id>/json     (parent: a tagged base image)
    PUT /v1/images/<new id>/layer    (a real tar)
    PUT /v1/images/<new id>/checksum
    PUT /v1/repositories/bench/w<thread>/tags/b<i>
    DELETE /v1/repositories/bench/w<thread>/tags/b<i>

With the extension the DELETE also deletes the image (the tag was its only
referrer; the extension does that after the response).  Latency is
measured by the client, per request, one connection per request; p50 and
p95 are reported per endpoint, registry and concurrency (1 and 16).

    python -m bench.online   (Python 2.7: .venv27)
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import random
import threading
import time

try:
    import httplib
except ImportError:  # pragma: no cover
    import http.client as httplib

from . import common

ENDPOINTS = ('image_json', 'layer', 'checksum', 'tag_put', 'tag_delete')
TIMED = ('image_json', 'tag_put', 'tag_delete')


def refcount_settings(workdir):
    """The extension as an operator would run it (config_sample.yml's
    defaults), with its lock folder in the bench's work dir."""
    return {'enabled': True, 'dry_run': False, 'lock_backend': 'local',
            'lock_dir': os.path.join(workdir, 'locks'),
            'grace_period': 86400, 'intent_timeout': 600,
            'lock_timeout': 30, 'recovery_interval': 300}


class Conn(object):
    """One persistent HTTP/1.1 connection to a registry."""

    UA = 'docker/1.3.0 go/go1.3.3 kernel/3.16 os/linux arch/amd64'

    def __init__(self, port, keepalive=False):
        self.port = port
        self.keepalive = keepalive
        self.http = httplib.HTTPConnection('127.0.0.1', port, timeout=60)

    def request(self, method, path, body=None, headers=None):
        h = {'User-Agent': self.UA}
        if not self.keepalive:
            h['Connection'] = 'close'
            self.http.close()
        h.update(headers or {})
        for attempt in (0, 1):
            try:
                started = time.time()
                self.http.request(method, path, body, h)
                r = self.http.getresponse()
                data = r.read()
                elapsed = time.time() - started
                return r.status, data, elapsed
            except (httplib.HTTPException, IOError):
                self.http.close()
                self.http = httplib.HTTPConnection('127.0.0.1', self.port,
                                                   timeout=60)
                if attempt:
                    raise


def new_id(*parts):
    return hashlib.sha256(':'.join('%s' % p for p in parts)
                          .encode()).hexdigest()


def push_image(conn, image, parent, layer, lat=None):
    doc = {'id': image, 'created': '2014-10-01T00:00:00Z',
           'container_config': {'Cmd': ['/bin/true']}}
    if parent:
        doc['parent'] = parent
    body = json.dumps(doc)
    status, data, t = conn.request('PUT', '/v1/images/%s/json' % image, body,
                                   {'Content-Type': 'application/json'})
    _check(status, data, 'image json')
    if lat is not None:
        lat['image_json'].append(t)
    status, data, t = conn.request('PUT', '/v1/images/%s/layer' % image,
                                   layer)
    _check(status, data, 'layer')
    if lat is not None:
        lat['layer'].append(t)
    csum = 'sha256:' + hashlib.sha256(body.encode() + b'\n' +
                                      layer).hexdigest()
    status, data, t = conn.request('PUT', '/v1/images/%s/checksum' % image,
                                   headers={'X-Docker-Checksum-Payload':
                                            csum})
    _check(status, data, 'checksum')
    if lat is not None:
        lat['checksum'].append(t)


def _check(status, data, what):
    if status != 200:
        raise RuntimeError('%s: HTTP %s %s' % (what, status, data[:300]))


def one_iteration(conn, base, layer, thread, i, lat):
    image = new_id('online', conn.port, thread, i, random.random())
    push_image(conn, image, base, layer, lat)
    path = '/v1/repositories/bench/w%d/tags/b%d' % (thread, i)
    status, data, t = conn.request('PUT', path, json.dumps(image))
    _check(status, data, 'tag put')
    lat['tag_put'].append(t)
    status, data, t = conn.request('DELETE', path)
    _check(status, data, 'tag delete')
    lat['tag_delete'].append(t)


class Samples(dict):
    """Latencies per endpoint, each with the time its request ended."""

    def __init__(self):
        dict.__init__(self, ((e, []) for e in ENDPOINTS))
        self.ended = dict((e, []) for e in ENDPOINTS)

    def __getitem__(self, endpoint):
        return _Sink(dict.__getitem__(self, endpoint), self.ended[endpoint])

    def until(self, cutoff):
        """Only the requests that ended by ``cutoff``."""
        return dict((e, [t for t, end in zip(dict.__getitem__(self, e),
                                             self.ended[e]) if end <= cutoff])
                    for e in ENDPOINTS)


class _Sink(object):
    def __init__(self, values, ended):
        self.values, self.ended = values, ended

    def append(self, value):
        self.values.append(value)
        self.ended.append(time.time())


def run_load(registries, base, concurrency, iterations, warmup, seed,
             clients='shared'):
    """``warmup + iterations`` iterations per client thread.

    ``clients='shared'``: ``concurrency`` threads, each doing every
    iteration on both registries, in a random order each time.
    ``clients='own'``: ``concurrency`` threads per registry, all running
    at once; only requests that ended before the first client thread was
    done are kept, so both were measured under the same load.
    (With shared clients and concurrency > 1, a thread waits in whichever
    registry is slower, so that registry holds more of the clients and
    queues longer on its workers: the latency ratio then grows far beyond
    the difference in work, on endpoints the extension never sees too.)

    Returns the kept latencies, the wall time, and the *window*: each
    registry's CPU seconds and finished iterations from the start to the
    moment the first client thread was done - the same stretch the kept
    latencies come from.  (CPU over the whole load also counts the slower
    registry's last iterations, run alone on the machine and cheaper: at
    concurrency 16 that made the extension's CPU look about a tenth
    smaller than what the latencies were measured under.)"""
    from tests.registry.harness import make_layer
    layer = make_layer('online-bench', size=2048)
    lat = dict((name, Samples()) for name in registries)
    errors = []
    finished = {}
    start = threading.Event()
    ended = dict((name, []) for name in registries)   # every iteration's end
    window = {}
    guard = threading.Lock()

    def snapshot(key):
        window[key] = (time.time(), dict(
            (name, cpu_seconds(reg)) for name, reg in registries.items()))

    def worker(thread, names):
        rnd = random.Random(seed * 1000 + thread)
        conns = dict((name, Conn(registries[name].port)) for name in names)
        names = sorted(names)
        start.wait()
        try:
            for i in range(warmup + iterations):
                rnd.shuffle(names)
                for name in names:
                    sink = lat[name] if i >= warmup else dict(
                        (e, []) for e in ENDPOINTS)
                    one_iteration(conns[name], base[name][
                                      thread % len(base[name])], layer,
                                  thread + concurrency * seed, i, sink)
                    ended[name].append(time.time())
        except Exception as e:
            errors.append('%s' % e)
        finished[thread, tuple(names)] = time.time()
        with guard:
            if 'end' not in window:
                snapshot('end')

    if clients == 'shared':
        plan = [(t, list(registries)) for t in range(concurrency)]
    else:
        plan = [(t, [name]) for name in registries
                for t in range(concurrency)]
    threads = [threading.Thread(target=worker, args=args) for args in plan]
    for t in threads:
        t.daemon = True
        t.start()
    snapshot('start')
    started = time.time()
    start.set()
    for t in threads:
        t.join()
    wall = time.time() - started
    if errors:
        raise RuntimeError('load failed: %s' % errors[:3])
    cutoff = min(finished.values())
    kept = dict((name, samples.until(cutoff))
                for name, samples in lat.items())
    (_, cpu0), (t1, cpu1) = window['start'], window['end']
    return kept, wall, {
        'cpu_seconds': dict((n, cpu1[n] - cpu0[n]) for n in registries),
        'iterations': dict((n, sum(1 for t in ended[n] if t <= t1))
                           for n in registries)}


def summarise(lat):
    out = {}
    for endpoint, values in lat.items():
        if not values:
            continue
        out[endpoint] = {'n': len(values),
                         'p50': common.percentile(values, 50),
                         'p95': common.percentile(values, 95),
                         'mean': sum(values) / len(values)}
    return out


def cpu_seconds(reg):
    """User + system CPU time of a registry's gunicorn workers so far."""
    tick = float(os.sysconf(str('SC_CLK_TCK')))
    total = 0.0
    master = reg.proc.pid
    for pid in reg.worker_pids() + [master]:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            if pid == master:   # + the workers that exited (recycled)
                ticks += int(fields[13]) + int(fields[14])
            total += ticks / tick
        except (IOError, OSError, IndexError, ValueError):
            pass
    return total


def wait_for_log(reg, text, timeout=30):
    """The extension must really be on in the 'enabled' registry (an
    install without its entry point would silently measure nothing)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in reg.log():
            return
        time.sleep(0.2)
    raise RuntimeError('the enabled registry never logged %r: is the '
                       'extension installed (entry point)?\n%s'
                       % (text, reg.log()[-2000:]))


def storage_files(root):
    count = 0
    for _, _, files in os.walk(root):
        count += len(files)
    return count


def _ratios(summaries, stat):
    """enabled / absent per endpoint, for the endpoints both have samples
    of (a tiny run may keep none of an endpoint within its window)."""
    enabled, absent = summaries['enabled'], summaries['absent']
    return dict((e, enabled[e][stat] / absent[e][stat]) for e in ENDPOINTS
                if e in enabled and e in absent)


def measure(registries, base, conc, iters, seed, clients, rounds=1):
    """A load at concurrency ``conc``, ``rounds`` times: latencies (all
    rounds' requests pooled), ratios, registry CPU.  Rounds, because at
    concurrency 16 one round's ratio swings by +-0.3 on this shared
    machine (worker recycling, the other tenants)."""
    warmup = max(2, iters // 10)
    common.log('part 2: concurrency %d (%s clients), %d iterations per '
               'thread on each registry, %d round(s)'
               % (conc, clients, iters, rounds))
    cpu_before = dict((n, cpu_seconds(r)) for n, r in registries.items())
    boots_before = dict((n, r.log().count('Booting worker'))
                        for n, r in registries.items())
    lat = dict((n, dict((e, []) for e in ENDPOINTS)) for n in registries)
    wall, per_round, per_round_ms = 0.0, [], []
    in_window = dict((n, [0.0, 0]) for n in registries)   # CPU s, iterations
    for r in range(rounds):
        got, seconds, window = run_load(registries, base, conc, iters,
                                        warmup, seed * 100 + r, clients)
        wall += seconds
        for name in registries:
            in_window[name][0] += window['cpu_seconds'][name]
            in_window[name][1] += window['iterations'][name]
        for name in got:
            for e in ENDPOINTS:
                lat[name][e].extend(got[name][e])
        summaries = dict((name, summarise(l)) for name, l in got.items())
        per_round.append(_ratios(summaries, 'p50'))
        # each side's own p50 too: a ratio that jumps in one round may be
        # either registry moving
        per_round_ms.append(dict(
            (name, dict((e, 1000.0 * v['p50']) for e, v in s.items()))
            for name, s in summaries.items()))
        common.log('  round %d, p50 ratio: %s; p50 absent/enabled: %s' % (
            r + 1, ', '.join('%s %.2f' % (e, per_round[-1][e])
                             for e in ENDPOINTS if e in per_round[-1]),
            ', '.join('%s %.2f/%.2f ms' % (
                e, per_round_ms[-1]['absent'][e],
                per_round_ms[-1]['enabled'][e])
                for e in TIMED if e in per_round[-1])))
    cpu = dict((n, cpu_seconds(r) - cpu_before[n])
               for n, r in registries.items())
    run = {'concurrency': conc, 'clients': clients, 'rounds': rounds,
           'iterations_per_thread': iters,
           'warmup_per_thread': warmup, 'wall_seconds': wall,
           'cpu_seconds': cpu,
           'worker_boots': dict(
               (n, r.log().count('Booting worker') - boots_before[n])
               for n, r in registries.items()),
           'cpu_ms_per_iteration': dict(
               (n, 1000.0 * c / ((iters + warmup) * conc * rounds))
               for n, c in cpu.items()),
           # while both registries were under load (see run_load)
           'window': dict((n, {'cpu_seconds': c, 'iterations': i})
                          for n, (c, i) in in_window.items()),
           'window_cpu_ms_per_iteration': dict(
               (n, 1000.0 * c / max(1, i)) for n, (c, i) in
               in_window.items()),
           'registries': dict((name, summarise(l))
                              for name, l in lat.items()),
           'round_p50_ratio': per_round,
           'round_p50_ms': per_round_ms}
    for stat in ('p50', 'p95'):
        run[stat + '_ratio'] = _ratios(run['registries'], stat)
    common.log('  p50 ratio enabled/absent: %s; registry CPU per iteration '
               'while both ran %s (whole run %s)' % (
                   ', '.join('%s %.2f' % (e, run['p50_ratio'][e])
                             for e in ENDPOINTS if e in run['p50_ratio']),
                   ', '.join('%s %.2f ms' % kv for kv in sorted(
                       run['window_cpu_ms_per_iteration'].items())),
                   ', '.join('%s %.2f ms' % kv for kv in sorted(
                       run['cpu_ms_per_iteration'].items()))))
    return run


def main(argv=None):
    from tests.registry.harness import Registry
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--concurrency', default='1,16')
    parser.add_argument('--iterations', type=int, default=None,
                        help='per thread (default: 240 at concurrency 1, '
                        '1280/concurrency otherwise; QUICK: 40, 160/c)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--base', choices=('shared', 'own'),
                        default='shared', help='one base image for every '
                        'client thread (default), or one per thread')
    parser.add_argument('--clients', choices=('auto', 'shared', 'own'),
                        default='auto', help='client threads shared by both '
                        'registries, or each its own (see run_load); auto: '
                        'shared at concurrency 1, own above, plus the '
                        'largest concurrency with shared clients for '
                        'information')
    parser.add_argument('--rounds', type=int, default=None,
                        help='rounds per counted run, requests pooled '
                        '(default: 2 at concurrency 1, 3 above; QUICK: 1)')
    parser.add_argument('--control', action='store_true',
                        help='an A/A run: the "enabled" registry without '
                        'the extension too, for the method\'s noise floor '
                        '(session 3: pooled ratios 0.92-1.08 at '
                        'concurrency 16, single rounds 0.82-1.21)')
    parser.add_argument('--out', default='online')
    args = parser.parse_args(argv)
    quick = common.quick()
    workdir = common.workdir('online')
    registries = {}
    kinds = [('enabled', False), ('absent', None)]
    if args.control:
        kinds = [('enabled', None), ('absent', None)]
    elif not quick:
        kinds.append(('tracking', True))    # dry_run: nothing deleted
    for name, dry_run in kinds:
        folder = os.path.join(workdir, name)
        os.makedirs(folder)
        settings = None
        if dry_run is not None:
            settings = dict(refcount_settings(folder), dry_run=dry_run)
        registries[name] = Registry(folder, refcount=settings,
                                    workers=args.workers)
    out = {'workers': args.workers, 'runs': {}, 'base': args.base,
           'control': args.control, 'config': {
               'enabled': None if args.control else refcount_settings(
                   '<workdir>')}}
    try:
        for reg in registries.values():
            reg.start()
        if not args.control:
            wait_for_log(registries['enabled'], 'refcount: enabled')
        # the base image, tagged (so that deleting the last child keeps it)
        base = {}
        from tests.registry.harness import make_layer
        nbases = 1 if args.base == 'shared' else max(
            int(c) for c in args.concurrency.split(','))
        for name, reg in registries.items():
            conn = Conn(reg.port)
            base[name] = []
            for b in range(nbases):
                image = new_id('online-base', b)
                push_image(conn, image, None, make_layer('base%d' % b, 4096))
                status, data, _ = conn.request(
                    'PUT', '/v1/repositories/bench/base%d/tags/latest' % b,
                    json.dumps(image))
                _check(status, data, 'base tag')
                base[name].append(image)
        concurrencies = [int(c) for c in args.concurrency.split(',')]
        plan = [(conc, args.clients if args.clients != 'auto' else
                 ('shared' if conc == 1 else 'own'), 'runs')
                for conc in concurrencies]
        if args.clients == 'auto' and not quick and max(concurrencies) > 1:
            # for information: the earlier way, clients shared at c > 1
            plan.append((max(concurrencies), 'shared', 'information_runs'))
        if 'tracking' in registries:
            # for information: references tracked, nothing deleted
            plan.append((max(concurrencies), 'own', 'dry_run_runs'))
        for seed, (conc, clients, section) in enumerate(plan):
            if args.iterations:
                iters = args.iterations
            elif conc == 1:
                iters = 40 if quick else 240
            else:
                iters = max(2, (160 if quick else 1280) // conc)
            pair = ('tracking' if section == 'dry_run_runs' else 'enabled',
                    'absent')
            rounds = 1 if quick or section != 'runs' else (
                args.rounds or (2 if conc == 1 else 3))
            run = measure(dict(zip(('enabled', 'absent'), [
                registries[n] for n in pair])), dict(zip(
                    ('enabled', 'absent'), [base[n] for n in pair])),
                conc, iters, seed + 1, clients, rounds)
            out.setdefault(section, {})[str(conc)] = run
        for name, reg in sorted(registries.items()):
            if name == 'tracking':
                continue
            out.setdefault('files_after', {})[name] = storage_files(
                reg.storage)
            if name == 'enabled':
                errors = [line for line in reg.log().splitlines()
                          if 'ERROR' in line or 'Traceback' in line]
                out['enabled_log_errors'] = len(errors)
                out['enabled_log_error_lines'] = errors[:5]
    finally:
        for reg in registries.values():
            reg.stop()
    path = common.save(args.out, out)
    common.log('part 2 written to %s' % path)
    common.cleanup(workdir)
    return out


if __name__ == '__main__':
    main()
