"""Part 6 (issue 25): our gc and rebuild beside the other v1 cleanup tools,
each on its own copy of one registry made by real pushes.

    python -m bench.peers [--scales 10,100] [--repos 190]

The mess is pushed once over HTTP to a real docker-registry 0.9.1 without
the extension (shared bases, retags of ``latest``, a tag on a chain's
middle image, tag and repository deletes, untagged chains; about 1 400
images), then copied ``scale`` times under new ids and namespaces (every
id in every file renamed, so each copy is the same mess again).  Every
tool runs on its own copy, in its own process; wall time, peak RSS and
what it left (live images lost, garbage left) are recorded.  The peers
are located at run time and skipped, with a message, when absent:

* ``BENCH_PEER_RUBY``: a checkout (or git folder) of
  docwhat/docker-registry-garbage-collect (``remove-orphan-images.rb``,
  which ``rm -rf``\\ s unused images; needs ``ruby``);
* ``BENCH_PEER_PR606``: a checkout (or git folder) of ncdc/docker-registry,
  branch ``refcount-extension`` (its ``extensions/refcount/refcount.py``,
  whose first start references every tag's chain and deletes the rest);
* ``BENCH_PEER_CLEANER``: a Python with docker-registry-cleaner 0.1.0
  installed (default ``.venv-bench/bin/python``; it moves unused images
  aside).
"""

from __future__ import absolute_import, division, print_function

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from multiprocessing.pool import ThreadPool

from . import common

ID = re.compile(r'[0-9a-f]{64}')
BIN = os.path.dirname(sys.executable)


# -- the mess ---------------------------------------------------------------

def push_mess(workdir, repos, seed=25):
    """Push the scenario to a registry without the extension; its storage
    folder."""
    from tests.registry.harness import Client, Registry
    os.makedirs(workdir)
    registry = Registry(workdir, refcount=None, workers=4)
    registry.start()
    rnd = random.Random(seed)
    try:
        client = Client(registry.url)
        bases = [client.push_chain(['base-%d-%d' % (b, d) for d in range(3)])
                 for b in range(4)]
        plans = [(n, rnd.choice(bases)[-1], rnd.random()) for n in
                 range(repos)]
        pool = ThreadPool(4)
        try:
            pool.map(lambda plan: _push_repo(Client(registry.url), *plan),
                     plans)
        finally:
            pool.close()
    finally:
        registry.stop()
    return registry.storage


def _push_repo(client, n, base, dice):
    """One repository's life: three builds of ``latest`` (the first with a
    tag ``v1`` on its middle image), sometimes a tag or the repository
    deleted, sometimes an untagged chain left behind."""
    repo = 'team%d/app%d' % (n % 10, n)
    first = client.push(repo, 'latest', ['%d-a-%d' % (n, d)
                                         for d in range(3)], base)
    client.tag(repo, 'v1', first[1])
    for build in 'bc':
        client.push(repo, 'latest', ['%d-%s-%d' % (n, build, d)
                                     for d in range(2)], base)
    if dice < 0.15:
        client.delete_tag(repo, 'v1')
    elif dice < 0.25:
        client.delete_repository(repo)
    if dice > 0.8:
        client.push_chain(['%d-loose-%d' % (n, d) for d in range(2)], base)


def replicate(master, dest, copies):
    """``copies`` renamed copies of the registry at ``master`` in ``dest``
    (copy 0 keeps its ids): every id in every file and name renamed,
    namespaces suffixed; layers and timestamps kept."""
    for c in range(copies):
        rename = (lambda m: m.group(0)) if c == 0 else (
            lambda m: hashlib.sha256(('%s:%d' % (m.group(0), c)).encode(
                'ascii')).hexdigest())
        for folder, _, files in os.walk(master):
            rel = os.path.relpath(folder, master)
            parts = rel.split(os.sep)
            if parts[0] == 'repositories' and len(parts) > 1 and c:
                parts[1] = '%s-%d' % (parts[1], c)
            target = ID.sub(rename, os.path.join(dest, *parts))
            if not os.path.isdir(target):
                os.makedirs(target)
            for name in files:
                src = os.path.join(folder, name)
                out = os.path.join(target, ID.sub(rename, name))
                if name == 'layer':
                    shutil.copyfile(src, out)
                else:
                    with open(src, 'rb') as f:
                        data = f.read().decode('utf-8')
                    with open(out, 'wb') as f:
                        f.write(ID.sub(rename, data).encode('utf-8'))
                st = os.stat(src)
                os.utime(out, (st.st_atime, st.st_mtime))


