"""Part 1 (goal 1): the storage work of one push and one tag delete vs
registry size N, this extension against the per-tag-list baseline, on the
real file and S3 drivers, counted through :class:`counting.CountingStore`
(bench/NOTES.md says how).  The two designs' registries grow together and
their operations alternate.

    python -m bench.storage_cost [--backends file,s3] [--sizes 10,100,...]
"""

from __future__ import absolute_import, division, unicode_literals

import argparse
import os
import sys
import time

from docker_registry.drivers import file as file_driver

from registry_refcount import locks

from . import common
from .counting import CountingStore
from .flow import Flow
from .synth import Fleet, local_writer, store_writer

DESIGNS = ('refcount', 'baseline')


def push(flow, fleet):
    n = fleet.new_app()
    flow.push_image(fleet.image(n), fleet.base)
    flow.put_tag(fleet.key(n), fleet.image(n))
    fleet.live.append(n)


def delete(flow, fleet):
    flow.delete_tag(fleet.key(fleet.live.pop(0)))


def measure(backend, sizes, reps, workdir):
    """``{design: {N: {'push'|'delete': {'ext'|'registry': counts}}}}``:
    medians of ``reps`` repetitions, after one warm-up of each."""
    fleets, flows = {}, {}
    for design in DESIGNS:
        store, writer = backend(design)
        fleets[design] = Fleet(writer, design)
        flows[design] = Flow(CountingStore(store), design, locks.LocalLocks(
            os.path.join(workdir, 'locks-' + design)))
    results = dict((d, {}) for d in DESIGNS)
    for size in sizes:
        samples = dict(((d, op), []) for d in DESIGNS for op in (push, delete))
        for design in DESIGNS:
            started = time.time()
            fleets[design].grow(size)
            common.log('  %s grown to N=%d in %.1fs'
                       % (design, size, time.time() - started))
        for rep in range(-1, reps):
            for op in (push, delete):
                for design in DESIGNS[::1 if rep % 2 else -1]:
                    flows[design].store.reset()
                    op(flows[design], fleets[design])
                    samples[design, op].append(dict(
                        (section, flows[design].store.snapshot(section))
                        for section in ('ext', 'registry')))
        for design in DESIGNS:
            results[design][size] = dict((op.__name__, dict(
                (section, dict((k, common.median(
                    [s[section].get(k, 0) for s in samples[design, op][1:]]))
                    for k in samples[design, op][-1][section]))
                for section in ('ext', 'registry'))) for op in (push, delete))
    return results


def main(argv=None):
    quick = common.quick()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backends', default='file,s3')
    parser.add_argument('--sizes', default='10,100,1000,10000')
    parser.add_argument('--s3-sizes', default='10,100' if quick else
                        '10,100,1000', help='S3 stops at 1 000 (NOTES.md)')
    parser.add_argument('--reps', type=int, default=1 if quick else 3)
    args = parser.parse_args(argv)
    workdir = common.workdir('storage_cost')
    out = {'reps': args.reps, 'backends': {}}
    for name in args.backends.split(','):
        common.log('part 1 on %s' % name)
        moto = None
        if name == 's3':
            from tests import services
            moto = services.MotoServer(os.path.join(workdir, 'moto'))
            moto.start()

        def backend(design):
            """(driver, writer) of one design's registry."""
            if moto is None:
                root = os.path.join(workdir, 'storage-' + design)
                return file_driver.Storage(path=root), local_writer(root)
            store = services.s3_store(moto.env(moto.new_bucket(
                'bench-' + design)))
            return store, store_writer(store)
        sizes = [int(s) for s in (args.s3_sizes if moto else
                                  args.sizes).split(',')]
        try:
            out['backends'][name] = {'sizes': sizes, 'results': measure(
                backend, sizes, args.reps, os.path.join(workdir, name))}
        finally:
            if moto:
                moto.stop()
    common.save('storage_cost', out)
    common.cleanup(workdir)
    return out


if __name__ == '__main__':
    common.quiet_logs()
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)     # the pools' daemon threads make noise at shutdown
