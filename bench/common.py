"""What every part shares: where results go, QUICK, medians, the machine,
memory - so that each part's JSON says what it ran on and which code."""

from __future__ import absolute_import, division, unicode_literals

import errno
import glob
import hashlib
import io
import json
import os
import platform
import shutil
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
    """A fresh folder under WORK; the caller removes it (:func:`cleanup`)."""
    try:
        os.makedirs(WORK)
    except OSError as e:    # (two counting threads make it at once)
        if e.errno != errno.EEXIST:
            raise
    return tempfile.mkdtemp(prefix=name + '-', dir=WORK)


def cleanup(folder):
    shutil.rmtree(folder, ignore_errors=True)


def core_digest():
    """A digest of registry_refcount/*.py: the report says when the parts
    of one run saw different code (the package may be edited meanwhile)."""
    h = hashlib.sha1()
    for path in sorted(glob.glob(os.path.join(ROOT, 'registry_refcount',
                                              '*.py'))):
        with open(path, 'rb') as f:
            h.update(os.path.basename(path).encode() + b'\0' + f.read())
    return h.hexdigest()[:12]


CORE_AT_START = core_digest()


def quiet_logs():
    """The extension logs every deletion (audit) at WARNING: errors only."""
    import logging
    logging.basicConfig(level=logging.ERROR)


def quick():
    return os.environ.get('QUICK', '') not in ('', '0', 'false', 'no')


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else \
        (values[mid - 1] + values[mid]) / 2.0


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    values = sorted(values)
    return values[min(len(values), max(1, -(-p * len(values) // 100))) - 1]


def _field(path, name):
    """The value of the first ``name:`` line of a /proc file."""
    with open(path) as f:
        return next((line.split(':', 1)[1].strip() for line in f
                     if line.startswith(name + ':') or
                     line.startswith(name + '\t')), '0')


def rss_kib(field='VmRSS'):
    """Resident set size of this process in KiB (``VmHWM``: its peak)."""
    return int(_field('/proc/self/status', field).split()[0])


def commit():
    """The commit measured (``BENCH_COMMIT``: named before a run rewrites
    its own result files, which makes the checkout dirty)."""
    try:
        return os.environ.get('BENCH_COMMIT') or subprocess.check_output(
            ['git', 'describe', '--always', '--dirty'], cwd=ROOT,
            stderr=open(os.devnull, 'w')).decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return '?'


def save(name, data):
    """``bench/results/<name>.json``, with the machine, date and code."""
    if not os.path.isdir(RESULTS):
        os.makedirs(RESULTS)
    data = dict(data, quick=quick(), commit=commit(), machine={
        'nproc': os.sysconf(str('SC_NPROCESSORS_ONLN')),
        'cpu': _field('/proc/cpuinfo', 'model name'),
        'memory_kib': int(_field('/proc/meminfo', 'MemTotal').split()[0]),
        'python': sys.version.split()[0], 'platform': platform.platform()},
        date=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        core_digest_start=CORE_AT_START, core_digest_end=core_digest())
    path = os.path.join(RESULTS, name + '.json')
    text = json.dumps(data, indent=1, sort_keys=True)
    with io.open(path, 'w', encoding='utf-8') as f:
        f.write(text if isinstance(text, type(u'')) else text.decode('utf-8'))
    log('written to %s' % path)


def run_child(module, args, wrapper=()):
    """``python -m bench.<module> <args>`` in a fresh process (under
    ``wrapper``: a tool's command line): its last line of output as JSON,
    and its stderr."""
    proc = subprocess.Popen(
        list(wrapper) + [sys.executable, '-m', 'bench.' + module] +
        ['%s' % a for a in args], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = [x.decode('utf-8', 'replace') for x in proc.communicate()]
    if proc.returncode:
        raise RuntimeError('%s %s failed:\n%s' % (module, args, err[-3000:]))
    return json.loads(out.strip().splitlines()[-1]), err


def load(name):
    """A part's results, or None if it did not run."""
    path = os.path.join(RESULTS, name + '.json')
    if os.path.exists(path):
        with io.open(path, encoding='utf-8') as f:
            return json.load(f)


def log(*parts):
    sys.stderr.write(' '.join('%s' % p for p in parts) + '\n')
    sys.stderr.flush()


def enabled_block(code=None):
    """The refcount block the benchmarks run: enabled, and deleting at
    once (``undo_window: 0``, the heavier path the figures were first
    published for) where the code at ``code`` (a checkout; default this
    one) knows the key: an older checkout of an A/B refuses a key it does
    not know."""
    with open(os.path.join(code or ROOT, 'registry_refcount',
                           'settings.py')) as f:
        knows = "'undo_window'" in f.read()
    return dict({'enabled': True}, **({'undo_window': 0} if knows else {}))
