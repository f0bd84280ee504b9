"""Services the tests start themselves, on 127.0.0.1 only.

* :class:`MotoServer` - moto's S3 server (``.venv-moto``, made by
  ``make setup``), which the registry's own S3 driver (boto 2.34.0, plain
  HTTP, ``OrdinaryCallingFormat``) talks to;
* :class:`RedisServer` - Debian's ``redis-server``, without persistence.

Each runs in its own process group on a free port, logs into its own
temporary folder, and is stopped cleanly (SIGTERM, then SIGKILL).  Both can
be stopped and started again on the same port, which the failure tests use.
"""

from __future__ import absolute_import, print_function

import itertools
import os
import signal
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MOTO_SERVER = os.path.join(ROOT, '.venv-moto', 'bin', 'moto_server')
REDIS_SERVER = os.environ.get('REDIS_SERVER', 'redis-server')

#: What the registry's S3 driver needs besides host, port and bucket.
#: moto's server picks the service of a signed request by splitting the
#: ``Authorization`` header as if it were SigV4 (``key:sig`` on ``/``);
#: boto 2's SigV2 ``AWS key:signature`` with exactly four ``/`` in the
#: base64 signature (about one request in a thousand) is then routed to no
#: service and answered 500.  Six ``/`` in the key make that split always
#: fail, and moto falls back to S3.
S3_KEY = 'registry/test/key/for/moto/s3'
S3_SECRET = 'registry-test-secret'
S3_ROOT = '/registry'
CALLING_FORMAT = 'boto.s3.connection.OrdinaryCallingFormat'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Service(object):
    """A server process of our own, in its own process group."""

    name = 'service'

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        if not os.path.isdir(workdir):
            os.makedirs(workdir)
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(workdir, '%s.log' % self.name)

    def command(self):
        raise NotImplementedError

    def ready(self):
        raise NotImplementedError

    def start(self, timeout=30):
        log = open(self.log_path, 'a')
        self.proc = subprocess.Popen(self.command(), stdout=log,
                                     stderr=subprocess.STDOUT,
                                     cwd=self.workdir, preexec_fn=os.setsid)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited (%s):\n%s' % (
                    self.name, self.proc.returncode, self.log()[-3000:]))
            try:
                if self.ready():
                    return self
            except Exception:
                pass
            time.sleep(0.1)
        self.stop(hard=True)
        raise RuntimeError('%s did not start:\n%s' % (self.name,
                                                      self.log()[-3000:]))

    def stop(self, hard=False):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 10
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except IOError:
            return ''


class RedisServer(Service):
    name = 'redis'

    def command(self):
        return [REDIS_SERVER, '--bind', '127.0.0.1', '--port', str(self.port),
                '--save', '', '--appendonly', 'no', '--dir', self.workdir,
                '--daemonize', 'no', '--protected-mode', 'no']

    def client(self, db=0):
        import redis
        return redis.StrictRedis(host='127.0.0.1', port=self.port, db=db,
                                 socket_timeout=5)

    def ready(self):
        return self.client().ping()

    def settings(self, db=0):
        """The ``extensions.refcount.redis`` block for this server."""
        return {'host': '127.0.0.1', 'port': self.port, 'db': db}


class MotoServer(Service):
    name = 'moto'
    _buckets = itertools.count()

    def command(self):
        if not os.path.exists(MOTO_SERVER):
            raise RuntimeError('%s is missing: run `make setup`'
                               % MOTO_SERVER)
        return [MOTO_SERVER, '-H', '127.0.0.1', '-p', str(self.port)]

    def connection(self):
        import boto.s3.connection
        return boto.s3.connection.S3Connection(
            S3_KEY, S3_SECRET, host='127.0.0.1', port=self.port,
            is_secure=False, calling_format=CALLING_FORMAT)

    def ready(self):
        self.connection().get_all_buckets()
        return True

    def new_bucket(self, prefix='registry'):
        """A fresh, empty bucket; its name."""
        name = '%s-%d-%d' % (prefix, os.getpid(), next(self._buckets))
        self.connection().create_bucket(name)
        return name

    def env(self, bucket):
        """The environment of the registry's ``s3`` flavor for ``bucket``
        (as ``config_sample.yml`` reads it)."""
        return {
            'AWS_HOST': '127.0.0.1', 'AWS_PORT': str(self.port),
            'AWS_BUCKET': bucket, 'AWS_KEY': S3_KEY,
            'AWS_SECRET': S3_SECRET, 'AWS_SECURE': 'false',
            'AWS_ENCRYPT': 'false', 'AWS_CALLING_FORMAT': CALLING_FORMAT,
            'STORAGE_PATH': S3_ROOT,
        }

    def store(self, bucket, path=S3_ROOT):
        """The registry's own S3 driver on ``bucket``."""
        return s3_store(self.env(bucket), path)


