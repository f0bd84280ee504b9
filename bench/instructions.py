"""The extension's work per iteration, counted rather than timed.

Part 2 at concurrency 16 is a CPU race on a shared two-core machine: a
pooled run moves by about +-0.08 for nothing, and :mod:`bench.inprocess`'s
CPU seconds still move by a tenth of a millisecond between rounds - more
than most single changes to the request path save.  This counts instead,
in process (:func:`bench.inprocess.child`: the registry's Flask app, part
2's iterations, file storage), and the counts come out the same whatever
else the machine is doing (instructions to within 0.1%; system calls to
within a few, as the spare files' refills fall on different iterations):

* user-space **instructions** per iteration, from valgrind's callgrind
  (the interpreter's own, all of it: the registry, Flask, the extension);
* **system calls** per iteration, by name, from ``strace -f -c``.

Each figure is the difference of two runs of different lengths, so the
start-up (imports, the base image) cancels out.  A mode's count minus the
"off" mode's (the extension absent) is what the extension adds.

    python -m bench.instructions                 (Python 2.7: .venv27)
    python -m bench.instructions --code DIR      (also another checkout's
                                                  extension, as "other")

Modes whose tool is missing (no valgrind, no strace) are reported as not
counted, never guessed.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import re
import subprocess
import tempfile
import threading
from distutils.spawn import find_executable

from . import common
from . import inprocess

#: The two run lengths (iterations after the warm-up; see inprocess.child).
SHORT, LONG = 50, 150


def _iterations(n):
    """Iterations a child runs for ``--iterations n`` (its warm-up too)."""
    return n + inprocess.warmup(n)


def _run(wrapper, mode, n, code):
    """Run one child under ``wrapper(out_path)``; returns the tool's output
    file's text."""
    workdir = tempfile.mkdtemp(prefix='refcount-count-')
    out = os.path.join(workdir, 'tool.out')
    try:
        with open(os.devnull, 'w') as devnull:
            proc = subprocess.Popen(
                wrapper(out) + inprocess.child_command(mode, n, workdir,
                                                       code),
                cwd=code, stdout=devnull, stderr=subprocess.PIPE)
            _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError('%s (%d iterations) failed:\n%s' % (
                mode, n, err.decode('utf-8', 'replace')[-2000:]))
        with open(out) as f:
            return f.read(), err.decode('utf-8', 'replace')
    finally:
        common.cleanup(workdir)


def instructions(mode, n, code):
    """Total user-space instructions of one child (callgrind)."""
    _, err = _run(lambda out: ['valgrind', '--tool=callgrind',
                               '--callgrind-out-file=' + out], mode, n, code)
    found = re.findall(r'Collected : (\d+)', err)
    if not found:
        raise RuntimeError('callgrind reported no total:\n' + err[-2000:])
    return int(found[-1])


def syscalls(mode, n, code):
    """``{name: calls}`` of one child (strace -f -c)."""
    text, _ = _run(lambda out: ['strace', '-f', '-c', '-o', out],
                   mode, n, code)
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if (len(parts) >= 5 and parts[0][0].isdigit() and
                parts[-1] != 'total'):
            counts[parts[-1]] = int(parts[3])
    return counts


def per_iteration(count, mode, code, lengths=(SHORT, LONG)):
    """Count per iteration of ``count(mode, n, code)``: two lengths run at
    once (the counts do not depend on the machine's load), differenced."""
    short_n, long_n = lengths
    results = {}

    def one(n):
        results[n] = count(mode, n, code)

    threads = [threading.Thread(target=one, args=(n,)) for n in lengths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(results) != 2:
        raise RuntimeError('a %s count of %s failed'
                           % (count.__name__, mode))
    span = _iterations(long_n) - _iterations(short_n)
    short, long_ = results[short_n], results[long_n]
    if isinstance(short, dict):
        return dict((k, (long_.get(k, 0) - short.get(k, 0)) / span)
                    for k in set(short) | set(long_))
    return (long_ - short) / span


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--code', default=None,
                        help='another checkout: its extension is counted '
                        'too, as "other"')
    parser.add_argument('--out', default='instructions')
    parser.add_argument('--lengths', default='%d,%d' % (SHORT, LONG),
                        help='the two run lengths (iterations)')
    args = parser.parse_args(argv)
    lengths = tuple(int(n) for n in args.lengths.split(','))
    plan = [('off', 'off', common.ROOT), ('on', 'on', common.ROOT)]
    if args.code:
        plan.append(('other', 'on', os.path.abspath(args.code)))
    tools = {'instructions': find_executable('valgrind'),
             'syscalls': find_executable('strace')}
    result = {'iterations': list(lengths), 'other_code': args.code,
              'not_counted': sorted(k for k, v in tools.items() if not v),
              'modes': {}}
    for label, mode, code in plan:
        entry = result['modes'][label] = {}
        if tools['instructions']:
            entry['instructions'] = per_iteration(instructions, mode, code,
                                                  lengths)
        if tools['syscalls']:
            calls = per_iteration(syscalls, mode, code, lengths)
            entry['syscalls'] = sum(calls.values())
            entry['syscalls_by_name'] = dict(
                (k, round(v, 2)) for k, v in calls.items() if v)
        common.log('  %-5s %s' % (label, ', '.join(
            '%s %.0f' % (k, entry[k]) for k in ('instructions', 'syscalls')
            if k in entry)))
    off = result['modes']['off']
    for label, entry in sorted(result['modes'].items()):
        if label == 'off':
            continue
        added = entry['added'] = {}
        for k in ('instructions', 'syscalls'):
            if k in entry and k in off:
                added[k] = entry[k] - off[k]
                added[k + '_ratio'] = entry[k] / off[k]
        common.log('%s adds per iteration: %s' % (label, ', '.join(
            '%s %+.0f (%.3fx)' % (k, added[k], added[k + '_ratio'])
            for k in ('instructions', 'syscalls') if k in added)))
    for k in result['not_counted']:
        common.log('not counted: %s (%s not found)' % (
            k, 'valgrind' if k == 'instructions' else 'strace'))
    path = common.save(args.out, result)
    common.log('written to %s' % path)
    return result


if __name__ == '__main__':
    main()