def truth(root):
    """``(live, garbage)``: the images the tags reach, and the rest."""
    repos = os.path.join(root, 'repositories')
    live = set()
    for ns in os.listdir(repos):
        for repo in os.listdir(os.path.join(repos, ns)):
            folder = os.path.join(repos, ns, repo)
            for name in os.listdir(folder):
                if name.startswith('tag_'):
                    with open(os.path.join(folder, name)) as f:
                        top = f.read().strip()
                    with open(os.path.join(root, 'images', top,
                                           'ancestry')) as f:
                        live.update(json.load(f))
    images = set(images_of(root))
    return live, images - live


def images_of(root):
    return [i for i in os.listdir(os.path.join(root, 'images'))
            if ID.match(i)]


# -- the tools ----------------------------------------------------------------

def _peer_file(env, path, ref):
    """``path`` in the checkout or git folder named by ``env``, or None."""
    where = os.environ.get(env)
    if not where:
        return None
    if os.path.exists(os.path.join(where, path)):
        return os.path.join(where, path)
    try:
        return subprocess.check_output(['git', '--git-dir', where, 'show',
                                        '%s:%s' % (ref, path)])
    except (OSError, subprocess.CalledProcessError):
        return None


def tools(workdir):
    """``{name: (command before, or None; [command, ...])}`` of the tools
    found (``{root}``, ``{config}``: the copy's); a line for each one
    skipped."""
    found = {}
    ours = [os.path.join(BIN, 'registry-refcount'), '--config', '{config}',
            '--flavor', 'local', '--quiet', '--json']
    found['ours: gc'] = (ours + ['rebuild'], [ours + ['gc', '--grace', '0']])
    found['ours: rebuild + gc'] = (None, [ours + ['rebuild'],
                                          ours + ['gc', '--grace', '0']])
    ruby = _peer_file('BENCH_PEER_RUBY', 'remove-orphan-images.rb', 'HEAD')
    if ruby is None or not _which('ruby'):
        common.log('part 6: the rm -rf script skipped: set BENCH_PEER_RUBY '
                   'to a checkout of docwhat/docker-registry-garbage-'
                   'collect, and install ruby')
    else:
        found['rm -rf script (Ruby)'] = (None, [['ruby', _saved(
            workdir, 'remove-orphan-images.rb', ruby), '-d', '{root}',
            '-s', '0']])
    pr606 = _peer_file('BENCH_PEER_PR606', 'extensions/refcount/refcount.py',
                       'origin/refcount-extension')
    if pr606 is None:
        common.log('part 6: the PR #606 extension skipped: set '
                   'BENCH_PEER_PR606 to a checkout of ncdc/docker-registry '
                   '(branch refcount-extension)')
    else:
        found['PR #606 first start'] = (None, [[
            sys.executable, _saved(workdir, 'pr606_refcount.py', pr606)]])
    cleaner = os.environ.get('BENCH_PEER_CLEANER', os.path.join(
        common.ROOT, '.venv-bench', 'bin', 'python'))
    script = _cleaner_script(cleaner)
    if script is None:
        common.log('part 6: docker-registry-cleaner skipped: install '
                   'docker-registry-cleaner==0.1.0 into a Python named by '
                   'BENCH_PEER_CLEANER (default .venv-bench/bin/python)')
    else:
        found['move-aside script (Python)'] = (None, [[
            cleaner, script, '{root}', 'scrub']])
    return found


def _which(name):
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in os.environ.get('PATH', '').split(os.pathsep))


def _saved(workdir, name, content):
    """A peer's file: its path, or its text saved under ``workdir``."""
    if os.path.exists(content):
        return content
    path = os.path.join(workdir, name)
    with open(path, 'wb') as f:
        f.write(content)
    return path


def _cleaner_script(python):
    if not os.access(python, os.X_OK):
        return None
    try:
        folder = subprocess.check_output([python, '-c', (
            'import os, cleaner; print(os.path.dirname(cleaner.__file__))')],
            stderr=open(os.devnull, 'w')).decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return os.path.join(folder, '__main__.py')


def run_tool(commands, root, config, workdir, timeout):
    """Run one tool's commands on ``root``: wall seconds, peak RSS (KiB,
    the largest of its processes) and the first failure, if any."""
    env = dict(os.environ, DOCKER_REGISTRY_CONFIG=config,
               SETTINGS_FLAVOR='local', TMPDIR=os.path.join(workdir, 'tmp'))
    if not os.path.isdir(env['TMPDIR']):
        os.makedirs(env['TMPDIR'])
    started, peak, failed = time.time(), 0, None
    for command in commands:
        argv = [a.format(root=root, config=config) for a in command]
        with open(os.path.join(workdir, 'tool.log'), 'ab') as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env,
                                    cwd=workdir)
            deadline = started + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.time() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    failed = 'stopped after %d s' % timeout
                    break
                time.sleep(0.02)
        peak = max(peak, usage.ru_maxrss)
        if failed or status:
            failed = failed or '%s exited %s' % (argv[1:3], status >> 8)
            break
    return {'seconds': round(time.time() - started, 3), 'rss_peak_kib':
            peak, 'failed': failed}


