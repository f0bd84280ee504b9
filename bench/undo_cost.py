"""Part 5 (issue 24): the storage work of a tag DELETE with the undo
window on, beside the same delete with it off (immediate deletion), and
the purge's work when the window has passed.  Counted like part 1
(:class:`counting.CountingStore`, a registry of N apps on one base), on
the real file driver; each delete frees one image (its base stays).
Online, the window replaces the tear-down (journal, tombstone, files,
the parent's marker) by one record; the purge does the tear-down later,
off any request's path.

    python -m bench.undo_cost [--size N] [--reps R]
"""

from __future__ import absolute_import, division, unicode_literals

import argparse
import os

from docker_registry.drivers import file as file_driver

from registry_refcount import locks
from registry_refcount import purge
from registry_refcount import records

from . import common
from .counting import CountingStore
from .flow import Flow
from .synth import Fleet, local_writer

MODES = (('immediate', 0), ('window', 3600))


def measure(size, reps, workdir):
    """``{mode: {'delete': counts, 'purge': counts}}`` (the extension's
    storage calls, medians of ``reps``)."""
    out = {}
    for mode, window in MODES:
        root = os.path.join(workdir, 'storage-' + mode)
        fleet = Fleet(local_writer(root), 'refcount')
        flow = Flow(CountingStore(file_driver.Storage(path=root)),
                    'refcount', locks.LocalLocks(os.path.join(
                        workdir, 'locks-' + mode)))
        flow.ctx = flow.ctx._replace(undo_window=window)
        fleet.grow(size)
        samples = {'delete': [], 'purge': []}
        for rep in range(-1, reps):
            n = fleet.new_app()
            flow.push_image(fleet.image(n), fleet.base)
            flow.put_tag(fleet.key(n), fleet.image(n))
            flow.store.reset()
            flow.delete_tag(fleet.key(n))
            samples['delete'].append(flow.store.snapshot('ext'))
            flow.store.reset()
            with flow.store.section('ext'):
                purge.purge(flow.ctx, now=records.now(flow.store) + window +
                            1)
            samples['purge'].append(flow.store.snapshot('ext'))
        out[mode] = dict((what, dict(
            (k, common.median([s.get(k, 0) for s in got[1:]]))
            for k in got[-1])) for what, got in samples.items())
    return out


def lines(result):
    rows = ['| tag DELETE, %s | extension ops online | bytes | purge ops '
            'later |' % 'mode', '| --- | --- | --- | --- |']
    for mode, _ in MODES:
        r = result[mode]
        rows.append('| %s | %d | %d | %d |' % (
            mode, r['delete']['ops'], r['delete']['bytes'],
            r['purge']['ops']))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=100)
    parser.add_argument('--reps', type=int, default=1 if common.quick()
                        else 5)
    args = parser.parse_args(argv)
    workdir = common.workdir('undo_cost')
    result = measure(args.size, args.reps, workdir)
    common.save('undo_cost', {'size': args.size, 'reps': args.reps,
                              'results': result})
    common.cleanup(workdir)
    for row in lines(result):
        print(row)
    return result


if __name__ == '__main__':
    common.quiet_logs()
    main()
