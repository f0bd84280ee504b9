"""Shared helpers: the machine, medians, percentiles, result files."""

from __future__ import absolute_import, division, unicode_literals

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'results')
WORK = os.environ.get('BENCH_WORKDIR') or os.path.join(
    tempfile.gettempdir(), 'registry-refcount-bench')


def workdir(name):
    """A fresh folder of this process under WORK (removed by the caller
    with :func:`cleanup`)."""
    if not os.path.isdir(WORK):
        try:
            os.makedirs(WORK)
        except OSError:
            pass
    return tempfile.mkdtemp(prefix='%s-' % name, dir=WORK)


def cleanup(folder):
    import shutil
    shutil.rmtree(folder, ignore_errors=True)


def core_digest():
    """A digest of the core package's source (registry_refcount/*.py): a
    run whose parts saw different code says so in the report."""
    import glob
    import hashlib
    h = hashlib.sha1()
    for path in sorted(glob.glob(os.path.join(ROOT, 'registry_refcount',
                                              '*.py'))):
        with open(path, 'rb') as f:
            h.update(os.path.basename(path).encode() + b'\0' + f.read())
    return h.hexdigest()[:12]


CORE_AT_START = core_digest()


def quiet_logs():
    """The extension logs every deletion (audit) at WARNING: keep the
    benchmark's output to errors."""
    import logging
    logging.basicConfig(level=logging.ERROR,
                        format='%(levelname)s %(name)s: %(message)s')


def quick():
    return os.environ.get('QUICK', '') not in ('', '0', 'false', 'no')


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2.0


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    values = sorted(values)
    if not values:
        return None
    rank = max(1, int(-(-p * len(values) // 100)))
    return values[min(rank, len(values)) - 1]


def machine():
    info = {'nproc': os.sysconf(str('SC_NPROCESSORS_ONLN')),
            'python': sys.version.split()[0],
            'platform': platform.platform()}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except IOError:
        pass
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemTotal'):
                    info['memory_kib'] = int(line.split()[1])
                    break
    except IOError:
        pass
    try:
        info['commit'] = os.environ.get('BENCH_COMMIT') or \
            subprocess.check_output(['git', 'describe', '--always',
                                     '--dirty'], cwd=ROOT,
                                    stderr=open(os.devnull, 'w')
                                    ).decode().strip()
    except Exception:
        pass
    return info


def save(name, data):
    if not os.path.isdir(RESULTS):
        os.makedirs(RESULTS)
    data = dict(data)
    data.setdefault('machine', machine())
    data.setdefault('date', time.strftime('%Y-%m-%d %H:%M:%S %Z'))
    data.setdefault('quick', quick())
    data['core_digest_start'] = CORE_AT_START
    data['core_digest_end'] = core_digest()
    path = os.path.join(RESULTS, name + '.json')
    text = json.dumps(data, indent=1, sort_keys=True)
    with io.open(path, 'w', encoding='utf-8') as f:
        f.write(text if isinstance(text, type(u'')) else text.decode('utf-8'))
    return path


def rss_kib():
    """Current resident set size of this process (KiB)."""
    return _status_kib('VmRSS:')


def peak_rss_kib():
    """Peak resident set size of this process so far (KiB)."""
    return _status_kib('VmHWM:')


def _status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def log(*parts):
    sys.stderr.write(' '.join('%s' % p for p in parts) + '\n')
    sys.stderr.flush()
