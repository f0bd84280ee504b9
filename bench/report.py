"""Turn ``bench/results/*.json`` of one run into ``bench/RESULTS.md`` and
the PNG plots (Python 3 with matplotlib: ``.venv3``).

    python -m bench.report --command "make bench" --seconds 812
"""

from __future__ import absolute_import, division, print_function

import argparse
import functools
import io
import json
import os

from .online import TIMED

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'results')
TOLERANCE = 0.10      # part 1: constant within +-10 %
BYTES_GOAL = 100.0    # part 1: >= 100x fewer bytes at the largest N
P50_GOAL = 1.25       # part 2
GC_GOAL = 0.5         # part 3: >= 0.5x the storage limit
RSS_GOAL = 300.0      # part 3: bytes per image


def load(name):
    path = os.path.join(RESULTS, name + '.json')
    if not os.path.exists(path):
        return None
    with io.open(path, encoding='utf-8') as f:
        return json.load(f)


def kb(n):
    if n is None:
        return '-'
    if n >= 10 * 1024 * 1024:
        return '%.0f MiB' % (n / 1048576.0)
    if n >= 1024 * 1024:
        return '%.2f MiB' % (n / 1048576.0)
    if n >= 10 * 1024:
        return '%.0f KiB' % (n / 1024.0)
    if n >= 1024:
        return '%.1f KiB' % (n / 1024.0)
    return '%d B' % n


def ms(s):
    return '-' if s is None else '%.2f ms' % (s * 1000.0)


def num(n):
    return '-' if n is None else '{:,.0f}'.format(n)


def ratio(a, b):
    return None if not a or b is None else b / a


def yes(ok):
    if ok is None:
        return 'information only'
    if isinstance(ok, str):
        return ok
    return '**met**' if ok else '**not met**'


def information(test, ok, why):
    """The verdict of a figure shown beside a goal but not judged by it:
    whether it passes ``test``, and ``why`` that does not count."""
    return '%s: %s (information: %s)' % (test, 'yes' if ok else '**no**',
                                         why)


def table(head, rows):
    out = ['| ' + ' | '.join(head) + ' |',
           '|' + '|'.join(' --- ' for _ in head) + '|']
    for row in rows:
        out.append('| ' + ' | '.join('%s' % c for c in row) + ' |')
    return '\n'.join(out)


def section(title):
    """A part of the report: its heading, then its body - or ``_not run_``
    when the part's results are missing."""
    def wrap(fn):
        @functools.wraps(fn)
        def part(data, lines, goals, plots):
            lines.append('## %s\n' % title)
            if not data:
                lines.append('_not run_\n')
                return None
            return fn(data, lines, goals, plots)
        return part
    return wrap


# -- part 1 ------------------------------------------------------------------

