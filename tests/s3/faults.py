"""Helpers of the fault-injection tests (issue 20): a skewed clock with
libfaketime, registry "hosts" that are other hosts for
:mod:`registry_refcount.owner` (a UTS namespace of their own: another host
name), a workload of clients that keeps a model of what the registry
acknowledged, and the CLI run like an operator would.

The model: each client owns its repository (``ns/c<n>``) and its tags, so
what the registry answered 200 for, in the client's own order, is the
truth a tag must show at the end (S1 checked against the clients' view,
not only against storage)."""

from __future__ import absolute_import

import email.utils
import json
import os
import random
import subprocess
import threading
import time

import pytest

from registry_refcount import locks
from registry_refcount import protocols
from registry_refcount import recovery

from ..registry.harness import BIN, Client, image_id
from .workload import run_clients

CLI = os.path.join(BIN, 'registry-refcount')
STRESS = os.environ.get('REFCOUNT_STRESS') == '1'


def faketime_lib():
    """The path of libfaketime.so.1 (Debian ``libfaketime``), or None."""
    try:
        out = subprocess.check_output(['dpkg', '-L', 'libfaketime'],
                                      stderr=subprocess.STDOUT)
    except (OSError, subprocess.CalledProcessError):
        out = b''
    for line in out.decode('utf-8', 'replace').splitlines():
        if line.endswith('/libfaketime.so.1'):
            return line
    return None


def need_faketime():
    lib = faketime_lib()
    if lib is None:
        pytest.skip('libfaketime is not installed (Debian faketime: '
                    'make setup)')
    return lib


def skewed_env(offset=None, timestamp_file=None):
    """The environment of a process whose wall clock is off by ``offset``
    (libfaketime's syntax: '+15m', '-1h'), or follows the offset written
    in ``timestamp_file`` (re-read every second: a clock that jumps).
    Monotonic clocks are left alone, as on a real host whose wall clock is
    wrong or stepped by NTP."""
    env = {'LD_PRELOAD': need_faketime(), 'FAKETIME_DONT_FAKE_MONOTONIC': '1',
           # gunicorn's arbiter compares its (faked) clock with the ctime
           # of each worker's heartbeat file, which libfaketime does not
           # shift: past this timeout it kills every worker in a loop
           'GUNICORN_SILENT_TIMEOUT': '7200'}
    if timestamp_file is not None:
        env.update(FAKETIME_TIMESTAMP_FILE=timestamp_file,
                   FAKETIME_CACHE_DURATION='1')
    else:
        env['FAKETIME'] = offset
    return env


def host_command(name):
    """``docker-registry`` as another host: its own host name in a UTS
    namespace, so that :func:`registry_refcount.owner.host` differs and
    neither host can judge the other's work by its process (the storage's
    clock decides, as it would across machines)."""
    return ['unshare', '--uts', 'sh', '-c', 'hostname "$0" && exec "$@"',
            name, os.path.join(BIN, 'docker-registry')]


def response_skew(url):
    """Seconds the registry's clock is ahead of ours, from the ``Date`` of
    its answer (gunicorn writes it from the worker's own clock)."""
    before = time.time()
    try:
        r = Client(url)._req('GET', '/_ping', timeout=5)
    except Exception:
        return None             # (a stalled worker took it)
    after = time.time()
    served = email.utils.mktime_tz(email.utils.parsedate_tz(
        r.headers['Date']))
    return served - (before + after) / 2.0


