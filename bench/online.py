"""Part 2 (goal 2): p50 latency with the extension enabled vs absent, in
two real registries (gunicorn) under the same load at once, at concurrency
1 and 16, and their CPU over the same window (bench/NOTES.md says how).

    python -m bench.online [--concurrency 1,16]     (Python 2.7: .venv27)
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
GOAL_ENDPOINTS = ('image_json', 'tag_put', 'tag_delete')
UA = 'docker/1.3.0 go/go1.3.3 kernel/3.16 os/linux arch/amd64'


def sender(port):
    """``send(method, path, body, headers)`` to a registry: ``(status,
    data, seconds)``, one connection per request (with keep-alive a
    recycled worker waits out its graceful timeout on idle connections)."""
    def send(method, path, body=None, headers=None, retry=True):
        http = httplib.HTTPConnection('127.0.0.1', port, timeout=60)
        try:
            started = time.time()
            http.request(method, path, body, dict(headers or {}, **{
                'Connection': 'close', 'User-Agent': UA}))
            r = http.getresponse()
            return r.status, r.read(), time.time() - started
        except (httplib.HTTPException, IOError):
            if not retry:           # once: a worker may be recycling
                raise
            return send(method, path, body, headers, False)
        finally:
            http.close()
    return send


def call(send, record, name, method, path, body=None, headers=None):
    status, data, seconds = send(method, path, body, headers)
    if status != 200:
        raise RuntimeError('%s: HTTP %s %s' % (name, status, data[:300]))
    record(name, seconds)


def push_image(send, image, parent, layer, record=lambda *a: None):
    doc = {'id': image, 'created': '2014-10-01T00:00:00Z',
           'container_config': {'Cmd': ['/bin/true']}}
    if parent:
        doc['parent'] = parent
    body = json.dumps(doc)
    url = '/v1/images/%s/' % image
    call(send, record, 'image_json', 'PUT', url + 'json', body,
         {'Content-Type': 'application/json'})
    call(send, record, 'layer', 'PUT', url + 'layer', layer)
    call(send, record, 'checksum', 'PUT', url + 'checksum', headers={
        'X-Docker-Checksum-Payload': 'sha256:' + hashlib.sha256(
            body.encode() + b'\n' + layer).hexdigest()})


def one_iteration(send, base, layer, thread, i, record):
    """Push an image on ``base``, tag it, delete the tag; ``record(name,
    seconds)`` for each request."""
    image = hashlib.sha256(os.urandom(16)).hexdigest()
    push_image(send, image, base, layer, record)
    path = '/v1/repositories/bench/w%d/tags/b%d' % (thread, i)
    call(send, record, 'tag_put', 'PUT', path, json.dumps(image))
    call(send, record, 'tag_delete', 'DELETE', path)


def push_base(send, layer):
    """The base image every iteration builds on, tagged (so that deleting
    its last child keeps it)."""
    base = hashlib.sha256(b'online-base').hexdigest()
    push_image(send, base, None, layer)
    call(send, lambda *a: None, 'base tag', 'PUT',
         '/v1/repositories/bench/base/tags/latest', json.dumps(base))
    return base


def cpu_seconds(reg):
    """User + system CPU of a registry's gunicorn master and workers so
    far, the recycled workers included (the master's children times)."""
    total, tick = 0, float(os.sysconf(str('SC_CLK_TCK')))
    for pid in reg.worker_pids() + [reg.proc.pid]:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (IOError, OSError):
            continue
        total += sum(int(x) for x in fields[11:15 if pid == reg.proc.pid
                                              else 13]) / tick
    return total


def run_load(regs, base, layer, conc, seconds, seed):
    """One round: ``[(registry, endpoint, seconds)]`` of the requests that
    ended in the window, and each registry's CPU seconds and iterations
    finished in it."""
    shared = conc == 1
    plan = ([(t, sorted(regs)) for t in range(conc)] if shared else
            [(t, [name]) for name in sorted(regs) for t in range(conc)])
    start = time.time()
    begin, end = start + seconds / 10.0, start + seconds
    done, errors = [], []

    def worker(thread, names):
        rnd, i = random.Random(seed * 1000 + thread), 0
        try:
            while time.time() < end:
                rnd.shuffle(names)
                for name in names:
                    one_iteration(sender(regs[name].port), base[name], layer,
                                  thread + conc * seed, i, lambda e, s, n=name:
                                  done.append((n, e, s, time.time())))
                i += 1
        except Exception as e:
            errors.append('%s' % e)

    threads = [threading.Thread(target=worker, args=a) for a in plan]
    for t in threads:
        t.daemon = True
        t.start()
    cpu = []
    for moment in (begin, end):
        time.sleep(max(0, moment - time.time()))
        cpu.append(dict((n, cpu_seconds(r)) for n, r in regs.items()))
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError('load failed: %s' % errors[:3])
    kept = [r[:3] for r in done if begin <= r[3] <= end]
    return kept, dict((n, (cpu[1][n] - cpu[0][n], sum(
        1 for r in kept if r[0] == n and r[1] == 'tag_delete'))) for n in regs)


def measure(regs, base, layer, conc, seconds, rounds):
    """``rounds`` rounds at concurrency ``conc``, requests pooled: p50 and
    p95 per registry and endpoint, enabled/absent ratios, per-round p50
    ratios (one round swings by +-0.3 on a shared machine), window CPU."""
    common.log('part 2: concurrency %d, %d round(s) of %d s'
               % (conc, rounds, seconds))
    pooled, per_round, cpu = [], [], dict((n, [0.0, 0]) for n in regs)
    for r in range(rounds):
        got, window = run_load(regs, base, layer, conc, seconds,
                               conc * 100 + r)
        pooled += got
        for n, (used, iterations) in window.items():
            cpu[n][0] += used
            cpu[n][1] += iterations
        per_round.append(ratios(summarise(got), 'p50'))
        common.log('  round %d, p50 ratio: %s' % (r + 1, ', '.join(
            '%s %.2f' % kv for kv in sorted(per_round[-1].items()))))
    run = {'seconds': seconds, 'rounds': rounds, 'round_p50_ratio': per_round,
           'registries': summarise(pooled),
           'window': dict((n, {'cpu_seconds': c, 'iterations': i})
                          for n, (c, i) in cpu.items())}
    for stat in ('p50', 'p95'):
        run[stat + '_ratio'] = ratios(run['registries'], stat)
    return run


def summarise(requests):
    out = {}
    for name, endpoint, seconds in requests:
        out.setdefault(name, {}).setdefault(endpoint, []).append(seconds)
    return dict((name, dict((e, {'n': len(v), 'p50': common.percentile(v, 50),
                                 'p95': common.percentile(v, 95)})
                            for e, v in eps.items()))
                for name, eps in out.items())


def ratios(summary, stat):
    """enabled / absent per endpoint both kept requests of."""
    on, off = summary.get('enabled', {}), summary.get('absent', {})
    return dict((e, on[e][stat] / off[e][stat]) for e in ENDPOINTS
                if e in on and e in off)


def log_errors(reg):
    """How many ERROR and Traceback lines the registry logged, and the
    first five."""
    errors = [line for line in reg.log().splitlines()
              if 'ERROR' in line or 'Traceback' in line]
    return {'enabled_log_errors': len(errors),
            'enabled_log_error_lines': errors[:5]}


def main(argv=None):
    from tests.registry.harness import Registry, make_layer
    quick = common.quick()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--concurrency', default='1,16')
    parser.add_argument('--seconds', type=float, default=None,
                        help='per round (default: 6 at concurrency 1, 12 '
                        'above; QUICK: 3, 5)')
    parser.add_argument('--rounds', type=int, default=None,
                        help='default 2 at concurrency 1, 3 above; QUICK 1')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--code', default=None,
                        help='A/B: the second registry runs the extension '
                        'of this other checkout (ratios: this / that)')
    args = parser.parse_args(argv)
    workdir = common.workdir('online')
    regs, base = {}, {}
    for name in ('enabled', 'absent'):
        folder = os.path.join(workdir, name)
        os.makedirs(folder)
        other = name == 'absent' and args.code
        regs[name] = Registry(folder, workers=args.workers, refcount=(
            common.enabled_block(other or None) if name == 'enabled' or other
            else None),
            env={'PYTHONPATH': os.path.abspath(other or common.ROOT)})
    out = {'workers': args.workers, 'runs': {}, 'other_code': args.code}
    try:
        for name, reg in regs.items():
            reg.start()
            base[name] = push_base(sender(reg.port), make_layer('base', 4096))
        if 'refcount: enabled' not in regs['enabled'].log():
            raise RuntimeError('the extension is not on in the enabled '
                               'registry:\n' + regs['enabled'].log())
        layer = make_layer('online-bench', size=2048)
        for conc in [int(c) for c in args.concurrency.split(',')]:
            seconds = args.seconds or ((3 if quick else 6) if conc == 1
                                       else (5 if quick else 12))
            rounds = args.rounds or (1 if quick else 2 if conc == 1 else 3)
            out['runs'][str(conc)] = measure(regs, base, layer, conc,
                                             seconds, rounds)
        out.update(log_errors(regs['enabled']))
    finally:
        for reg in regs.values():
            reg.stop()
    common.save('online_ab' if args.code else 'online', out)
    common.cleanup(workdir)
    return out


if __name__ == '__main__':
    main()