def s3_driver_class():
    """``docker_registry.drivers.s3.Storage``, imported without its
    module-level ``gevent.monkey.patch_all()``: the registry runs it under
    gevent, but a patch of the whole test process (threads turned into
    greenlets half way through a session) would change every later test.
    The driver itself is used as it is; boto works without gevent."""
    import sys
    if 'docker_registry.drivers.s3' not in sys.modules:
        import gevent.monkey
        patch_all = gevent.monkey.patch_all
        gevent.monkey.patch_all = lambda *args, **kwargs: None
        try:
            from docker_registry.drivers import s3  # noqa
        finally:
            gevent.monkey.patch_all = patch_all
    return sys.modules['docker_registry.drivers.s3'].Storage


def s3_store(env, path=S3_ROOT):
    """The registry's S3 driver configured from the same environment the
    registry reads (``AWS_*``)."""
    from docker_registry.lib.config import Config
    config = Config({
        'storage': 's3', 'storage_path': path,
        's3_bucket': env['AWS_BUCKET'], 'boto_bucket': env['AWS_BUCKET'],
        's3_access_key': env['AWS_KEY'], 's3_secret_key': env['AWS_SECRET'],
        's3_secure': env.get('AWS_SECURE', 'false') == 'true',
        's3_encrypt': env.get('AWS_ENCRYPT', 'false') == 'true',
        'boto_host': env['AWS_HOST'], 'boto_port': int(env['AWS_PORT']),
        'boto_calling_format': env.get('AWS_CALLING_FORMAT', CALLING_FORMAT),
    })
    return s3_driver_class()(path, config)


def bucket_keys(env, path=S3_ROOT):
    """``{path relative to the storage root: etag}`` of every object under
    the registry's storage root in its bucket (read with boto)."""
    import boto.s3.connection
    conn = boto.s3.connection.S3Connection(
        env['AWS_KEY'], env['AWS_SECRET'], host=env['AWS_HOST'],
        port=int(env['AWS_PORT']), is_secure=False,
        calling_format=env.get('AWS_CALLING_FORMAT', CALLING_FORMAT))
    bucket = conn.get_bucket(env['AWS_BUCKET'])
    prefix = path.strip('/') + '/'
    return dict((key.name[len(prefix):], key.etag)
                for key in bucket.list(prefix=prefix))


def s3_outside_listing(env, path=S3_ROOT):
    """Like ``invariants.outside_listing`` for a bucket: every object
    outside ``images/`` and ``extensions/refcount/``, with its etag."""
    return dict((name, etag) for name, etag in bucket_keys(env, path).items()
                if not name.startswith(('images/', 'extensions/refcount/')))


class TcpProxy(object):
    """A TCP proxy on 127.0.0.1 to a local port, byte for byte, that can
    cut the line: :meth:`cut` resets every open connection and every new
    one until :meth:`restore` (what a client sees when a storage endpoint
    goes away and comes back).  Threads of the test process."""

    def __init__(self, target_port):
        import threading
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.closed = False
        self.conns = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept)
        self.thread.daemon = True
        self.thread.start()

    def _spawn(self, fn, *args):
        import threading
        t = threading.Thread(target=fn, args=args)
        t.daemon = True
        t.start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except socket.error:
                continue
            if not self.up:
                _reset(conn)
                continue
            try:
                upstream = socket.create_connection(('127.0.0.1',
                                                     self.target_port), 5)
            except socket.error:
                _reset(conn)
                continue
            for s in (conn, upstream):     # no Nagle delays added by us
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.update((conn, upstream))
            self._spawn(self._pipe, conn, upstream, self._watcher(True))
            self._spawn(self._pipe, upstream, conn, self._watcher(False))

    def _watcher(self, up):
        """A callable given each chunk one direction of a new connection
        relays (``up``: client to server), or None: for subclasses that
        look at the traffic (bench/wire.py counts it)."""
        return None

    def _pipe(self, src, dst, watch=None):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if watch is not None:
                    watch(data)
                dst.sendall(data)
        except socket.error:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except socket.error:
                    pass
            with self.lock:
                self.conns.difference_update((src, dst))
            for s in (src, dst):
                s.close()

    def cut(self):
        self.up = False
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for s in conns:
            _reset(s)

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.closed = True
        try:
            self.listener.close()
        except socket.error:
            pass