@section('1. Cost of one push and one delete vs registry size')
def part1(data, lines, goals, plots):
    lines.append(
        'N tags, each on its own image, on one shared base image.  "push" '
        '= image json (parent = base), layer, checksum, then the tag PUT; '
        '"delete" = tag DELETE (which deletes the image).  **ext** = the '
        'storage work of this extension (`refcount`) or of the per-tag-list '
        'baseline (`baseline`) only; the registry\'s own work for the same '
        'requests is shown once (it is the same for both).  Operations = '
        'get + put + exists + list + remove + size + stream calls on the '
        'driver; bytes = content read + written (+ names yielded by '
        'listings).  Counted over %d repetitions (medians; refcount\'s '
        'counts are identical across repetitions), seconds = median of %d '
        'timed repetitions on the bare driver.\n'
        % (data['counted_reps'], data['timed_reps']))
    for backend in ('file', 's3'):
        if backend not in data['backends']:
            if backend in data.get('skipped', {}):
                lines.append('### S3: skipped (%s)\n'
                             % data['skipped'][backend])
            continue
        res = data['backends'][backend]['results']
        sizes = data['backends'][backend]['sizes']
        title = {'file': 'real file driver (`docker_registry.drivers.file`)',
                 's3': 'real S3 driver (`docker_registry.drivers.s3`, boto '
                       '2.34) against moto\'s S3 server on 127.0.0.1'}
        lines.append('### %s\n' % title[backend])
        rows = []
        for n in sizes:
            r = res['refcount'][str(n)]
            b = res['baseline'][str(n)]
            row = [num(n)]
            for op in ('push', 'delete'):
                row += ['%d / %s' % (r[op]['ext']['ops'],
                                     kb(r[op]['ext']['bytes'])),
                        '%d / %s' % (b[op]['ext']['ops'],
                                     kb(b[op]['ext']['bytes'])),
                        '%.0f×' % (b[op]['ext']['bytes'] /
                                   r[op]['ext']['bytes'])]
            rows.append(row)
        lines.append(table(
            ['N', 'push: refcount ops / bytes', 'push: baseline',
             'push: bytes ratio', 'delete: refcount', 'delete: baseline',
             'delete: bytes ratio'], rows) + '\n')
        rows = []
        for n in sizes:
            r = res['refcount'][str(n)]
            b = res['baseline'][str(n)]
            rows.append([num(n), ms(r['push']['seconds_ext']),
                         ms(b['push']['seconds_ext']),
                         ms(r['delete']['seconds_ext']),
                         ms(b['delete']['seconds_ext']),
                         ms(r['push']['seconds_total']),
                         ms(r['delete']['seconds_total'])])
        lines.append('Seconds (medians of the timed repetitions):\n')
        lines.append(table(
            ['N', 'push ext: refcount', 'push ext: baseline',
             'delete ext: refcount', 'delete ext: baseline',
             'push, whole flow (refcount)', 'delete, whole flow (refcount)'],
            rows) + '\n')
        if backend == 's3':
            rows = []
            for n in sizes:
                r = res['refcount'][str(n)]
                b = res['baseline'][str(n)]
                row = [num(n)]
                for op in ('push', 'delete'):
                    row += ['%d / %s' % (r[op]['ext'].get('requests', 0),
                                         kb(r[op]['ext'].get('wire_bytes'))),
                            '%d / %s' % (b[op]['ext'].get('requests', 0),
                                         kb(b[op]['ext'].get('wire_bytes'))),
                            '%.1f×' % (b[op]['ext']['wire_bytes'] /
                                       r[op]['ext']['wire_bytes'])]
                rows.append(row)
            lines.append('On the wire (HTTP requests / bytes both ways, '
                         'counted by a relay between the driver and the '
                         'server):\n')
            lines.append(table(
                ['N', 'push: refcount requests / wire', 'push: baseline',
                 'ratio', 'delete: refcount', 'delete: baseline', 'ratio'],
                rows) + '\n')
        reg = res['refcount'][str(sizes[0])]
        lines.append(
            'The registry\'s own storage work for the same requests: push '
            '%d operations / %s, delete %d operations / %s.\n' % (
                reg['push']['registry']['ops'],
                kb(reg['push']['registry']['bytes']),
                reg['delete']['registry']['ops'],
                kb(reg['delete']['registry']['bytes'])))
        big = str(sizes[-1])
        hooks = res['refcount'][big]
        rows = []
        for op in ('push', 'delete'):
            for h, v in sorted(hooks[op].get('hooks', {}).items()):
                kinds = ', '.join('%s %d' % (k, v[k]) for k in (
                    'get', 'put', 'exists', 'list', 'remove', 'size')
                    if v.get(k))
                extra = ''
                if 'requests' in v:
                    extra = ' | %d / %s' % (v['requests'],
                                            kb(v.get('wire_bytes')))
                rows.append('| %s | %d (%s) | %s | %s%s |' % (
                    h, v['ops'], kinds, kb(v['bytes']), ms(v['seconds']),
                    extra))
        head = '| receiver | operations | bytes | seconds |'
        sep = '| --- | --- | --- | --- |'
        if backend == 's3':
            head += ' requests / wire |'
            sep += ' --- |'
        lines.append('refcount, per receiver, at N = %s:\n' % num(int(big)))
        lines.append('\n'.join([head, sep] + rows) + '\n')
        # goals
        small = str(sizes[0])
        for op in ('push', 'delete'):
            for what in ('ops', 'bytes'):
                a = res['refcount'][small][op]['ext'][what]
                z = res['refcount'][big][op]['ext'][what]
                dev = abs(z / a - 1.0)
                goals.append((
                    '1. refcount %s %s constant, N=%s → %s (%s)' % (
                        op, 'operations' if what == 'ops' else 'bytes',
                        num(int(small)), num(int(big)), backend),
                    '%s → %s (%+.1f%%)' % (
                        num(a) if what == 'ops' else kb(a),
                        num(z) if what == 'ops' else kb(z),
                        100 * (z / a - 1)),
                    dev <= TOLERANCE, '±10%'))
            a = res['refcount'][small][op]['seconds_ext']
            z = res['refcount'][big][op]['seconds_ext']
            goals.append((
                '1. (seconds) refcount %s ext time, N=%s → %s (%s)' % (
                    op, num(int(small)), num(int(big)), backend),
                '%s → %s (%.2f×)' % (ms(a), ms(z), z / a),
                information('within ±10%', abs(z / a - 1) <= TOLERANCE,
                            'the goal is counted in operations and bytes'),
                '±10%'))
            if backend == 'file':
                r = res['baseline'][big][op]['ext']['bytes'] / \
                    res['refcount'][big][op]['ext']['bytes']
                goals.append((
                    '1. bytes moved, baseline ÷ refcount, %s at N=%s (file)'
                    % (op, num(int(big))), '%.0f×' % r, r >= BYTES_GOAL,
                    '≥ 100×'))
            else:
                r = res['baseline'][big][op]['ext']['bytes'] / \
                    res['refcount'][big][op]['ext']['bytes']
                w = res['baseline'][big][op]['ext']['wire_bytes'] / \
                    res['refcount'][big][op]['ext']['wire_bytes']
                goals.append((
                    '1. S3 at N=%s (the largest run there), %s: bytes '
                    'through the driver / on the wire, baseline ÷ refcount'
                    % (num(int(big)), op), '%.0f× / %.1f×' % (r, w),
                    (min(r, w) >= BYTES_GOAL) if int(big) >= 10000 else
                    None, '≥ 100× at N=10,000'))
        path = plot_part1(backend, res, sizes)
        if path:
            plots.append(path)
            lines.append('![%s](%s)\n' % (backend, os.path.basename(path)))


