"""The real docker-registry 0.9.1 under gunicorn, and a docker 1.x client.

:class:`Registry` starts ``docker-registry`` (its own console script:
gunicorn with gevent workers) on a free 127.0.0.1 port with a config made
from the project's ``config_sample.yml``, and stops it cleanly.
:class:`Client` pushes the way docker 1.x does: for each image, root
first, ``PUT json``, ``PUT layer`` (a real tar), ``PUT checksum``; then
the tag; then the images list.
"""

from __future__ import absolute_import, print_function

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import requests
import yaml

from tests.services import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(sys.executable)
#: What a process logs when it stops itself at a pause point (``crash``).
PAUSE_RE = re.compile(r'refcount: pause point (\w+) \(pid (\d+)\)')


def make_config(path, refcount=None, flavor='local', extra=None):
    """Write a registry config: the sample's ``flavor`` with the refcount
    block replaced by ``refcount`` (None: no block at all)."""
    with open(os.path.join(ROOT, 'config_sample.yml')) as f:
        sample = yaml.safe_load(f)
    conf = dict(sample[flavor])
    conf.pop('extensions', None)
    if refcount is not None:
        conf['extensions'] = {'refcount': refcount}
    conf.update(extra or {})
    with open(path, 'w') as f:
        yaml.safe_dump({flavor: conf}, f, default_flow_style=False)
    return path


class Registry(object):
    def __init__(self, workdir, refcount=None, workers=2, flavor='local',
                 env=None, extra=None, storage=None, command=None):
        self.workdir = workdir
        #: what serves it: the registry's own script, or e.g. `make run`
        self.command = command or [os.path.join(BIN, 'docker-registry')]
        self.storage = storage or os.path.join(workdir, 'storage')
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.workers = workers
        self.refcount = refcount
        self.flavor = flavor
        self.config = make_config(os.path.join(workdir, 'config.yml'),
                                  refcount, flavor, extra)
        self.env = dict(env or {})
        self.proc = None
        self.log_path = os.path.join(workdir, 'registry.log')
        self._store = None

    def start(self, env=None, wait=True):
        environ = dict(os.environ)
        environ.update({
            'DOCKER_REGISTRY_CONFIG': self.config,
            'SETTINGS_FLAVOR': self.flavor,
            'STORAGE_PATH': self.storage,
            'REGISTRY_HOST': '127.0.0.1',
            'REGISTRY_PORT': str(self.port),
            'GUNICORN_WORKERS': str(self.workers),
            'GUNICORN_GRACEFUL_TIMEOUT': '5',
            'LOGLEVEL': 'info',
            'PATH': BIN + os.pathsep + environ.get('PATH', ''),
        })
        environ.pop('REGISTRY_REFCOUNT_CRASH_AT', None)
        environ.update(self.env)
        environ.update(env or {})
        log = open(self.log_path, 'a')
        self.proc = subprocess.Popen(
            self.command, env=environ,
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            preexec_fn=os.setsid)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('registry exited (%s):\n%s' % (
                    self.proc.returncode, self.log()[-4000:]))
            try:
                if requests.get(self.url + '/_ping', timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError('registry did not start:\n' + self.log()[-4000:])

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def pauses(self):
        """``(point, pid)`` of every pause point a process of this
        registry stopped at, in the order of its log."""
        return [(m.group(1), int(m.group(2)))
                for m in PAUSE_RE.finditer(self.log())]

    def worker_pids(self):
        out = subprocess.check_output(['ps', '-o', 'pid=', '--ppid',
                                       str(self.proc.pid)])
        return [int(p) for p in out.split()]

    def kill_worker(self, pid=None):
        pids = self.worker_pids()
        pid = pid or pids[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self, hard=False):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if hard else
                      signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 15
        while self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, env=None):
        self.stop()
        return self.start(env=env)

    def path(self, *parts):
        return os.path.join(self.storage, *parts)

    # -- the registry's storage, whatever the flavor ----------------------

    def store(self):
        """The registry's storage through its own driver (file or s3)."""
        if self._store is None:
            if self.flavor == 's3':
                from ..services import s3_store
                self._store = s3_store(self.env)
            else:
                from docker_registry.drivers import file as file_driver
                self._store = file_driver.Storage(path=self.storage)
        return self._store

    def images(self):
        """Image folders in storage (an image with any file left)."""
        self.settle()
        return set(_entries(self.store(), 'images'))

    def exists(self, path):
        """A file, or a folder holding anything, in storage."""
        self.settle()
        store = self.store()
        return store.exists(path) or bool(_entries(store, path))

    def outside_listing(self):
        """Every file outside ``images/`` and ``extensions/refcount/``,
        with a content digest (for S2 checks)."""
        self.settle()
        if self.flavor == 's3':
            from ..services import s3_outside_listing
            return s3_outside_listing(self.env)
        from registry_refcount import invariants
        return invariants.outside_listing(self.storage)

    def wait_recovered(self, timeout=30):
        """Until the extension's intents and journal are empty."""
        if not self.settle(timeout):
            raise AssertionError('recovery did not finish:\n' +
                                 self.log()[-4000:])

    def settle(self, timeout=10):
        """Wait (up to ``timeout``) for the work the extension does after
        its responses: until no intent and no deletion is outstanding.
        True if it settled."""
        if not self.refcount:
            return True
        deadline = time.time() + timeout
        while True:
            if not (_entries(self.store(), 'extensions/refcount/intents') or
                    _entries(self.store(), 'extensions/refcount/deleting')):
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.02)


