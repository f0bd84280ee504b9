"""Part 1: cost of one tag push and one tag delete vs registry size.

N tags, each on its own image, all built on one shared base image (N = 10,
100, 1 000, 10 000).  For this extension (``refcount``) and for the
per-tag-list baseline (``baseline``), one more push (image json with
``parent = base``, layer, checksum, then the tag PUT) and one tag delete
(which deletes the image the tag named), through the registry's request
flow (:mod:`bench.flow`) on the real storage driver:

* **counted** repetitions run behind :class:`bench.counting.CountingStore`
  (operations and bytes per call kind; the extension's own work is section
  ``ext``, the registry's own work section ``registry``); on S3 the wire
  relay also counts HTTP requests and bytes on the wire;
* **timed** repetitions run on the bare driver (the production code path)
  and time the ``ext`` section and the whole request flow.

The two designs' registries grow together and their operations alternate,
so that noise on the machine hits both alike.

    python -m bench.storage_cost [--backends file,s3] [--sizes 10,100,...]
"""

from __future__ import absolute_import, division, unicode_literals

import argparse
import os
import shutil
import sys
import time

from docker_registry.drivers import file as file_driver

from registry_refcount import locks

from . import common
from .counting import CountingStore, Meter
from .flow import Flow
from .synth import DriverWriter, Fleet, LocalWriter

DESIGNS = ('refcount', 'baseline')


class FileBackend(object):
    name = 'file'

    def __init__(self, workdir, design):
        self.root = os.path.join(workdir, 'storage-%s' % design)
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        self.store = file_driver.Storage(path=self.root)
        self.setup_store = self.store
        self.writer = LocalWriter(self.root)
        self.relay = None

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


class S3Backend(object):
    name = 's3'

    def __init__(self, moto, relay, design):
        from tests import services
        bucket = moto.new_bucket('bench-%s' % design)
        env = moto.env(bucket)
        self.setup_store = services.s3_store(env)
        measured = dict(env, AWS_PORT=str(relay.port))
        self.store = services.s3_store(measured)
        self.writer = DriverWriter(lambda: services.s3_store(env), jobs=8)
        self.relay = relay

    def close(self):
        pass


def find_moto():
    """tests/services.py's MotoServer, if the S3 fixture is there."""
    try:
        from tests import services
    except ImportError as e:
        return None, 'tests/services.py not importable (%s)' % e
    if not hasattr(services, 'MotoServer'):
        return None, 'tests/services.py has no MotoServer'
    if not os.path.exists(services.MOTO_SERVER):
        return None, '%s missing (make setup)' % services.MOTO_SERVER
    return services, None


def one_push(flow, fleet):
    n = fleet.new_app()
    flow.push_image(fleet.image(n), fleet.base)
    flow.put_tag(fleet.key(n), fleet.image(n))
    fleet.live.append(n)


def one_delete(flow, fleet):
    victim = fleet.live.pop(0)
    flow.delete_tag(fleet.key(victim))


OPERATIONS = (('push', one_push), ('delete', one_delete))


def measure(backends, sizes, counted, timed, lock_root):
    """``{design: {N: {op: {...}}}}``"""
    state = {}
    for design in DESIGNS:
        b = backends[design]
        meter = Meter(probe=b.relay.snapshot if b.relay else None)
        lock_provider = locks.LocalLocks(os.path.join(lock_root, design),
                                         timeout=30)
        counting = CountingStore(b.store, meter)
        state[design] = {
            'backend': b, 'meter': meter,
            'fleet': Fleet(b.writer, design, store=b.setup_store),
            'counted_flow': Flow(counting, design, lock_provider, meter),
            'timed_meter': Meter(),
        }
        state[design]['timed_flow'] = Flow(b.store, design, lock_provider,
                                           state[design]['timed_meter'])
    results = dict((d, {}) for d in DESIGNS)
    for size in sizes:
        for design in DESIGNS:
            started = time.time()
            state[design]['fleet'].grow(size)
            common.log('  %s: %s grown to N=%d in %.1fs' % (
                backends[design].name, design, size, time.time() - started))
            # warm-up (caches the initialised flag, opens connections)
            for _, op in OPERATIONS:
                op(state[design]['counted_flow'], state[design]['fleet'])
                op(state[design]['timed_flow'], state[design]['fleet'])
        samples = dict((d, dict((name, {'counted': [], 'timed': []})
                                for name, _ in OPERATIONS)) for d in DESIGNS)
        for rep in range(counted + timed):
            kind = 'counted' if rep < counted else 'timed'
            order = DESIGNS if rep % 2 == 0 else DESIGNS[::-1]
            for name, op in OPERATIONS:
                for design in order:
                    s = state[design]
                    meter = s['meter'] if kind == 'counted' else \
                        s['timed_meter']
                    meter.reset()
                    with meter.in_section('registry'):
                        op(s['%s_flow' % kind], s['fleet'])
                    samples[design][name][kind].append({
                        'ext': meter.snapshot('ext'),
                        'registry': meter.snapshot('registry'),
                        'hooks': dict((h[4:], meter.snapshot(h))
                                      for h in meter.sections()
                                      if h.startswith('ext.'))})
        for design in DESIGNS:
            assert len(state[design]['fleet'].live) == size
            results[design][size] = dict(
                (name, summarise(samples[design][name]))
                for name, _ in OPERATIONS)
        r, b = results['refcount'][size], results['baseline'][size]
        common.log('  N=%-6d push ext ops %s/%s bytes %s/%s; delete ext ops '
                   '%s/%s bytes %s/%s (refcount/baseline)' % (
                       size, r['push']['ext']['ops'],
                       b['push']['ext']['ops'], r['push']['ext']['bytes'],
                       b['push']['ext']['bytes'], r['delete']['ext']['ops'],
                       b['delete']['ext']['ops'],
                       r['delete']['ext']['bytes'],
                       b['delete']['ext']['bytes']))
    return results