def plot_part1(backend, res, sizes):
    """The PNG of one backend's part 1 against N, or None without
    matplotlib (scripts/bench.sh installs it; the tables do not need it)."""
    try:
        import matplotlib
    except ImportError:
        print('report: no matplotlib, no plot for %s' % backend)
        return None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [('bytes', 'bytes moved (driver interface)'),
              ('ops', 'storage operations')]
    if backend == 's3':
        panels += [('wire_bytes', 'bytes on the wire (HTTP)'),
                   ('seconds_ext', 'seconds (ext only)')]
    else:
        panels += [('seconds_ext', 'seconds (ext only)')]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2))
    for ax, (what, label) in zip(axes, panels):
        for design, color in (('refcount', 'tab:blue'),
                              ('baseline', 'tab:red')):
            for op, style in (('push', '-o'), ('delete', '--s')):
                ys = []
                for n in sizes:
                    r = res[design][str(n)][op]
                    ys.append(r[what] if what.startswith('seconds')
                              else r['ext'].get(what))
                ax.plot(sizes, ys, style, color=color,
                        label='%s %s' % (design, op))
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('N (tags on the shared base)')
        ax.set_title(label)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle('Part 1: cost of one push / one delete vs registry size '
                 '(%s)' % backend)
    fig.tight_layout()
    path = os.path.join(HERE, 'storage_cost_%s.png' % backend)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- part 2 ------------------------------------------------------------------

@section('2. Online overhead in the real registry')
def part2(data, lines, goals, plots):
    lines.append(
        'Two real docker-registry 0.9.1 servers at once (gunicorn, %d gevent '
        'workers each, file storage): extension enabled (config_sample.yml\'s '
        'settings) vs absent (no `extensions.refcount` block).  An '
        'iteration: image json PUT (parent: a tagged base image shared by '
        'all threads), layer PUT, checksum PUT, tag PUT, tag DELETE (which, '
        'with the extension, deletes the image, after the response).  At '
        'concurrency 1 one client thread does each iteration on both '
        'registries in random order; at concurrency 16 each registry has '
        'its own 16 client threads, all running at once, and only requests '
        'that ended while every thread was still running count.  One HTTP '
        'connection per request (`Connection: close`), latency measured by '
        'the client.  Registry CPU = user + system time of its gunicorn '
        'master and workers (including recycled ones: the registry restarts '
        'a worker every 100 requests).\n' % data['workers'])
    for section in ('runs', 'information_runs', 'dry_run_runs'):
        for conc in sorted(data.get(section, {}), key=int):
            _online_run(lines, goals, data[section][conc], conc,
                        section, data.get('quick'))
    if 'enabled_log_errors' in data:
        lines.append('Errors in the enabled registry\'s log: %d.\n'
                     % data['enabled_log_errors'])


