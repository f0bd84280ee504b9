"""Part 3: the gc sweep against the storage limit.

A registry of M images (10 000 and 100 000) is written straight to the
real file driver's storage (:func:`bench.synth.gc_registry`: shared base
images, chains of 4 images on them, one tag per chain, 5 % of the chains
untagged, the extension's records consistent).  Then, alternating, each in
a fresh Python 2.7 process (the CLI's runtime):

* **limit**: list the tags and the images, read every tag file and every
  image's ``ancestry`` with ``truth.pool_map`` at the same parallelism as
  the sweep (``jobs``), nothing else - the I/O any mark phase must do -
  and each file the way the sweep reads it (``records.read_file``: one
  ``open`` on local storage, the driver behind the counting proxy);
* **sweep**: ``registry_refcount.sweep.sweep(ctx, grace_period=86400)``,
  the real thing (not a dry run): the unreachable images are recorded as
  candidates, none is old enough to delete - the daily steady state;

and once at the end a **deleting sweep** (``now`` two days later): the
candidates are deleted through the delete protocol.

Each child process reports its seconds, its RSS after the imports (all
the sweep imports, ``multiprocessing.pool`` included, which it would
otherwise import lazily) and its peak RSS (``VmHWM``, over the whole
sweep); memory per image is (peak - after imports) / M.  A
separate run of each behind the counting proxy counts storage operations.

    python -m bench.gc_bench [--sizes 10000,100000] [--jobs 8]
"""

from __future__ import absolute_import, division, unicode_literals

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from . import common

GRACE = 86400


def child(args):
    """Runs in a fresh interpreter; prints one JSON line."""
    import gc as _gc
    # the sweep's thread pool (truth.workers) imports this on first use:
    # a fixed cost of the interpreter, not of the images
    import multiprocessing.pool  # noqa
    from docker_registry.drivers import file as file_driver
    from registry_refcount import layout, locks, protocols, records, sweep
    from registry_refcount import truth
    from .counting import CountingStore, Meter
    common.quiet_logs()
    _gc.collect()
    rss0 = common.rss_kib()
    store = file_driver.Storage(path=args.root)
    meter = None
    if args.count:
        meter = Meter()
        store = CountingStore(store, meter)
    started = time.time()
    out = {}
    if args.child == 'limit':
        keys = truth.list_tags(store)
        truth.pool_map(lambda k: len(records.read_file(
            store, layout.tag_file(k))), keys, args.jobs)
        ids = [i for i in records.listing(store, layout.IMAGES)
               if layout.valid_id(i)]
        truth.pool_map(lambda i: len(records.read_file(
            store, layout.image_file(i, 'ancestry'))), ids, args.jobs)
        out.update(tags=len(keys), images=len(ids))
    else:
        lock_provider = locks.LocalLocks(args.locks, timeout=30)
        ctx = protocols.context(store, lock_provider, by='gc')
        now = time.time() + (2 * GRACE if args.child == 'sweep-delete'
                             else 0)
        rep = sweep.sweep(ctx, GRACE, jobs=args.jobs, now=now)
        out.update(tags=rep['tags'], images=rep['images'],
                   reachable=rep['reachable'],
                   candidates=rep['candidates'],
                   deleted=len(rep['deleted']), errors=rep['errors'][:5],
                   repaired=len(rep['repaired']))
    out['seconds'] = time.time() - started
    out['rss_start_kib'] = rss0
    out['rss_peak_kib'] = common.peak_rss_kib()
    if meter is not None:
        out['storage'] = meter.snapshot()
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
    # the pools' daemon threads make noise at interpreter shutdown
    os._exit(0)


def run_child(kind, root, locks_dir, jobs, count=False):
    cmd = [sys.executable, '-m', 'bench.gc_bench', '--child', kind,
           '--root', root, '--locks', locks_dir, '--jobs', str(jobs)]
    if count:
        cmd.append('--count')
    out = subprocess.check_output(cmd, cwd=common.ROOT)
    return json.loads(out.decode('utf-8').strip().splitlines()[-1])


