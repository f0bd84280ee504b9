"""The README's second path, "Installing into an existing registry", done
as an operator would (issue 23 item 8): the wheel ``make dist`` builds,
``pip install``-ed into a fresh registry environment made the way
``make setup`` makes ``.venv27`` (``scripts/registry-env.sh``), and the
README's ``extensions: refcount:`` block pasted into the registry's *own*
sample config (the one docker-registry ships, not this project's).  The
registry then says ``refcount: enabled`` and frees an image when its tag
is deleted.

Nothing of this checkout is on the registry's path: it runs from the fresh
environment's ``bin/`` with ``PYTHONPATH`` cleared, so what it loads is
the wheel.  Building the environment fetches the registry's dependencies
as ``make setup`` does; where they cannot be fetched (offline) the test is
skipped, any other failure fails it.  ``-m 'not install'`` leaves it out.
"""

from __future__ import absolute_import, print_function

import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

from .harness import ROOT, Client, Registry

pytestmark = pytest.mark.install

#: pip's words for "the index cannot be reached"
OFFLINE = re.compile(r'NewConnectionError|Temporary failure in name '
                     r'resolution|Max retries exceeded|Network is unreachable'
                     r'|No matching distribution found')


def run(args, env=None):
    """Run ``args`` from ``/`` (from the checkout, ``python -c`` would
    import the package there); (exit code, stdout and stderr together)."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env, cwd='/')
    out = p.communicate()[0].decode('utf-8', 'replace')
    return p.returncode, out


def clean_env(**extra):
    """This process's environment without what would put this checkout
    or ``.venv27`` on a child's path."""
    env = dict(os.environ)
    for name in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV'):
        env.pop(name, None)
    env.update(extra)
    return env


def readme_block():
    """The ``extensions: refcount:`` block of the README's Configuration
    section, as text (its first ``code-block:: yaml`` that starts with
    ``extensions:``), dedented."""
    with open(os.path.join(ROOT, 'README.rst')) as f:
        text = f.read()
    for m in re.finditer(r'^\.\. code-block:: yaml\n\n((?:(?: {4}.*)?\n)+)',
                         text, re.M):
        lines = m.group(1).rstrip('\n').split('\n')
        if lines[0].strip() == 'extensions:':
            return '\n'.join(l[4:] for l in lines) + '\n'
    raise AssertionError('no extensions: block in README.rst')


def paste_into_common(sample, block):
    """``sample`` (the registry's config_sample.yml) with ``block`` pasted
    under ``common:``, which every flavor inherits (README, step 3)."""
    head = re.search(r'^common: &common\n', sample, re.M)
    assert head, 'no common: section in the registry sample config'
    indented = ''.join('    ' + l if l.strip() else l
                       for l in block.splitlines(True))
    return sample[:head.end()] + indented + sample[head.end():]


def test_wheel_into_a_fresh_registry(tmpdir):
    started = time.time()
    took = {}
    # 1. the package, as `make dist` builds it
    code, out = run(['bash', os.path.join(ROOT, 'scripts', 'dist.sh'),
                     str(tmpdir.join('dist'))], env=clean_env())
    assert code == 0, out[-3000:]
    wheels = glob.glob(str(tmpdir.join('dist', 'registry_refcount-*.whl')))
    assert len(wheels) == 1 and wheels[0].endswith('-py2.py3-none-any.whl')
    took['dist'] = time.time() - started

    # 2. a registry's environment, without the package
    venv = str(tmpdir.join('registry-venv'))
    bin_dir = os.path.join(venv, 'bin')
    code, out = run(['bash', os.path.join(ROOT, 'scripts',
                                          'registry-env.sh'), venv],
                    env=clean_env())
    if code != 0 and OFFLINE.search(out):
        pytest.skip('the registry\'s dependencies cannot be fetched '
                    '(offline?):\n' + out[-1500:])
    assert code == 0, out[-3000:]
    took['environment'] = time.time() - started - took['dist']

    # 3. the README's install: the wheel with its progress extra (tqdm)
    code, out = run([os.path.join(bin_dir, 'pip'), 'install', '-q', '-c',
                     os.path.join(ROOT, 'constraints-py27.txt'),
                     wheels[0] + '[progress]'], env=clean_env())
    if code != 0 and OFFLINE.search(out):
        pytest.skip('tqdm cannot be fetched (offline?):\n' + out[-1500:])
    assert code == 0, out[-3000:]
    code, out = run([os.path.join(bin_dir, 'python'), '-c',
                     'import registry_refcount, tqdm, distutils.sysconfig; '
                     'print(registry_refcount.__file__); '
                     'print(distutils.sysconfig.get_python_lib())'],
                    env=clean_env())
    assert code == 0, out
    package, site = out.split()
    assert package.startswith(os.path.realpath(venv)) or \
        package.startswith(venv), package

    # 4. the registry's own sample config, with the README's block pasted
    with open(os.path.join(site, 'config', 'config_sample.yml')) as f:
        sample = f.read()
    config = str(tmpdir.join('config.yml'))
    with open(config, 'w') as f:
        f.write(paste_into_common(sample, readme_block()))

    # 5. the registry, from the fresh environment alone
    storage = str(tmpdir.join('storage'))
    env = {'DOCKER_REGISTRY_CONFIG': config, 'SETTINGS_FLAVOR': 'local',
           # a tag delete frees its image at once (by default it waits an
           # hour in the trash: tests/registry/test_undo.py)
           'REFCOUNT_UNDO_WINDOW': '0',
           'PATH': bin_dir + os.pathsep + os.environ.get('PATH', ''),
           'PYTHONPATH': ''}
    workdir = tmpdir.mkdir('registry')
    reg = Registry(str(workdir), refcount=None, flavor='local', env=env,
                   storage=storage,
                   command=[os.path.join(bin_dir, 'docker-registry')])
    try:
        reg.start()
        with open('/proc/%d/cmdline' % reg.proc.pid, 'rb') as f:
            cmdline = f.read().decode('utf-8', 'replace')
        assert venv in cmdline, cmdline     # its gunicorn, its python
        said = re.findall(r'^refcount: enabled .*$', reg.log(), re.M)
        assert said, reg.log()[-3000:]
        # the line the README shows, word for word
        assert set(said) == {
            'refcount: enabled (dry_run=False, lock_backend=local)'}, said
        with open(os.path.join(ROOT, 'README.rst')) as f:
            assert '\n       %s\n' % said[0] in f.read()
        client = Client(reg.url)
        base = client.push('ops/base', 'keep', ['inst-base'])
        app = client.push('ops/app', 'v1', ['inst-app'], base[-1])
        image = os.path.join(storage, 'images', app[0])
        assert os.path.isdir(image)
        assert client.delete_tag('ops/app', 'v1').status_code == 200
        deadline = time.time() + 10
        while os.path.exists(image) and time.time() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(image), reg.log()[-3000:]
        assert client.pullable('ops/base', 'keep') is None
    finally:
        reg.stop()

    # 6. the operator's command from the same environment, same config
    code, out = run([os.path.join(bin_dir, 'registry-refcount'), '--json',
                     'status'],
                    env=clean_env(DOCKER_REGISTRY_CONFIG=config,
                                  SETTINGS_FLAVOR='local',
                                  STORAGE_PATH=storage))
    assert code == 0, out
    status = json.loads(out)
    assert status['initialised'] is True and status['images'] == 1, status
    took['total'] = time.time() - started
    sys.stderr.write('install test: %s\n' % ', '.join(
        '%s %.1fs' % kv for kv in sorted(took.items())))