def _online_run(lines, goals, run, conc, section, quick=False):
    regs = run['registries']
    rows = []
    for e in ('image_json', 'tag_put', 'tag_delete', 'layer', 'checksum'):
        if e not in run['p50_ratio']:
            continue                # no request of it in the window
        a, b = regs['absent'][e], regs['enabled'][e]
        rows.append([e.replace('_', ' '), ms(a['p50']), ms(b['p50']),
                     '%.2f×' % run['p50_ratio'][e], ms(a['p95']),
                     ms(b['p95']), '%.2f×' % run['p95_ratio'][e], a['n']])
    clients = run.get('clients', 'shared')
    counted = section == 'runs'
    note = {'runs': '', 'information_runs': ' - information only: a thread '
            'waits in whichever registry is slower, which then holds more '
            'of the clients', 'dry_run_runs': ' - information only: '
            '"enabled" here is a third registry with `dry_run: true`, which '
            'tracks every reference but deletes nothing (what the '
            'collection itself costs is the difference)'}[section]
    lines.append('### concurrency %s, %s client threads%s (%d iterations '
                 'per thread per registry, %.1f s)\n' % (
                     conc, clients, note, run['iterations_per_thread'],
                     run['wall_seconds']))
    lines.append(table(['endpoint', 'p50 absent', 'p50 enabled',
                        'p50 ratio', 'p95 absent', 'p95 enabled',
                        'p95 ratio', 'requests each'], rows) + '\n')
    if len(run.get('round_p50_ratio', [])) > 1:
        round_ms = (run.get('round_p50_ms') or
                    [None] * len(run['round_p50_ratio']))
        lines.append('Requests of %d rounds pooled; p50 ratio of each round '
                     'alone%s: %s.\n' % (
                         len(run['round_p50_ratio']),
                         ' (its p50s, absent → enabled)' if round_ms[0]
                         else '',
                         '; '.join(', '.join(
                             '%s %.2f×%s' % (e.replace('_', ' '), r[e], (
                                 ' (%.2f → %.2f ms)' % (
                                     m['absent'][e], m['enabled'][e])
                                 if m else ''))
                             for e in TIMED if e in r)
                             for r, m in zip(run['round_p50_ratio'],
                                             round_ms))))
    boots = run.get('worker_boots', {})
    lines.append('Registry CPU per iteration (5 requests)%s; gunicorn '
                 'workers booted during the run (the registry recycles a '
                 'worker every 100 requests; each boot costs CPU): absent '
                 '%s, enabled %s.\n' % (
                     _cpu_figures(run), boots.get('absent', '?'),
                     boots.get('enabled', '?')))
    if counted:
        for e in TIMED:
            r = run['p50_ratio'].get(e, float('nan'))
            ok = r <= P50_GOAL
            if quick:
                # one short round: at concurrency 16 single QUICK rounds
                # ranged 0.67-2.78 for the same code (bench/NOTES.md)
                ok = information('within', ok, 'QUICK runs one short '
                                 'round, noisier than the goal\'s margin; '
                                 '`make bench` judges')
            goals.append(('2. p50 overhead, %s, concurrency %s'
                          % (e.replace('_', ' '), conc), '%.2f×' % r,
                          ok, '≤ 1.25×'))