def baseline_rss(jobs):
    """RSS of a child that imports everything and does nothing (the
    interpreter and the modules)."""
    cmd = [sys.executable, '-c', 'import bench.gc_bench as g, bench.common '
           'as c, multiprocessing.pool; from registry_refcount import sweep, '
           'truth; print(c.rss_kib())']
    return int(subprocess.check_output(cmd, cwd=common.ROOT).decode()
               .strip().splitlines()[-1])


def bench_size(images, jobs, rounds, workdir):
    from .synth import LocalWriter, gc_registry
    root = os.path.join(workdir, 'storage-%d' % images)
    locks_dir = os.path.join(workdir, 'locks-%d' % images)
    if os.path.exists(root):
        shutil.rmtree(root)
    started = time.time()
    summary = gc_registry(LocalWriter(root), images)
    build = time.time() - started
    common.log('part 3: %d images written in %.1fs (%d tags, %d '
               'unreachable)' % (summary['images'], build, summary['tags'],
                                 summary['unreachable']))
    run_child('limit', root, locks_dir, jobs)      # warm the page cache
    limits, sweeps = [], []
    for r in range(rounds):
        pair = [('limit', limits), ('sweep', sweeps)]
        if r % 2:
            pair.reverse()
        for kind, sink in pair:
            res = run_child(kind, root, locks_dir, jobs)
            sink.append(res)
            common.log('  %s: %.2fs, peak RSS %d KiB' % (
                kind, res['seconds'], res['rss_peak_kib']))
    counted = {'limit': run_child('limit', root, locks_dir, jobs, True),
               'sweep': run_child('sweep', root, locks_dir, jobs, True)}
    deleting = run_child('sweep-delete', root, locks_dir, jobs)
    common.log('  deleting sweep: %.2fs, %d deleted' % (
        deleting['seconds'], deleting['deleted']))
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(locks_dir, ignore_errors=True)
    limit_s = common.median([x['seconds'] for x in limits])
    sweep_s = common.median([x['seconds'] for x in sweeps])
    n = summary['images']
    return {
        'registry': summary, 'build_seconds': build, 'jobs': jobs,
        'limit': limits, 'sweep': sweeps, 'deleting_sweep': deleting,
        'counted': counted,
        'limit_seconds': limit_s, 'sweep_seconds': sweep_s,
        'limit_images_per_second': n / limit_s,
        'sweep_images_per_second': n / sweep_s,
        'ratio_to_limit': limit_s / sweep_s,
        'sweep_peak_rss_kib': max(x['rss_peak_kib'] for x in sweeps),
        'sweep_rss_start_kib': min(x['rss_start_kib'] for x in sweeps),
        'bytes_per_image': max(
            (x['rss_peak_kib'] - x['rss_start_kib']) * 1024.0 / n
            for x in sweeps),
        'limit_bytes_per_image': max(
            (x['rss_peak_kib'] - x['rss_start_kib']) * 1024.0 / n
            for x in limits),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default=None,
                        help='default 10000,100000 (QUICK: 10000)')
    parser.add_argument('--jobs', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=None)
    parser.add_argument('--out', default='gc')
    parser.add_argument('--child', default=None)
    parser.add_argument('--root')
    parser.add_argument('--locks')
    parser.add_argument('--count', action='store_true')
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    quick = common.quick()
    sizes = [int(s) for s in (args.sizes or
                              ('10000' if quick else '10000,100000'))
             .split(',')]
    rounds = args.rounds or (1 if quick else 3)
    workdir = common.workdir('gc')
    try:
        from registry_refcount import sweep  # noqa
    except ImportError as e:
        out = {'skipped': 'registry_refcount.sweep is missing (%s)' % e}
        common.save(args.out, out)
        return out
    out = {'sizes': sizes, 'rounds': rounds, 'jobs': args.jobs,
           'interpreter_rss_kib': baseline_rss(args.jobs), 'results': {}}
    try:
        for size in sizes:
            out['results'][str(size)] = bench_size(size, args.jobs, rounds,
                                                   workdir)
    finally:
        common.cleanup(workdir)
    path = common.save(args.out, out)
    common.log('part 3 written to %s' % path)
    return out


if __name__ == '__main__':
    common.quiet_logs()
    main()