def summarise(samples):
    """Medians of the counted figures, medians of the timed seconds."""
    out = {}
    counted = samples['counted']
    for section in ('ext', 'registry'):
        keys = set()
        for s in counted:
            keys.update(s[section])
        out[section] = dict(
            (k, common.median([s[section].get(k, 0) for s in counted]))
            for k in sorted(keys) if k != 'seconds')
        out[section]['ops_min'] = min(s[section]['ops'] for s in counted)
        out[section]['ops_max'] = max(s[section]['ops'] for s in counted)
    timed = samples['timed']
    ext = [s['ext']['seconds'] for s in timed]
    total = [s['ext']['seconds'] + s['registry']['seconds'] for s in timed]
    out['seconds_ext'] = common.median(ext)
    out['seconds_ext_p90'] = common.percentile(ext, 90)
    out['seconds_total'] = common.median(total)
    hooks = {}
    for s in counted:
        for h in s['hooks']:
            hooks.setdefault(h, {})
    for h in hooks:
        for k in ('ops', 'bytes', 'get', 'put', 'exists', 'list', 'remove',
                  'size', 'requests', 'wire_bytes'):
            values = [s['hooks'][h].get(k) for s in counted
                      if h in s['hooks'] and k in s['hooks'][h]]
            if values:
                hooks[h][k] = common.median(values)
        hooks[h]['seconds'] = common.median(
            [s['hooks'][h]['seconds'] for s in timed if h in s['hooks']])
    out['hooks'] = hooks
    out['samples'] = {'counted': len(counted), 'timed': len(timed)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backends', default='file,s3')
    parser.add_argument('--sizes', default=None,
                        help='default 10,100,1000,10000')
    parser.add_argument('--s3-sizes', default=None,
                        help='default: the same as --sizes')
    parser.add_argument('--counted', type=int, default=3)
    parser.add_argument('--timed', type=int, default=None)
    parser.add_argument('--out', default='storage_cost')
    args = parser.parse_args(argv)
    quick = common.quick()
    sizes = [int(s) for s in (args.sizes or '10,100,1000,10000').split(',')]
    s3_sizes = ([int(s) for s in args.s3_sizes.split(',')]
                if args.s3_sizes else sizes)
    timed = args.timed if args.timed is not None else (5 if quick else 15)
    workdir = common.workdir('storage_cost')
    out = {'sizes': sizes, 'counted_reps': args.counted,
           'timed_reps': timed, 'backends': {}, 'skipped': {}}
    for backend in args.backends.split(','):
        started = time.time()
        common.log('part 1 on %s' % backend)
        if backend == 'file':
            backends = dict((d, FileBackend(workdir, d)) for d in DESIGNS)
            try:
                res = measure(backends, sizes, args.counted, timed,
                              os.path.join(workdir, 'locks-file'))
            finally:
                for b in backends.values():
                    b.close()
            out['backends']['file'] = {'sizes': sizes, 'results': res}
        elif backend == 's3':
            services, why = find_moto()
            if services is None:
                common.log('  S3 skipped: %s' % why)
                out['skipped']['s3'] = why
                continue
            from .wire import Relay
            moto = services.MotoServer(os.path.join(workdir, 'moto'))
            moto.start()
            relay = Relay(moto.port)
            try:
                backends = dict((d, S3Backend(moto, relay, d))
                                for d in DESIGNS)
                res = measure(backends, s3_sizes, args.counted,
                              max(1 if quick else 2, timed // 3),
                              os.path.join(workdir, 'locks-s3'))
                out['backends']['s3'] = {'sizes': s3_sizes, 'results': res}
            finally:
                relay.close()
                moto.stop()
        else:
            raise SystemExit('unknown backend %r' % backend)
        out.setdefault('elapsed', {})[backend] = time.time() - started
    path = common.save(args.out, out)
    common.log('part 1 written to %s' % path)
    common.cleanup(workdir)
    return out


if __name__ == '__main__':
    common.quiet_logs()
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)     # the pools' daemon threads make noise at shutdown
