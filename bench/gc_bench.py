"""Part 3 (goal 3): the gc sweep's speed against the storage limit (the
reads any mark must make, nothing else) and its memory per image, on
synthetic registries of 10 000 and 100 000 images, each measurement in a
fresh Python 2.7 process (the CLI's runtime); then a deleting sweep.

    python -m bench.gc_bench [--sizes 10000,100000] [--jobs 8]
"""

from __future__ import absolute_import, division, unicode_literals

import argparse
import json
import os
import sys
import time

from . import common

GRACE = 86400


def child(kind, root, jobs):
    """Runs in a fresh interpreter; prints one JSON line."""
    import gc
    __import__('multiprocessing.pool')    # the sweep's pool imports it
    from docker_registry.drivers import file as file_driver
    from registry_refcount import layout, locks, protocols, records, sweep
    from registry_refcount import truth
    common.quiet_logs()
    gc.collect()
    out = {'rss_start_kib': common.rss_kib()}
    store = file_driver.Storage(path=root)
    started = time.time()
    if kind == 'limit':
        keys = truth.list_tags(store)
        truth.pool_map(lambda k: len(records.read_file(
            store, layout.tag_file(k))), keys, jobs)
        ids = [i for i in records.listing(store, layout.IMAGES)
               if layout.valid_id(i)]
        truth.pool_map(lambda i: len(records.read_file(
            store, layout.image_file(i, 'ancestry'))), ids, jobs)
    else:
        ctx = protocols.context(store, locks.LocalLocks(root + '-locks'),
                                by='gc')
        rep = sweep.sweep(ctx, GRACE, jobs=jobs, now=time.time() + (
            2 * GRACE if kind == 'delete' else 0))
        out.update(candidates=rep['candidates'], deleted=len(rep['deleted']),
                   errors=rep['errors'][:5])
    out.update(seconds=time.time() - started,
               rss_peak_kib=common.rss_kib('VmHWM'))
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
    os._exit(0)     # the pools' daemon threads make noise at shutdown


def run_child(kind, root, jobs):
    return common.run_child('gc_bench', ['--child', kind, '--root', root,
                                         '--jobs', jobs])[0]


def bench_size(images, jobs, rounds, workdir):
    from .synth import gc_registry, local_writer
    root = os.path.join(workdir, 'storage-%d' % images)
    started = time.time()
    registry = gc_registry(local_writer(root), images)
    common.log('part 3: %(images)d images, %(tags)d tags, %(unreachable)d '
               'unreachable' % registry, 'written in %.1fs'
               % (time.time() - started))
    run_child('limit', root, jobs)      # warms the page cache
    runs = {'limit': [], 'sweep': []}
    for r in range(rounds):
        for kind in ('limit', 'sweep')[::-1 if r % 2 else 1]:
            runs[kind].append(run_child(kind, root, jobs))
            common.log('  %s: %.2fs, peak RSS %d KiB' % (
                kind, runs[kind][-1]['seconds'],
                runs[kind][-1]['rss_peak_kib']))
    out = {'registry': registry, 'runs': runs,
           'deleting_sweep': run_child('delete', root, jobs)}
    common.cleanup(root)
    n = registry['images']
    for kind, results in runs.items():
        out[kind + '_seconds'] = common.median([x['seconds'] for x in results])
        out[kind + '_bytes_per_image'] = max(
            (x['rss_peak_kib'] - x['rss_start_kib']) * 1024.0 / n
            for x in results)
    out['ratio_to_limit'] = out['limit_seconds'] / out['sweep_seconds']
    out['sweep_rss_kib'] = [min(x['rss_start_kib'] for x in runs['sweep']),
                            max(x['rss_peak_kib'] for x in runs['sweep'])]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='10000' if common.quick() else
                        '10000,100000')
    parser.add_argument('--jobs', type=int, default=8)
    parser.add_argument('--rounds', type=int,
                        default=1 if common.quick() else 3)
    parser.add_argument('--child', choices=('limit', 'sweep', 'delete'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--root', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.root, args.jobs)
    workdir = common.workdir('gc')
    try:
        out = {'jobs': args.jobs, 'rounds': args.rounds, 'results': dict(
            (size, bench_size(int(size), args.jobs, args.rounds, workdir))
            for size in args.sizes.split(','))}
    finally:
        common.cleanup(workdir)
    common.save('gc', out)
    return out


if __name__ == '__main__':
    common.quiet_logs()
    main()