def config_for(root, workdir):
    from tests.registry.harness import make_config
    return make_config(os.path.join(workdir, 'config.yml'),
                       common.enabled_block(), 'local',
                       {'storage_path': root})


def bench_scale(master, scale, found, workdir, timeout, rounds):
    source = os.path.join(workdir, 'source-%d' % scale)
    started = time.time()
    replicate(master, source, scale)
    live, garbage = truth(source)
    common.log('part 6: scale %d: %d images, %d live, %d garbage (copied '
               'in %.0fs)' % (scale, len(live) + len(garbage), len(live),
                              len(garbage), time.time() - started))
    out = {'images': len(live) + len(garbage), 'live': len(live),
           'garbage': len(garbage), 'rounds': rounds,
           'runs': dict((name, []) for name in found)}
    # the interpreter and imports of our command, doing nothing
    empty = os.path.join(workdir, 'empty')
    os.makedirs(os.path.join(empty, 'images'))
    os.makedirs(os.path.join(empty, 'repositories'))
    config = config_for(empty, workdir)
    run_tool([found['ours: gc'][0] + ['--init-empty']], empty, config,
             workdir, timeout)
    out['ours_idle'] = run_tool(found['ours: gc'][1], empty, config,
                                workdir, timeout)
    shutil.rmtree(empty)
    for r in range(rounds):
        for name in sorted(found)[r % len(found):] + sorted(found)[
                :r % len(found)]:
            out['runs'][name].append(_one(name, found[name], source, live,
                                          garbage, workdir, timeout))
    out['tools'] = dict((name, _median_run(runs))
                        for name, runs in out['runs'].items())
    shutil.rmtree(source)
    return out


def _one(name, tool, source, live, garbage, workdir, timeout):
    """One run of a tool on a fresh copy of ``source``, the page cache
    warm and the copy's writes on disk first."""
    prepare, commands = tool
    root = os.path.join(workdir, 'copy')
    subprocess.check_call(['cp', '-a', source, root])
    config = config_for(root, workdir)
    if prepare:
        run_tool([prepare], root, config, workdir, timeout)
    subprocess.call(['sync'])
    time.sleep(2)
    result = run_tool(commands, root, config, workdir, timeout)
    left = set(images_of(root))
    result.update(lost=len(live - left), garbage_left=len(garbage & left))
    common.log('  %-28s %7.2fs  peak %6d KiB  lost %d  left %d%s' % (
        name, result['seconds'], result['rss_peak_kib'], result['lost'],
        result['garbage_left'], '  (%s)' % result['failed']
        if result['failed'] else ''))
    shutil.rmtree(root)
    return result


def _median_run(runs):
    """The run of median wall time (its memory and outcome with it); the
    worst correctness of all runs."""
    mid = sorted(runs, key=lambda x: x['seconds'])[len(runs) // 2]
    return dict(mid, lost=max(x['lost'] for x in runs), garbage_left=max(
        x['garbage_left'] for x in runs), failed=next(
        (x['failed'] for x in runs if x['failed']), None))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scales', default='10' if common.quick() else
                        '10,100')
    parser.add_argument('--repos', type=int, default=190)
    parser.add_argument('--timeout', type=int, default=900)
    parser.add_argument('--rounds', default='3,1',
                        help='runs of each tool at each scale (medians)')
    args = parser.parse_args(argv)
    workdir = common.workdir('peers')
    try:
        found = tools(workdir)
        started = time.time()
        master = push_mess(os.path.join(workdir, 'push'), args.repos)
        common.log('part 6: the mess pushed in %.0fs' % (time.time() -
                                                          started))
        rounds = [int(r) for r in args.rounds.split(',')]
        out = {'repos': args.repos, 'results': dict(
            (scale, bench_scale(master, int(scale), found, workdir,
                                args.timeout, rounds[min(n, len(rounds) - 1)]))
            for n, scale in enumerate(args.scales.split(',')))}
    finally:
        common.cleanup(workdir)
    common.save('peers', out)
    return out


if __name__ == '__main__':
    common.quiet_logs()
    main()
