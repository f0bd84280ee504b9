"""The extension's CPU per iteration, in process: a low-noise companion
to part 2.

Part 2 at concurrency 16 measures latency on a saturated, shared machine,
where one pooled run moves by about +-0.08 for nothing (bench/NOTES.md).
A change that saves a tenth of the extension's work does not show there.
This measures the work itself: the registry's Flask app, in this process
(no HTTP, no gunicorn, so the work after the response runs at once),
on the file driver, part 2's iterations
(:func:`bench.online.one_iteration`):

    push (json, layer, checksum) on a tagged base, tag PUT, tag DELETE

and the user and system CPU per iteration from ``getrusage``.  Each mode
runs in a fresh process; the modes alternate ``--pairs`` times, and the
medians are reported.  ``--code DIR`` runs the "on" mode from another
checkout as well (an A/B of two versions: ``git worktree add DIR REV``).
``--bare`` adds a reference mode without the extension: a receiver of
``tag_deleted`` that only removes the untagged image's files and folder -
the least any collection that frees the space on a tag delete must do
(no references, no locks, no crash safety; right only for this load,
where nothing else needs the image).  What the extension adds beyond it
is the price of doing that safely.

    python -m bench.inprocess --pairs 4      (Python 2.7: .venv27)
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from . import common
from . import online


class TestConn(object):
    """The Flask test client behind :class:`bench.online.Conn`'s
    interface, so that an iteration is part 2's own
    (:func:`bench.online.one_iteration`)."""

    port = 0

    def __init__(self, client):
        self.client = client

    def request(self, method, path, body=None, headers=None):
        started = time.time()
        response = self.client.open(path, method=method, data=body,
                                    headers=headers or {})
        return response.status_code, response.data, time.time() - started


def warmup(iterations):
    """Iterations a child runs before it measures ``iterations``."""
    return max(10, iterations // 10)


def child_command(mode, iterations, workdir, code):
    """The command line of one measurement in a fresh process."""
    return [sys.executable, '-m', 'bench.inprocess', '--child', mode,
            '--iterations', str(iterations), '--workdir', workdir,
            '--code', code]


def child(mode, iterations, workdir, code):
    """One measurement, in this process (the registry's app is imported
    here, with the extension of ``code`` enabled, or absent)."""
    sys.path.insert(0, code)
    from tests.registry.harness import make_config, make_layer
    config = make_config(os.path.join(workdir, 'config.yml'), {
        'enabled': True, 'lock_dir': os.path.join(workdir, 'locks')}
        if mode == 'on' else None)
    os.environ.update(DOCKER_REGISTRY_CONFIG=config, SETTINGS_FLAVOR='local',
                      STORAGE_PATH=os.path.join(workdir, 'storage'),
                      LOGLEVEL='error')
    from docker_registry import wsgi
    if mode == 'bare':
        _connect_bare(os.environ['STORAGE_PATH'])
    conn = TestConn(wsgi.application.test_client())
    layer = make_layer('inprocess', size=2048)

    def loop(n):
        lat = dict((e, []) for e in online.ENDPOINTS)
        before, started = resource.getrusage(resource.RUSAGE_SELF), \
            time.time()
        for i in range(n):
            online.one_iteration(conn, base, layer, 0, i, lat)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {'user_ms': (after.ru_utime - before.ru_utime) * 1000 / n,
                'system_ms': (after.ru_stime - before.ru_stime) * 1000 / n,
                'wall_ms': (time.time() - started) * 1000 / n}

    base = online.new_id('inprocess-base')
    online.push_image(conn, base, None, make_layer('base', 4096))
    conn.request('PUT', '/v1/repositories/bench/base/tags/latest',
                 json.dumps(base))
    loop(warmup(iterations))
    result = loop(iterations)
    result['images_left'] = len(os.listdir(os.path.join(
        os.environ['STORAGE_PATH'], 'images')))
    import registry_refcount
    result['code'] = os.path.dirname(os.path.dirname(os.path.abspath(
        registry_refcount.__file__)))
    print(json.dumps(result))


def _connect_bare(storage):
    """The "bare" mode's receiver (module docstring): the image a tag
    named, removed file by file, nothing checked."""
    from docker_registry.lib import signals

    def on_tag_deleted(sender, image=None, **kwargs):
        folder = os.path.join(storage, 'images', image)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    signals.tag_deleted.connect(on_tag_deleted, weak=False)


def run(label, mode, iterations, code):
    workdir = common.workdir('inprocess')
    try:
        proc = subprocess.Popen(
            child_command(mode, iterations, workdir, code),
            cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
    finally:
        common.cleanup(workdir)
    if proc.returncode:
        raise RuntimeError('%s failed:\n%s' % (label, err.decode(
            'utf-8', 'replace')[-3000:]))
    result = json.loads(out.decode('utf-8').strip().splitlines()[-1])
    if os.path.realpath(result['code']) != os.path.realpath(code):
        raise RuntimeError('%s ran the extension of %s, not %s'
                           % (label, result['code'], code))
    result['cpu_ms'] = result['user_ms'] + result['system_ms']
    common.log('  %-5s user %.2f  system %.2f  cpu %.2f ms per iteration'
               % (label, result['user_ms'], result['system_ms'],
                  result['cpu_ms']))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=3)
    parser.add_argument('--iterations', type=int, default=600)
    parser.add_argument('--code', default=None,
                        help='another checkout: its extension is run too, '
                        'as "other"')
    parser.add_argument('--bare', action='store_true',
                        help='also run the "bare" reference mode (see above)')
    parser.add_argument('--out', default='inprocess')
    parser.add_argument('--child', choices=('on', 'off', 'bare'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--workdir', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.iterations, args.workdir, args.code)
    plan = [('off', 'off', common.ROOT), ('on', 'on', common.ROOT)]
    if args.bare:
        plan.insert(1, ('bare', 'bare', common.ROOT))
    if args.code:
        plan.append(('other', 'on', os.path.abspath(args.code)))
    samples = dict((label, []) for label, _, _ in plan)
    for pair in range(args.pairs):
        common.log('in process, round %d of %d' % (pair + 1, args.pairs))
        for label, mode, code in plan:
            samples[label].append(run(label, mode, args.iterations, code))
    summary = {}
    for label, runs in samples.items():
        summary[label] = dict((k, common.median([r[k] for r in runs]))
                              for k in ('user_ms', 'system_ms', 'cpu_ms',
                                        'images_left'))
    off = summary['off']
    for label in sorted(summary):
        if label == 'off':
            continue
        s = summary[label]
        common.log('%s: adds %.2f ms CPU per iteration (%.2f user), %.2fx '
                   'the registry alone' % (
                       label, s['cpu_ms'] - off['cpu_ms'],
                       s['user_ms'] - off['user_ms'],
                       s['cpu_ms'] / off['cpu_ms']))
    path = common.save(args.out, {'iterations': args.iterations,
                                  'pairs': args.pairs, 'runs': samples,
                                  'median': summary,
                                  'other_code': args.code})
    common.log('written to %s' % path)
    return summary


if __name__ == '__main__':
    main()
