"""The A/B tool: part 2's iteration in process, counted or timed, for this
checkout's extension ("on"), none ("off") and another checkout's
(``--code DIR``: "other"; ``git worktree add DIR REV``).

Part 2 moves by about +-0.1 between runs for nothing; a change that saves a
tenth of the extension's work shows here.  Counted (default): user-space
instructions (callgrind) and system calls (strace) per iteration, the
difference of two run lengths; they repeat whatever the machine does.
``--timed``: user + system CPU per iteration (getrusage), modes alternating.

    python -m bench.instructions [--timed] [--code DIR]   (.venv27)
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import resource
import sys
import threading

try:
    from shutil import which
except ImportError:     # Python 2.7
    from distutils.spawn import find_executable as which

from . import common
from . import online

TOOLS = {'instructions': 'valgrind', 'syscalls': 'strace'}


WARMUP = 10     # iterations before a child measures (caches, imports)


def child(mode, iterations, workdir, code):
    """One measurement in this process: warm-up, then ``iterations``;
    prints CPU per iteration and which checkout's extension ran."""
    sys.path.insert(0, code)
    from tests.registry.harness import make_config, make_layer
    storage = os.path.join(workdir, 'storage')
    os.environ.update(SETTINGS_FLAVOR='local', STORAGE_PATH=storage,
                      LOGLEVEL='error', DOCKER_REGISTRY_CONFIG=make_config(
                          os.path.join(workdir, 'config.yml'),
                          common.enabled_block(code) if mode == 'on'
                          else None))
    from docker_registry import wsgi
    client = wsgi.application.test_client()

    def send(method, path, body=None, headers=None):
        r = client.open(path, method=method, data=body, headers=dict(
            headers or {}, **{'User-Agent': online.UA}))
        return r.status_code, r.data, 0
    base = online.push_base(send, make_layer('base', 4096))
    layer = make_layer('inprocess', size=2048)
    for i in range(WARMUP):
        online.one_iteration(send, base, layer, 0, i, lambda *a: None)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(iterations):
        online.one_iteration(send, base, layer, 1, i, lambda *a: None)
    after = resource.getrusage(resource.RUSAGE_SELF)
    import registry_refcount
    print(json.dumps({
        'user_ms': (after.ru_utime - before.ru_utime) * 1000 / iterations,
        'system_ms': (after.ru_stime - before.ru_stime) * 1000 / iterations,
        'images_left': len(os.listdir(os.path.join(storage, 'images'))),
        'code': os.path.dirname(os.path.dirname(os.path.abspath(
            registry_refcount.__file__)))}))


def run(mode, n, code, wrapper=()):
    """A child in a fresh process (under ``wrapper``, a tool's command
    line); its JSON and its stderr."""
    workdir = common.workdir('inprocess')
    try:
        result, err = common.run_child('instructions', [
            '--child', mode, '--iterations', n, '--workdir', workdir,
            '--code', code], wrapper)
    finally:
        common.cleanup(workdir)
    if os.path.realpath(result['code']) != os.path.realpath(code):
        raise RuntimeError('ran the extension of %s, not %s'
                           % (result['code'], code))
    return result, err


def count(kind, mode, n, code):
    """Instructions or system calls of one child of ``n`` iterations."""
    out = os.path.join(common.workdir('count'), 'tool.out')
    try:
        if kind == 'instructions':
            _, err = run(mode, n, code, ['valgrind', '--tool=callgrind',
                                         '--callgrind-out-file=' + out])
            return int(re.findall(r'Collected : (\d+)', err)[-1])
        run(mode, n, code, ['strace', '-f', '-c', '-o', out])
        with open(out) as f:
            rows = [line.split() for line in f]
        return sum(int(r[3]) for r in rows if len(r) >= 5 and
                   r[0][0].isdigit() and r[-1] != 'total')
    finally:
        common.cleanup(os.path.dirname(out))


def per_iteration(kind, mode, code, lengths):
    """The count of ``lengths[1]`` minus that of ``lengths[0]`` iterations,
    per iteration (both run at once: counts do not depend on load)."""
    got = {}
    threads = [threading.Thread(target=lambda n=n: got.__setitem__(
        n, count(kind, mode, n, code))) for n in lengths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (got[lengths[1]] - got[lengths[0]]) / float(   # KeyError: failed
        lengths[1] - lengths[0])


def counted(plan, lengths):
    kinds = [k for k in TOOLS if which(TOOLS[k])]
    modes = dict((label, dict((k, per_iteration(k, mode, code, lengths))
                              for k in kinds)) for label, mode, code in plan)
    return {'iterations': list(lengths), 'modes': modes,
            'not_counted': sorted(set(TOOLS) - set(kinds))}


def timed(plan, pairs, iterations):
    samples = dict((label, []) for label, _, _ in plan)
    for r in range(pairs):
        common.log('in process, round %d of %d' % (r + 1, pairs))
        for label, mode, code in plan:
            result = run(mode, iterations, code)[0]
            result['cpu_ms'] = result['user_ms'] + result['system_ms']
            samples[label].append(result)
    return {'iterations': iterations, 'pairs': pairs, 'runs': samples,
            'modes': dict((label, dict(
                (k, common.median([r[k] for r in runs])) for k in
                ('user_ms', 'system_ms', 'cpu_ms', 'images_left')))
                for label, runs in samples.items())}


def _ratio(value, base):
    """'1.234x', or '-' when the base is zero (a figure the off run
    does not have, such as system calls on a host without strace)."""
    return '%.3fx' % (value / base) if base else '-'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--code', help='another checkout, run as "other"')
    parser.add_argument('--timed', action='store_true')
    parser.add_argument('--lengths', default='50,150',
                        help='counted: the two run lengths (iterations)')
    parser.add_argument('--pairs', type=int, default=3)
    parser.add_argument('--iterations', type=int, default=600)
    parser.add_argument('--child', choices=('on', 'off'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--workdir', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.iterations, args.workdir, args.code)
    plan = [('off', 'off', common.ROOT), ('on', 'on', common.ROOT)]
    if args.code:
        plan.append(('other', 'on', os.path.abspath(args.code)))
    if args.timed:
        result = timed(plan, args.pairs, args.iterations)
    else:
        result = counted(plan, tuple(int(n) for n in
                                     args.lengths.split(',')))
    result['other_code'] = args.code
    off = result['modes']['off']
    keys = [k for k in off if k != 'images_left']
    for label, figures in sorted(result['modes'].items()):
        figures['added'] = dict((k, figures[k] - off[k]) for k in keys)
        common.log('%-5s per iteration: %s' % (label, ', '.join(
            '%s %.2f (%+.2f, %s off)' % (k, figures[k], v,
                                         _ratio(figures[k], off[k]))
            for k, v in sorted(figures['added'].items()))))
    common.save('inprocess' if args.timed else 'instructions', result)
    return result


if __name__ == '__main__':
    main()