def _cpu_figures(run):
    """absent → enabled CPU per iteration: while both ran (the window the
    latencies come from), where recorded, and over the whole run."""
    def pair(cpu):
        return 'absent %.2f ms, enabled %.2f ms (%.2f×)' % (
            cpu['absent'], cpu['enabled'], cpu['enabled'] / cpu['absent']
            if cpu['absent'] > 0 else float('nan'))
    whole = pair(run['cpu_ms_per_iteration'])
    if 'window_cpu_ms_per_iteration' not in run:
        return ': ' + whole
    if run.get('clients') == 'shared':    # one thread set: one stretch
        return ': ' + pair(run['window_cpu_ms_per_iteration'])
    return (' while both registries were under load (the stretch the '
            'latencies come from): %s; over the whole run (with clients of '
            'its own, the slower registry ends alone on the machine): %s'
            % (pair(run['window_cpu_ms_per_iteration']), whole))


def counted(data, lines):
    """Part 2's iteration counted in process (bench/instructions.py)."""
    if not data:
        return
    off, on = data['modes']['off'], data['modes']['on']
    figures = []
    if 'instructions' in on:
        figures.append('%.2f M user-space instructions on the registry\'s '
                       '%.2f M (%.3f×; callgrind)' % (
                           on['added']['instructions'] / 1e6,
                           off['instructions'] / 1e6,
                           on['added']['instructions_ratio']))
    if 'syscalls' in on:
        figures.append('%.0f system calls on the registry\'s %.0f (strace)'
                       % (on['added']['syscalls'], off['syscalls']))
    lines.append('### The same iteration, counted in process\n')
    lines.append(
        'Counts do not move with the machine\'s load, so they show changes '
        'too small for the timings above (`python -m bench.instructions`: '
        'the registry\'s Flask app in one process, part 2\'s iterations on '
        'the file driver, no HTTP; two run lengths differenced, so start-up '
        'cancels out).  Per iteration the extension adds %s.%s\n' % (
            ' and '.join(figures) or 'nothing counted',
            (' Not counted: %s (tool not found).' % ', '.join(
                data['not_counted'])) if data.get('not_counted') else ''))


# -- part 3 ------------------------------------------------------------------

