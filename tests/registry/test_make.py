"""The README's commands as an operator meets them: ``make run`` serves the
registry with the extension over local storage, and ``make refcount`` runs
the operator's command on that same registry."""

from __future__ import absolute_import

import json
import os
import subprocess

from .harness import ROOT, Client, Registry


def make(*args, **env):
    """``make -s ARGS`` in the project, with ``env`` added; its stdout."""
    environ = dict(os.environ, **env)
    p = subprocess.Popen(['make', '-s', '-C', ROOT] + list(args),
                         env=environ, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = p.communicate()
    assert p.returncode == 0, err.decode('utf-8', 'replace')[-3000:]
    return out.decode('utf-8')


def test_make_run_frees_space_and_make_refcount_sees_it(tmpdir):
    """A push, a retag and a tag delete through ``make run``; the images
    nothing needs any more are gone, and ``make refcount`` (JSON on stdout
    alone, setup's messages on stderr) reports the same storage as
    initialised and consistent."""
    storage = str(tmpdir.join('storage'))
    env = {'REFCOUNT_LOCK_DIR': str(tmpdir.join('locks')),
           # freed at once (config_sample.yml's default keeps an hour)
           'REFCOUNT_UNDO_WINDOW': '0'}
    reg = Registry(str(tmpdir), refcount={'enabled': True}, env=env,
                   storage=storage, command=['make', '-s', '-C', ROOT, 'run'])
    try:
        reg.start()
        assert 'refcount: enabled' in reg.log()
        client = Client(reg.url)
        base = client.push('ops/base', 'keep', ['mk-base'])
        old = client.push('ops/app', 'latest', ['mk-old'], base[-1])
        new = client.push('ops/app', 'latest', ['mk-new'], base[-1])  # retag
        assert reg.images() == set(base + new)
        assert client.delete_tag('ops/app', 'latest').status_code == 200
        assert reg.images() == set(base)
        assert client.pullable('ops/base', 'keep') is None
    finally:
        reg.stop()
    assert old[0] not in reg.images()
    doc = json.loads(make('refcount', 'ARGS=--json verify',
                          STORAGE_PATH=storage, **env))
    assert doc['command'] == 'verify'
    assert doc['exit_code'] == 0, doc
    status = json.loads(make('refcount', 'ARGS=--json status',
                             STORAGE_PATH=storage, **env))
    assert status['initialised'] is True, status
    assert status['storage'] == storage, status
    assert status['images'] == 1, status


def test_make_refcount_says_the_commands_own_exit_code(tmpdir):
    """GNU make exits 2 on any failed recipe; ``make refcount`` says the
    command's own code (1: a registry not initialised yet) on stderr."""
    storage = tmpdir.join('storage')
    storage.join('repositories', 'library', 'app').ensure(dir=True)
    p = subprocess.Popen(['make', '-s', '-C', ROOT, 'refcount',
                          'ARGS=status'],
                         env=dict(os.environ, STORAGE_PATH=str(storage)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    assert p.returncode == 2, (out, err)
    assert 'registry-refcount exited with 1' in err.decode('utf-8'), err
