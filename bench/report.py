# -*- coding: utf-8 -*-
"""``bench/RESULTS.md`` from ``bench/results/*.json`` of one run: the goals
table (every verdict computed here, from the figures below it), a section
per part, then ``bench/NOTES.md`` (how each part measures, what the figures
show).

    python -m bench.report          (after ``python -m bench``)
"""

from __future__ import absolute_import, division, unicode_literals

import io
import os

from .common import HERE, load
from .online import ENDPOINTS, GOAL_ENDPOINTS


def kb(n):
    for unit, size in (('MiB', 1 << 20), ('KiB', 1 << 10)):
        if n >= size:
            return '%.*f %s' % (0 if n >= 10 * size else 1, n / size, unit)
    return '%d B' % n


def ms(s):
    return '%.2f ms' % (s * 1000.0)


def num(n):
    return '{:,.0f}'.format(n)


def table(head, rows):
    return '\n'.join(['| %s |' % ' | '.join(head),
                      '|%s|' % '|'.join([' --- '] * len(head))] +
                     ['| %s |' % ' | '.join('%s' % c for c in row)
                      for row in rows]) + '\n'


class Report(object):
    def __init__(self):
        self.goals, self.body = [], []

    def goal(self, name, measured, target, ok, info=None):
        """A row of the goals table; ``info``: why the figure is shown
        beside a goal without being judged by it."""
        verdict = ('**met**' if ok else '**not met**') if info is None else \
            'information (%s): %s' % (info, 'within' if ok else 'outside')
        self.goals.append([name, measured, target, verdict])

    def part1(self, data):
        self.body.append('## 1. Storage work of one push and one delete vs '
                         'registry size (medians of %d)\n' % data['reps'])
        for backend, b in sorted(data['backends'].items()):
            res, sizes, rows = b['results'], b['sizes'], []
            for n in sizes:
                row = [num(n)]
                for op in ('push', 'delete'):
                    r, z = [res[d][str(n)][op]['ext']
                            for d in ('refcount', 'baseline')]
                    row += ['%d / %s' % (r['ops'], kb(r['bytes'])),
                            '%d / %s' % (z['ops'], kb(z['bytes'])),
                            '%.0f×' % (z['bytes'] / r['bytes'])]
                rows.append(row)
            own = res['refcount'][str(sizes[0])]
            self.body += ['### %s driver\n' % backend, table(
                ['N', 'push: refcount ops / bytes', 'baseline', 'bytes ratio',
                 'delete: refcount', 'baseline', 'bytes ratio'], rows),
                'The registry\'s own storage work for the same requests: '
                'push %d operations / %s, delete %d / %s.\n' % (
                    own['push']['registry']['ops'],
                    kb(own['push']['registry']['bytes']),
                    own['delete']['registry']['ops'],
                    kb(own['delete']['registry']['bytes']))]
            small, big = sizes[0], sizes[-1]
            span = 'N=%s → %s (%s)' % (num(small), num(big), backend)
            for op in ('push', 'delete'):
                a, z = [res['refcount'][str(n)][op]['ext']
                        for n in (small, big)]
                for what, fmt in (('ops', num), ('bytes', kb)):
                    change = z[what] / a[what] - 1
                    self.goal('1. refcount %s %s constant, %s' % (
                        op, 'operations' if what == 'ops' else 'bytes',
                        span), '%s → %s (%+.1f%%)' % (
                            fmt(a[what]), fmt(z[what]), 100 * change),
                        '±10%', abs(change) <= 0.10)
                ratio = res['baseline'][str(big)][op]['ext']['bytes'] / \
                    z['bytes']
                self.goal('1. bytes moved, baseline ÷ refcount, %s at N=%s '
                          '(%s)' % (op, num(big), backend), '%.0f×' % ratio,
                          '≥ 100× at N=10,000', ratio >= 100, None
                          if big >= 10000 else 'largest N here')

    def part2(self, data, counted):
        self.body.append('## 2. Online overhead in the real registry (%d '
                         'workers each)\n' % data['workers'])
        for conc, run in sorted(data['runs'].items(),
                                key=lambda x: int(x[0])):
            regs = run['registries']
            cpu = dict((n, 1000.0 * w['cpu_seconds'] / max(1, w[
                'iterations'])) for n, w in run['window'].items())
            rows = [[e.replace('_', ' '), ms(regs['absent'][e]['p50']),
                     ms(regs['enabled'][e]['p50']),
                     '%.2f×' % run['p50_ratio'][e],
                     ms(regs['absent'][e]['p95']),
                     ms(regs['enabled'][e]['p95']),
                     '%.2f×' % run['p95_ratio'][e], regs['absent'][e]['n']]
                    for e in ENDPOINTS if e in run['p50_ratio']]
            self.body += [
                '### concurrency %s (%d rounds of %.0f s pooled)\n'
                % (conc, run['rounds'], run['seconds']),
                table(['endpoint', 'p50 absent', 'p50 enabled', 'p50 ratio',
                       'p95 absent', 'p95 enabled', 'p95 ratio',
                       'requests each'], rows),
                'p50 ratios of each round alone: %s.  Registry CPU per '
                'iteration: absent %.2f ms, enabled %.2f ms (%.2f×).\n' % (
                    '; '.join(', '.join('%s %.2f×' % (e.replace('_', ' '),
                                                      r[e])
                                        for e in GOAL_ENDPOINTS if e in r)
                              for r in run['round_p50_ratio']),
                    cpu['absent'], cpu['enabled'],
                    cpu['enabled'] / cpu['absent'])]
            for e in GOAL_ENDPOINTS:
                r = run['p50_ratio'].get(e, float('nan'))
                self.goal('2. p50 overhead, %s, concurrency %s' % (
                    e.replace('_', ' '), conc), '%.2f×' % r, '≤ 1.25×',
                    r <= 1.25, 'QUICK: one short round, noisier than the '
                    'margin; `make bench` judges' if data['quick'] else None)
        self.body.append('Errors in the enabled registry\'s log: %d.\n'
                         % data['enabled_log_errors'])
        if counted:
            on, off = counted['modes']['on'], counted['modes']['off']
            self.body.append(
                '### The same iteration, counted in process\n\nPer iteration '
                'the extension adds %s.\n' % ' and '.join(
                    '{:,.0f} {} on the registry\'s {:,.0f} ({})'.format(
                        on['added'][k], k, off[k],
                        '%.3f×' % (on[k] / off[k]) if off[k] else '-')
                    for k in sorted(on['added'])))

    def part3(self, data):
        self.body.append('## 3. gc sweep against the storage limit (%d jobs, '
                         'medians of %d rounds)\n'
                         % (data['jobs'], data['rounds']))
        rows = []
        for size, r in sorted(data['results'].items(),
                              key=lambda x: int(x[0])):
            n, d = r['registry']['images'], r['deleting_sweep']
            rows.append([num(n), num(r['registry']['tags']),
                         '%.2f s' % r['limit_seconds'],
                         '%.2f s' % r['sweep_seconds'],
                         '%.2f×' % r['ratio_to_limit'],
                         '%s → %s' % tuple(kb(k * 1024)
                                           for k in r['sweep_rss_kib']),
                         '%.0f B / %.0f B' % (r['sweep_bytes_per_image'],
                                              r['limit_bytes_per_image']),
                         '%d in %.2f s' % (d['deleted'], d['seconds'])])
            self.goal('3. sweep speed ÷ storage limit, %s images' % num(n),
                      '%.2f×' % r['ratio_to_limit'], '≥ 0.5×',
                      r['ratio_to_limit'] >= 0.5)
            self.goal('3. sweep memory per image beyond the interpreter, %s '
                      'images' % num(n), '%.0f B' % r['sweep_bytes_per_image'],
                      '≤ 300 B', r['sweep_bytes_per_image'] <= 300)
        self.body.append(table(
            ['images', 'tags', 'limit', 'sweep', 'sweep ÷ limit speed',
             'sweep RSS start → peak', 'bytes per image: sweep / limit',
             'deleting sweep: deleted'], rows))


    def part5(self, data):
        from .undo_cost import lines
        self.body.append('## 5. The undo window: a tag DELETE\'s storage work '
                         '(N=%d, medians of %d)\n' % (data['size'],
                                                      data['reps']))
        r = data['results']
        online = [r[mode]['delete']['ops'] for mode in ('window',
                                                        'immediate')]
        self.goal('undo window: a tag DELETE\'s online storage work, with '
                  'the window ÷ without', '%d ÷ %d' % tuple(online), '< 1',
                  online[0] < online[1])
        self.body.append('\n'.join(lines(r)) + '\n')


    def part6(self, data):
        self.body.append('## 6. Beside the other v1 cleanup tools (copies of '
                         'one registry made by real pushes)\n')
        if data['commit'] != self.commit:
            self.body.append('Run on its own (`python -m bench.peers`) at '
                             'commit %s, %s, after the parts above.\n' % (
                                 data['commit'], data['date']))
        script = 'rm -rf script (Ruby)'
        for scale, r in sorted(data['results'].items(),
                               key=lambda x: int(x[0])):
            n, tools = r['images'], r['tools']
            base = tools.get(script)
            self.body.append('### %s images: %s live, %s garbage (medians of '
                             '%d runs)\n' % (num(n), num(r['live']),
                                             num(r['garbage']), r['rounds']))
            rows = []
            for name in sorted(tools, key=lambda t: tools[t]['seconds']):
                t = tools[name]
                rows.append([name, '%.2f s' % t['seconds'], '%.2f×' % (
                    t['seconds'] / base['seconds']) if base else '-',
                    kb(t['rss_peak_kib'] * 1024), num(t['lost']),
                    num(t['garbage_left']), t['failed'] or ''])
            self.body.append(table(['tool', 'wall', '÷ rm -rf script',
                                    'peak RSS', 'live images lost',
                                    'garbage left', 'note'], rows))
            gc, both = tools['ours: gc'], tools['ours: rebuild + gc']
            per_image = (gc['rss_peak_kib'] - r['ours_idle']['rss_peak_kib']
                         ) * 1024.0 / n
            self.goal('6. gc peak memory per image beyond the interpreter, '
                      '%s images' % num(n), '%.0f B' % per_image, '≤ 300 B',
                      per_image <= 300)
            if base:
                for name, target, what in ((gc, 1.0, 'gc'),
                                           (both, 2.0, 'rebuild + gc')):
                    ratio = name['seconds'] / base['seconds']
                    self.goal('6. %s wall ÷ the rm -rf script, %s images' % (
                        what, num(n)), '%.2f×' % ratio, '≤ %.1f×' % target,
                        ratio <= target)
            self.goal('6. our live images lost, %s images' % num(n),
                      num(max(gc['lost'], both['lost'])), '0',
                      gc['lost'] == both['lost'] == 0)


    def part7(self, data):
        self.body.append('## 7. Online on object storage: the S3 driver '
                         'behind a relay that adds a fixed latency to each '
                         'request\n')
        for delay, r in sorted(data['delays'].items(),
                               key=lambda x: int(x[0])):
            trips, lat, back = r['round_trips'], r['latency'], r['backlog']
            self.body.append('### %s ms a request\n' % delay)
            self.body.append(table(
                ['request', 'round trips before the response: with',
                 'without', 'the extension\'s'],
                [[e, trips['enabled'][e], trips['absent'][e],
                  r['extension_round_trips'][e]] for e in
                 ('image_json', 'tag_put', 'tag_delete')]))
            self.body.append(
                'A tag delete\'s work after its response: %d requests, %d '
                'of them one after the other.\n' % (
                    trips['enabled']['after_delete_requests'],
                    trips['enabled']['after_delete_sequential']))
            self.body.append(table(
                ['request (concurrency 1)', 'p50 with', 'p50 without',
                 'p99 with', 'p99 without', 'n'],
                [[e, '%.1f ms' % lat['enabled'][e]['p50_ms'],
                  '%.1f ms' % lat['absent'][e]['p50_ms'],
                  '%.1f ms' % lat['enabled'][e]['p99_ms'],
                  '%.1f ms' % lat['absent'][e]['p99_ms'],
                  lat['enabled'][e]['n']]
                 for e in ('image_json', 'tag_put')]))
            self.body.append(
                'Concurrency 16 on each registry for %d s: the extension\'s '
                'unfinished tag requests (intents on storage, each second), '
                'after a fifth of warm-up: mean of the first half %.1f, of '
                'the second half %.1f; drained %.1f s '
                'after the load stopped%s.  Iterations (push, tag, delete): '
                'with %d, without %d; tag PUT p50 with %.1f ms, without '
                '%.1f ms.\n' % (
                    back['seconds'], back['first_half_mean'],
                    back['second_half_mean'], back['drain_seconds'],
                    '' if back['drained'] else ' (**not drained**)',
                    back['iterations']['enabled'],
                    back['iterations']['absent'],
                    back['tag_put_p50_ms']['enabled'],
                    back['tag_put_p50_ms']['absent']))
            ext = r['extension_round_trips']['tag_put']
            self.goal('7. the extension\'s round trips before a tag PUT\'s '
                      'response, %s ms' % delay, '%d' % ext, '≤ 2', ext <= 2)
            self.goal('7. deferred work keeps up at concurrency 16, %s ms, '
                      '%d s' % (delay, back['seconds']),
                      '%.1f → %.1f intents' % (back['first_half_mean'],
                                                back['second_half_mean']),
                      '≤ +20%, drained', back['keeps_up'] and
                      back['drained'])