class Delaying(TcpProxy):
    """A :class:`TcpProxy` that adds ``delay`` seconds to each request on
    its way to the server (each chunk is sent on ``delay`` after it came:
    a fixed one-way latency, so each round trip takes ``delay`` longer -
    what object storage far away costs), and logs every request: its
    first line, when it came and when its answer's last byte went back
    (``requests``, a list of ``(start, end, line)``).  A request is what
    a client sends on a connection after the server last answered on it.
    """

    def __init__(self, target_port, delay):
        import threading
        self.delay = delay
        self.requests = []
        self.log_lock = threading.Lock()
        TcpProxy.__init__(self, target_port)

    def _pipe(self, src, dst, watch=None):
        if watch is None:
            return TcpProxy._pipe(self, src, dst)
        # client to server: read here, sent on by a thread of its own at
        # the time each chunk is due, so that reading never waits on the
        # delay (the latency is fixed, not added up chunk by chunk)
        import threading
        try:
            import queue
        except ImportError:                      # Python 2
            import Queue as queue
        due = queue.Queue()

        class Chunks(object):
            def recv(self, size):
                when, data = due.get()
                pause = when - time.time()
                if pause > 0:
                    time.sleep(pause)
                return data

            def __getattr__(self, name):
                return getattr(src, name)

        def reader():
            try:
                while True:
                    data = src.recv(65536)
                    watch(data)
                    due.put((time.time() + self.delay, data))
                    if not data:
                        break
            except socket.error:
                due.put((0, b''))
        t = threading.Thread(target=reader)
        t.daemon = True
        t.start()
        TcpProxy._pipe(self, Chunks(), dst)

    def _watcher(self, up):
        # called for each new connection, client to server first
        if up:
            self._state = self._connection_state()
        return self._state.up if up else self._state.down

    def _connection_state(self):
        proxy = self

        class State(object):
            current = None          # [start, end, line] of the request

            def up(self, data):
                if not data:
                    return
                if self.current is None or self.current[1] is not None:
                    line = data.split(b'\r\n', 1)[0].decode('latin-1')
                    self.current = [time.time(), None, line]
                    with proxy.log_lock:
                        proxy.requests.append(self.current)

            def down(self, data):
                if self.current is not None:
                    self.current[1] = time.time()
        return State()

    def quiet(self, seconds, timeout=60):
        """Wait until no request has come or been answered for
        ``seconds`` (the work after a response is over)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.log_lock:
                last = max([r[1] or time.time() for r in self.requests[-50:]]
                           + [r[0] for r in self.requests[-50:]] + [0])
            if time.time() - last >= seconds:
                return
            time.sleep(seconds / 4.0)
        raise AssertionError('the relay never went quiet')

    def between(self, start, end):
        """The requests that began and were answered in ``[start, end]``:
        ``[(start, end, line)]`` in the order they began."""
        with self.log_lock:
            return [tuple(r) for r in self.requests
                    if r[1] is not None and start <= r[0] and r[1] <= end]


def sequential(requests):
    """The longest chain of ``requests`` (``(start, end, ...)``) each of
    which began after the one before was answered: how many round trips
    one after the other they cost, however many went in parallel.
    (Earliest end first is the longest such chain.)"""
    chain, free = 0, float('-inf')
    for start, end in sorted(((r[0], r[1]) for r in requests),
                             key=lambda r: r[1]):
        if start >= free:
            chain, free = chain + 1, end
    return chain


class FailingPuts(TcpProxy):
    """A :class:`TcpProxy` that fails chosen PUTs: :meth:`fail` names a
    pattern of the request line and how many such PUTs to fail; each is
    cut before a byte of it reaches the server (what a client sees when
    a request fails on the way).  ``failed`` lists the request lines it
    cut."""

    def __init__(self, target_port):
        import threading
        self.rules = []
        self.failed = []
        self.rule_lock = threading.Lock()
        TcpProxy.__init__(self, target_port)

    def fail(self, pattern, times=1):
        """Fail the next ``times`` PUTs whose path matches ``pattern`` (a
        regular expression searched in the path)."""
        import re
        with self.rule_lock:
            self.rules.append([re.compile(pattern.encode()), times])

    def _watcher(self, up):
        return self._check if up else None

    def _check(self, data):
        import re
        line = re.match(br'PUT (\S+) HTTP/1\.[01]\r\n', data)
        if line is None:
            return
        with self.rule_lock:
            for rule in self.rules:
                if rule[1] > 0 and rule[0].search(line.group(1)):
                    rule[1] -= 1
                    self.failed.append(line.group(1).decode())
                    raise socket.error('FailingPuts: cut %s'
                                       % line.group(1).decode())


def _reset(sock):
    """Close with a TCP reset (SO_LINGER 0)."""
    import struct
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack('ii', 1, 0))
        sock.close()
    except socket.error:
        pass
