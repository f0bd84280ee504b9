"""Issue 21, items 4 and 11: writes the extension did not see (it was
off for a while, a host runs without it, a full disk let a request
through untracked) must not let a deletion take what they made needed,
and the extension catches up with them on its own."""

from __future__ import absolute_import

import contextlib
import os
import subprocess
import time

import pytest

from .conftest import assert_invariants, refcount_settings
from .harness import Client
from .test_cli import run


def wait_caught_up(reg, timeout=30):
    """Until ``verify`` says the records equal the truth (the catch-up
    runs in the workers' recovery rounds)."""
    deadline = time.time() + timeout
    while True:
        code, doc, out, err = run(reg, 'verify')
        if code == 0 or time.time() > deadline:
            return code, out + err
        time.sleep(0.5)


def test_a_gap_without_the_extension_deletes_nothing_it_needs(
        make_registry):
    """The exact scenario of item 4: base <- app1 tagged; restart
    disabled; app2 on base tagged; restart enabled; untag app1."""
    first = make_registry().start()
    client = Client(first.url)
    base = client.push_chain(['gap-base'])
    app1 = client.push('ns/app1', 'v', ['gap-app1'], base[-1])
    first.stop()
    alone = make_registry(refcount={'enabled': False},
                          storage=first.storage).start()
    app2 = Client(alone.url).push('ns/app2', 'v', ['gap-app2'], base[-1])
    alone.stop()
    again = make_registry(storage=first.storage).start()
    client = Client(again.url)
    assert client.delete_tag('ns/app1', 'v').status_code == 200
    again.settle()
    assert again.images() == set(base + app2)
    assert client.pullable('ns/app2', 'v') is None
    code, out = wait_caught_up(again)
    assert code == 0, out
    # deletions work again, the whole chain included
    assert client.delete_tag('ns/app2', 'v').status_code == 200
    again.settle()
    assert again.images() == set()
    assert app1


def test_a_host_without_the_extension_beside_one_with_it(make_registry,
                                                        tmpdir):
    """Two hosts on one storage, one without the extension: its pushes
    register no child and its tags no marker.  A cascade on the other
    host must not take what they name.  (Recovery rounds are far apart:
    the deletion itself must notice.)"""
    ext = make_registry(refcount=refcount_settings(
        tmpdir, recovery_interval=600)).start()
    plain = make_registry(refcount=None, storage=ext.storage).start()
    time.sleep(1)         # the first recovery round, at start, is over
    with_ext, without = Client(ext.url), Client(plain.url)
    base = with_ext.push_chain(['mix-base'])
    app1 = with_ext.push('ns/app1', 'v', ['mix-app1'], base[-1])
    app2 = without.push('ns/app2', 'v', ['mix-app2'], base[-1])
    low = with_ext.push('ns/m', 'v', ['mix-m1', 'mix-m2'])
    without.tag('ns/other', 'v', low[0])
    assert with_ext.delete_tag('ns/app1', 'v').status_code == 200
    assert with_ext.delete_tag('ns/m', 'v').status_code == 200
    ext.settle()
    assert ext.images() == set(base + app2 + low[:1])
    assert with_ext.pullable('ns/app2', 'v') is None
    assert with_ext.pullable('ns/other', 'v') is None
    assert app1


@contextlib.contextmanager
def small_file_system(path, size='3m'):
    """A tmpfs of ``size`` at ``path`` (root only)."""
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root')
    os.makedirs(path)
    subprocess.check_call(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size,
                           'tmpfs', path])
    try:
        yield path
    finally:
        subprocess.call(['umount', '-l', path])


def fill(folder):
    """Write a file until the file system is full; its path."""
    path = os.path.join(folder, 'filler')
    chunk = b'x' * 4096
    with open(path, 'wb') as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except (IOError, OSError):
            pass
    return path


def full_disk_scenario(reg):
    """Push, fill the disk, then a retag, a push and a new tag: the
    answers, and the filler's path."""
    client = Client(reg.url)
    base = client.push_chain(['full-base'])
    client.push('ns/app', 'v', ['full-a'], base[-1])
    b = client.push_chain(['full-b'], base[-1])
    reg.settle()
    filler = fill(reg.storage)
    answers = [client.put_tag('ns/app', 'v', b[-1]).status_code]
    answers.append(client.push_image('f' * 64, base[-1]).status_code)
    answers.append(client.put_tag('ns/new', 'v', b[-1]).status_code)
    return answers, filler, base + b


def test_a_full_disk_answers_as_the_registry_alone(make_registry, tmpdir):
    """Item 11: on a full disk the extension refuses nothing the registry
    alone would do, and catches up once there is room again."""
    results = {}
    for mode, refcount in (('alone', None), ('with', 'default')):
        fs = str(tmpdir.join('fs-' + mode))
        with small_file_system(fs):
            reg = make_registry(refcount=refcount,
                                storage=os.path.join(fs, 'storage'))
            reg.start()
            answers, filler, live = full_disk_scenario(reg)
            results[mode] = answers
            if mode == 'with':
                os.remove(filler)
                client = Client(reg.url)
                # the registry's own failed write left an empty tag
                # file: the client tries again
                client.tag('ns/new', 'v', live[-1])
                code, out = wait_caught_up(reg)
                assert code == 0, out + reg.log()[-6000:]
                assert client.pullable('ns/app', 'v') is None
                assert set(live) <= reg.images()
                assert_invariants(reg, client)
            reg.stop()
    assert results['with'] == results['alone']
    assert results['alone'][0] == 200