def main(path=os.path.join(HERE, 'RESULTS.md')):
    run, parts = load('run') or {}, [load(p) for p in (
        'storage_cost', 'online', 'instructions', 'gc', 'undo_cost',
        'peers', 'object_storage')]
    first = [p for p in parts if p][0]
    m = first['machine']
    digests = set(d[k] for d in parts if d for k in (
        'core_digest_start', 'core_digest_end'))
    rep = Report()
    rep.commit = first['commit']
    if parts[0]:
        rep.part1(parts[0])
    if parts[1]:
        rep.part2(parts[1], parts[2])
    if parts[3]:
        rep.part3(parts[3])
    if parts[4]:
        rep.part5(parts[4])
    if parts[5]:
        rep.part6(parts[5])
    if parts[6]:
        rep.part7(parts[6])
    text = '\n'.join([
        '# registry-refcount: benchmark results\n',
        'Generated by `bench/report.py` from `bench/results/*.json` of one '
        'run: `%s`, %s s.%s\n' % (
            run.get('command', '?'), run.get('seconds', '?'),
            '  **A QUICK run** (fewer sizes, repetitions and rounds): a '
            'smoke test; `make bench` publishes.' if first['quick'] else ''),
        table(['', ''], [
            ['date', first['date']], ['commit', first['commit']],
            ['core package digest', ', '.join(sorted(digests)) + (
                ' (**changed during the run**)' if len(digests) > 1 else '')],
            ['machine', '%s cores, %s, %.1f GiB; %s; Python %s' % (
                m['nproc'], m['cpu'], m['memory_kib'] / 1048576.0,
                m['platform'], m['python'])]]),
        '## Goals\n',
        table(['goal', 'measured', 'target', 'verdict'], rep.goals)] +
        rep.body)
    with io.open(os.path.join(HERE, 'NOTES.md'), encoding='utf-8') as f:
        text += '\n' + f.read()
    with io.open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    print('%s written' % path)


if __name__ == '__main__':
    main()