def wait_for(predicate, timeout=30, what='condition', every=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(every)


def run_cli(config, flavor, env, *args, **kw):
    """``registry-refcount --json <args>`` on ``config``; (exit code,
    document or None, stderr)."""
    environ = dict(os.environ, DOCKER_REGISTRY_CONFIG=config,
                   SETTINGS_FLAVOR=flavor)
    environ.pop('REGISTRY_REFCOUNT_PAUSE_AT', None)
    environ.pop('REGISTRY_REFCOUNT_CRASH_AT', None)
    environ.update(env or {})
    environ.update(kw.get('extra_env') or {})
    p = subprocess.Popen([CLI, '--json'] + list(args), env=environ,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    doc = None
    if out.strip():
        try:
            doc = json.loads(out.decode('utf-8'))
        except ValueError:
            doc = {'stdout': out.decode('utf-8')}
    return p.returncode, doc, err.decode('utf-8')


def cli_package_dir(config, flavor, env):
    """Which registry_refcount package the CLI subprocess imports."""
    environ = dict(os.environ, DOCKER_REGISTRY_CONFIG=config,
                   SETTINGS_FLAVOR=flavor, **(env or {}))
    with open(CLI) as f:
        python = f.readline()[2:].strip()
    out = subprocess.check_output(
        [python, '-c', 'import registry_refcount, os; '
         'print(os.path.dirname(os.path.dirname('
         'os.path.abspath(registry_refcount.__file__))))'], env=environ)
    return out.decode('utf-8').strip()


# -- a workload that knows what the registry acknowledged -------------------

class Model(object):
    """What the clients were told: ``tags[(repo, tag)] = image`` for every
    acknowledged write not acknowledged-deleted since; ``unsure`` tags
    (a request that failed without an answer) are left out of S1."""

    def __init__(self):
        self.tags = {}
        self.unsure = set()
        self.ops = 0
        self.acked = 0
        self.violations = []      # tag PUTs refused for an image that exists
        self.untagged = set()     # fresh images whose tag PUT failed
        self.errors = []
        self.lock = threading.Lock()

    def ack(self, repo, tag, image):
        with self.lock:
            self.tags[(repo, tag)] = image
            self.unsure.discard((repo, tag))
            self.acked += 1

    def ack_delete(self, repo, tag):
        with self.lock:
            self.tags.pop((repo, tag), None)
            self.unsure.discard((repo, tag))
            self.acked += 1

    def doubt(self, repo, tag):
        with self.lock:
            self.tags.pop((repo, tag), None)
            self.unsure.add((repo, tag))


class Gone(Exception):
    pass


class ModelClient(Client):
    """A docker 1.x client that pushes fresh images and tags them, keeping
    the model.  Any non-200 on an image upload is retried (a parent being
    deleted); a tag PUT refused for an image that exists is a violation
    (the image was just pushed and nothing may delete it while a tag write
    names it)."""

    def __init__(self, url, model):
        Client.__init__(self, url)
        self.model = model

    def has(self, image):
        return self._req('GET', '/v1/images/%s/json' % image).status_code \
            == 200

    def upload(self, names, parent, tries=8):
        """Push ``names`` root first on ``parent``; ids, or :class:`Gone`
        if a parent keeps disappearing."""
        for attempt in range(tries):
            ids, up = [], parent
            try:
                for name in names:
                    image = image_id(name)
                    if not self.has(image):
                        r = self.push_image(image, up)
                        if r.status_code != 200:
                            raise Gone('%s: %s %s' % (name, r.status_code,
                                                      r.text[:200]))
                    ids.append(image)
                    up = image
                return ids
            except Exception as e:
                last = e
                time.sleep(0.05 * (attempt + 1))
        self.model.untagged.update(image_id(n) for n in names)
        raise Gone('gave up: %s' % last)

    def write_tag(self, repo, tag, image, fresh=False):
        """PUT the tag; the model learns the answer.  ``fresh``: the image
        was uploaded by this client just now and nothing tags it yet, so a
        refusal while its json is there is a violation."""
        self.model.ops += 1
        try:
            r = self.put_tag(repo, tag, image)
        except Exception as e:
            self.model.doubt(repo, tag)
            if fresh:
                self.model.untagged.add(image)
            self.model.errors.append('PUT %s:%s: %r' % (repo, tag, e))
            return None
        if r.status_code == 200:
            self.model.ack(repo, tag, image)
        else:
            # the tag file may or may not have been written
            self.model.doubt(repo, tag)
            if fresh:
                self.model.untagged.add(image)
            if fresh and r.status_code == 404 and self.has(image):
                self.model.violations.append(
                    'tag PUT %s:%s -> %s answered %s for an existing image '
                    '(%s)' % (repo, tag, image[:12], r.status_code,
                              r.text[:200]))
        return r.status_code

    def remove_tag(self, repo, tag):
        self.model.ops += 1
        try:
            r = self.delete_tag(repo, tag)
        except Exception as e:
            self.model.doubt(repo, tag)
            self.model.errors.append('DELETE %s:%s: %r' % (repo, tag, e))
            return None
        if r.status_code == 200:
            self.model.ack_delete(repo, tag)
        elif r.status_code != 404:
            self.model.doubt(repo, tag)
        return r.status_code


def model_workload(urls, model, base, rounds, seed=0, tags=('t0', 't1',
                                                             't2'),
                   fresh_only=False, stop=None):
    """One client per URL in ``urls`` (each a list of registry URLs the
    client picks from at random for each operation: several hosts), each
    doing ``rounds`` operations on its own repository ``ns/c<n>``: push a
    fresh image (a child of ``base``, or a root, sometimes two deep) and
    tag it; copy one of its tags to another; delete a tag; (not
    ``fresh_only``) delete its whole repository now and then.  Stops early
    when ``stop`` is set.  Returns the model."""

    def loop(n, choices):
        rnd = random.Random(seed * 1000 + n)
        repo = 'ns/c%d' % n
        for i in range(rounds):
            if stop is not None and stop.is_set():
                return
            client = ModelClient(rnd.choice(choices), model)
            op = rnd.choice(('push', 'push', 'push', 'retag', 'delete') if
                            not fresh_only else ('push',))
            tag = rnd.choice(tags)
            try:
                if op == 'push':
                    names = ['f-%d-%d-%d-%d' % (seed, n, i, k)
                             for k in range(rnd.choice((1, 1, 2)))]
                    parent = base if rnd.random() < 0.7 else None
                    try:
                        ids = client.upload(names, parent)
                    except Gone as e:
                        model.errors.append('client %d: %s' % (n, e))
                        continue
                    client.write_tag(repo, tag, ids[-1], fresh=True)
                elif op == 'retag':
                    source = rnd.choice(tags)
                    with model.lock:
                        image = model.tags.get((repo, source))
                    if image is not None:
                        client.write_tag(repo, tag, image)
                elif op == 'delete':
                    client.remove_tag(repo, tag)
            except Exception as e:
                model.errors.append('client %d round %d %s: %r'
                                    % (n, i, op, e))
    run_clients(loop, list(enumerate(urls)), 600)
    return model


def lost_tags(model, url):
    """S1 as the clients see it: every tag the model holds names the
    acknowledged image and is pullable.  A list of problems."""
    client = Client(url)
    problems = []
    for (repo, tag), image in sorted(model.tags.items()):
        r = client._req('GET', '/v1/repositories/%s/tags/%s' % (repo, tag))
        if r.status_code != 200 or r.json() != image:
            problems.append('%s:%s should name %s, is %s %s' % (
                repo, tag, image[:12], r.status_code, r.text[:80]))
            continue
        problem = client.pullable(repo, tag)
        if problem:
            problems.append('%s:%s -> %s: %s' % (repo, tag, image[:12],
                                                 problem))
    return problems


# -- stalled workers (pause points) ------------------------------------------

def stopped_workers(reg):
    """Pids of the registry's workers that are stopped (SIGSTOP)."""
    found = []
    for pid in reg.worker_pids():
        try:
            with open('/proc/%d/stat' % pid) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except (IOError, OSError, IndexError):
            continue
        if state in ('T', 't'):
            found.append(pid)
    return found


class Stall(object):
    """The workers of ``hosts`` were started with
    ``REGISTRY_REFCOUNT_PAUSE_AT``: each stops itself there once.  Keep
    each stopped worker stopped ``hold`` seconds (the other hosts'
    background recovery runs meanwhile), then resume it; ``hold`` None:
    the first stalled worker of each host until :meth:`resume_all`, the
    others ``after`` seconds (a host keeps a worker that answers).  A thread; :meth:`finish` resumes whatever is still stopped and
    says how many stalls there were."""

    def __init__(self, hosts, hold, after=1):
        self.hosts, self.hold, self.after = hosts, hold, after
        self.stalls = []          # (host, pid, time)
        self.seen = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.daemon = True
        self.thread.start()

    def stalled_hosts(self):
        return set(id(host) for host, pid, at in self.stalls)

    def _run(self):
        while not self.done.is_set():
            for host in self.hosts:
                try:
                    pids = stopped_workers(host)
                except Exception:
                    continue
                for pid in pids:
                    if pid in self.seen:
                        continue
                    self.seen.add(pid)
                    first = id(host) not in self.stalled_hosts()
                    self.stalls.append((host, pid, time.time()))
                    hold = self.hold if self.hold is not None or first \
                        else self.after
                    if hold is not None:
                        threading.Timer(hold, self._resume,
                                        args=(pid,)).start()
            time.sleep(0.05)

    @staticmethod
    def _resume(pid):
        import signal
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass

    def resume_all(self):
        self.hold = self.after
        for host, pid, at in list(self.stalls):
            self._resume(pid)

    def finish(self):
        self.done.set()
        self.thread.join(10)
        for host in self.hosts:
            try:
                for pid in stopped_workers(host):
                    self._resume(pid)
            except Exception:
                pass
        for host, pid, at in self.stalls:
            self._resume(pid)
        return len(self.stalls)


def cli_runs_within_a_round(run, timeout=20):
    """The CLI runs (exit 0) within a few recovery rounds; until then
    it may refuse (exit 2), never anything else."""
    import time
    deadline = time.time() + timeout
    while True:
        code, doc, err = run()
        if code == 0:
            return
        assert code == 2 and 'would not exclude' in err, (code, doc, err)
        assert time.time() < deadline, (code, doc, err)
        time.sleep(0.5)


def recover_after_load(hosts, redis_server, model):
    """S1 as the clients saw it (every acknowledged tag pulls whole on
    every host), then - requests stopped - recovery once, as the CLI's."""
    assert model.violations == [], model.violations
    for host in hosts:
        assert lost_tags(model, host.url) == []          # S1
    hosts[0].settle(30)
    ctx = protocols.context(hosts[0].store(), locks.RedisLocks(
        port=redis_server.port, timeout=30), by='test')
    recovery.recover(ctx, intent_timeout=0)