@section('3. gc sweep against the storage limit')
def part3(data, lines, goals, plots):
    if data.get('skipped'):
        lines.append('_skipped: %s_\n' % data['skipped'])
        return
    lines.append(
        'Synthetic registries written straight to the file driver\'s '
        'storage: one base image per 1 000 images, chains of 4 images on a '
        'random base, one tag per chain, 5 %% of the chains untagged; the '
        'extension\'s records consistent.  Each measurement is a fresh '
        'Python 2.7 process (the CLI\'s runtime), %d jobs (`truth.pool_map`: '
        'threads), page cache warm.  **limit** = list the tags and images, '
        'read every tag file and every image\'s ancestry at the same '
        'parallelism, nothing else.  **sweep** = '
        '`registry_refcount.sweep.sweep(ctx, grace_period=86400)` for real '
        '(records the unreachable images as candidates, none old enough to '
        'delete).  Medians of %d alternating rounds.  Memory per image = '
        '(peak RSS − RSS after the imports) ÷ images; an interpreter with '
        'the modules imported holds %s.\n' % (
            data['jobs'], data['rounds'],
            kb(data['interpreter_rss_kib'] * 1024)))
    rows = []
    for size in data['sizes']:
        r = data['results'][str(size)]
        reg = r['registry']
        rows.append([num(reg['images']), num(reg['tags']),
                     '%.2f s' % r['limit_seconds'],
                     num(r['limit_images_per_second']),
                     '%.2f s' % r['sweep_seconds'],
                     num(r['sweep_images_per_second']),
                     '%.2f×' % r['ratio_to_limit'],
                     '%s / %s' % (kb(r['sweep_peak_rss_kib'] * 1024),
                                  kb(r['sweep_rss_start_kib'] * 1024)),
                     '%.0f B' % r['bytes_per_image'],
                     '%.0f B' % r['limit_bytes_per_image']])
        goals.append(('3. sweep speed ÷ storage limit, %s images'
                      % num(reg['images']), '%.2f×' % r['ratio_to_limit'],
                      r['ratio_to_limit'] >= GC_GOAL, '≥ 0.5×'))
        goals.append(('3. sweep memory per image beyond the interpreter, '
                      '%s images' % num(reg['images']),
                      '%.0f B' % r['bytes_per_image'],
                      r['bytes_per_image'] <= RSS_GOAL, '≤ 300 B'))
    lines.append(table(['images', 'tags', 'limit', 'limit images/s',
                        'sweep', 'sweep images/s', 'sweep ÷ limit speed',
                        'sweep peak / start RSS', 'sweep bytes per image',
                        'limit bytes per image'], rows) + '\n')
    rows = []
    for size in data['sizes']:
        r = data['results'][str(size)]
        for kind in ('limit', 'sweep'):
            s = r['counted'][kind]['storage']
            rows.append([num(r['registry']['images']), kind, num(s['ops']),
                         num(s['get']), num(s['exists']), num(s['list']),
                         num(s['put']), kb(s['bytes'])])
    lines.append('Storage operations (one run of each behind the counting '
                 'proxy):\n')
    lines.append(table(['images', 'run', 'operations', 'get', 'exists',
                        'list', 'put', 'bytes'], rows) + '\n')
    rows = []
    for size in data['sizes']:
        r = data['results'][str(size)]
        d = r['deleting_sweep']
        rows.append([num(r['registry']['images']), num(d['candidates']),
                     num(d['deleted']), '%.2f s' % d['seconds'],
                     num(d['deleted'] / d['seconds']) if d['seconds'] else
                     '-'])
    lines.append('A deleting sweep (two days later: every candidate is old '
                 'enough), once:\n')
    lines.append(table(['images', 'candidates', 'deleted', 'seconds',
                        'deletions/s'], rows) + '\n')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--command', default='make bench')
    parser.add_argument('--seconds', type=float, default=None)
    parser.add_argument('--from-run', action='store_true',
                        help='command and seconds from results/run.json')
    parser.add_argument('--notes', default=os.path.join(HERE, 'NOTES.md'))
    args = parser.parse_args()
    run = load('run')
    if args.from_run and run:
        args.command, args.seconds = run['command'], run['seconds']
    p1, p2, p3 = load('storage_cost'), load('online'), load('gc')
    first = next(d for d in (p1, p2, p3) if d)
    m = first['machine']
    lines = ['# registry-refcount: benchmark results\n',
             'Generated by `bench/report.py` from `bench/results/*.json` of '
             'one run; every table below comes from that run.\n',
             table(['', ''], [
                 ['command', '`%s`' % args.command],
                 ['date', first['date']],
                 ['commit', m.get('commit', '?')],
                 ['machine', '%s cores (nproc), %s, %.1f GiB memory; %s' % (
                     m['nproc'], m.get('cpu', '?'),
                     m.get('memory_kib', 0) / 1048576.0, m['platform'])],
                 ['runtime', 'Python %s (registry, extension, benchmarks); '
                  'plots with Python 3 + matplotlib' % m['python']],
                 ['quick', 'yes (QUICK=1: fewer sizes and repetitions)'
                  if first.get('quick') else 'no'],
                 ['duration', '%.0f s' % args.seconds if args.seconds
                  else '-'],
             ]) + '\n']
    digests = set()
    for d in (p1, p2, p3):
        if d:
            digests.update([d.get('core_digest_start'),
                            d.get('core_digest_end')])
    digests.discard(None)
    if len(digests) > 1:
        lines.append('**Warning: the core package (registry_refcount/) '
                     'changed while this run went on (source digests %s); '
                     'its parts measured different code.**\n'
                     % ', '.join(sorted(digests)))
    elif digests:
        lines.append('Core package source digest (registry_refcount/*.py, '
                     'the same from the first part to the last): `%s`.\n'
                     % digests.pop())
    goals, plots, body = [], [], []
    part1(p1, body, goals, plots)
    part2(p2, body, goals, plots)
    counted(load('instructions'), body)
    part3(p3, body, goals, plots)
    lines.append('## Goals\n')
    lines.append(table(['goal', 'measured', 'target', 'verdict'],
                       [[g[0], g[1], g[3], yes(g[2])] for g in goals]) +
                 '\n')
    lines.extend(body)
    if os.path.exists(args.notes):
        with io.open(args.notes, encoding='utf-8') as f:
            lines.append(f.read())
    with io.open(os.path.join(HERE, 'RESULTS.md'), 'w',
                 encoding='utf-8') as f:
        f.write('\n'.join(lines))
    print('bench/RESULTS.md written; plots: %s' % ', '.join(
        os.path.basename(p) for p in plots))


if __name__ == '__main__':
    main()