def _entries(store, folder):
    from registry_refcount import records
    from registry_refcount import layout
    return [n for n in records.listing(store, folder)
            if not layout.is_scratch(n)]


def image_id(name):
    return hashlib.sha256(('img:%s' % name).encode()).hexdigest()


def make_layer(name, size=64):
    """A real tar with one file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        data = (('%s\n' % name) * (size // (len(name) + 1) + 1)).encode()
        info = tarfile.TarInfo('data/%s.txt' % hashlib.md5(
            name.encode()).hexdigest())
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Client(object):
    """docker 1.x's v1 push and pull, over HTTP."""

    UA = 'docker/1.3.0 go/go1.3.3 kernel/3.16 os/linux arch/amd64'

    def __init__(self, url):
        self.url = url
        self.http = requests.Session()
        self.http.headers['User-Agent'] = self.UA

    def _req(self, method, path, **kw):
        kw.setdefault('timeout', 60)
        return self.http.request(method, self.url + path, **kw)

    def push_image(self, image, parent=None, layer=None):
        """PUT json, layer, checksum; returns the last response."""
        doc = {'id': image, 'created': '2014-10-01T00:00:00Z',
               'container_config': {'Cmd': ['/bin/true']}}
        if parent:
            doc['parent'] = parent
        body = json.dumps(doc)
        r = self._req('PUT', '/v1/images/%s/json' % image, data=body,
                      headers={'Content-Type': 'application/json'})
        if r.status_code != 200:
            return r
        layer = layer if layer is not None else make_layer(image)
        r = self._req('PUT', '/v1/images/%s/layer' % image, data=layer)
        if r.status_code != 200:
            return r
        csum = 'sha256:' + hashlib.sha256(
            body.encode() + b'\n' + layer).hexdigest()
        return self._req('PUT', '/v1/images/%s/checksum' % image,
                         headers={'X-Docker-Checksum-Payload': csum})

    def push_chain(self, names, parent=None):
        """Push images named ``names`` root first on ``parent``; ids."""
        ids = []
        for name in names:
            image = image_id(name)
            r = self.push_image(image, parent)
            assert r.status_code == 200, (name, r.status_code, r.text)
            ids.append(image)
            parent = image
        return ids

    def put_tag(self, repo, tag, image, raw=None):
        body = raw if raw is not None else json.dumps(image)
        return self._req('PUT', '/v1/repositories/%s/tags/%s' % (repo, tag),
                         data=body)

    def tag(self, repo, tag, image):
        r = self.put_tag(repo, tag, image)
        assert r.status_code == 200, (repo, tag, r.status_code, r.text)
        return r

    def push(self, repo, tag, names, parent=None):
        """A whole docker push: repository PUT, images, tag, images list."""
        ids = self.push_chain(names, parent)
        listing = json.dumps([{'id': i} for i in ids])
        self._req('PUT', '/v1/repositories/%s/' % repo, data=listing)
        self.tag(repo, tag, ids[-1])
        self._req('PUT', '/v1/repositories/%s/images' % repo, data=listing)
        return ids

    def delete_tag(self, repo, tag):
        return self._req('DELETE', '/v1/repositories/%s/tags/%s'
                         % (repo, tag))

    def delete_repository(self, repo, endpoint='/'):
        return self._req('DELETE', '/v1/repositories/%s%s' % (repo, endpoint))

    def tags(self, repo):
        r = self._req('GET', '/v1/repositories/%s/tags' % repo)
        return r.json() if r.status_code == 200 else {}

    def pullable(self, repo, tag):
        """Tag, ancestry, and json + layer of every image: all 200."""
        r = self._req('GET', '/v1/repositories/%s/tags/%s' % (repo, tag))
        if r.status_code != 200:
            return 'tag %s' % r.status_code
        top = r.json()
        r = self._req('GET', '/v1/images/%s/ancestry' % top)
        if r.status_code != 200:
            return 'ancestry of %s: %s' % (top, r.status_code)
        for image in r.json():
            for what in ('json', 'layer'):
                r = self._req('GET', '/v1/images/%s/%s' % (image, what))
                if r.status_code != 200:
                    return '%s of %s: %s' % (what, image, r.status_code)
        return None
