"""Issue 21 items 5 and 9: a registry that ran the per-tag-list extension
(docker-registry PR #606), served at once, and rebuilds that run twice."""

from __future__ import absolute_import

import json
import os
import signal
import subprocess
import time

from .conftest import refcount_settings
from .harness import Client, image_id, make_config
from .test_cli import CLI, images_on_disk, run


def plant_pr606(reg, tags):
    """What PR #606 leaves: on every image of a tagged chain a *file*
    ``images/<id>/_references`` (``{"[ns, repo, tag]": tagged image}``),
    and its version record, a *file* at ``extensions/refcount``."""
    planted = set()
    for repo, tag in tags:
        namespace, name = repo.split('/')
        with open(reg.path('repositories', namespace, name,
                           'tag_' + tag)) as f:
            top = f.read()
        with open(reg.path('images', top, 'ancestry')) as f:
            ancestry = json.load(f)
        for image in ancestry:
            path = reg.path('images', image, '_references')
            refs = {}
            if os.path.exists(path):
                with open(path) as f:
                    refs = json.load(f)
            refs[json.dumps([namespace, name, tag])] = top
            with open(path, 'w') as f:
                json.dump(refs, f)
            planted.add(image)
    os.makedirs(reg.path('extensions'))
    with open(reg.path('extensions', 'refcount'), 'w') as f:
        json.dump({'version': 1}, f)
    return planted


def legacy_left(reg):
    """Images that still have a per-tag-list record, in place or aside."""
    return set(i for i in images_on_disk(reg) for name in (
        '_references', '_references.legacy')
        if os.path.isfile(reg.path('images', i, name)))


def all_markers(reg):
    found = set()
    for image in images_on_disk(reg):
        folder = reg.path('images', image, '_references')
        if os.path.isdir(folder):
            found.update((image, n) for n in os.listdir(folder)
                         if not n.startswith('%'))
    return found


def pr606_registry(make_registry):
    """A registry that ran PR #606: ``(storage's plain registry, ids by
    name, the images carrying its records)``."""
    plain = make_registry(refcount=None).start()
    client = Client(plain.url)
    ids = {}
    ids['base'] = client.push('ns/base', 'v', ['pr-base'])
    ids['app'] = client.push('ns/app', 'v', ['pr-app1', 'pr-app2'],
                             ids['base'][-1])
    ids['old'] = client.push('ns/old', 'v', ['pr-old'])
    plain.stop()
    planted = plant_pr606(plain, [('ns/base', 'v'), ('ns/app', 'v'),
                                  ('ns/old', 'v')])
    return plain, ids, planted


def test_pr606_registry_serves_pushes_and_tags_from_first_start(
        make_registry):
    plain, ids, planted = pr606_registry(make_registry)
    everything = set(sum(ids.values(), []))
    reg = make_registry(storage=plain.storage).start()
    client = Client(reg.url)
    # a push onto an image with a per-tag-list file, a tag write naming
    # one, a retag away from one, a tag delete: all answer 200
    child = client.push('ns/child', 'v', ['pr-child'], ids['base'][-1])
    client.tag('ns/more', 'v', ids['app'][0])
    client.tag('ns/old', 'v', ids['base'][-1])
    assert client.delete_tag('ns/app', 'v').status_code == 200
    assert images_on_disk(reg) == everything | set(child)  # none deleted
    # the predecessor's version file is moved aside, and the log says where
    assert os.path.isdir(reg.path('extensions', 'refcount'))
    with open(reg.path('extensions', 'refcount.pr606')) as f:
        assert json.load(f) == {'version': 1}
    assert 'extensions/refcount.pr606' in reg.log()
    # the records of PR #606 still count until rebuild converts them
    assert legacy_left(reg) == planted
    for command in ('status', 'verify', 'gc'):
        code, doc, out, err = run(reg, '--json', command)
        assert 'Traceback' not in err and doc is not None, (command, err)
    assert code == 1 and doc['error'] == 'not initialised'
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 1 and set(doc['legacy']) == planted, out
    code, doc, out, err = run(reg, '--json', 'rebuild')
    assert code == 0 and doc['legacy_converted'] == len(planted), (out, err)
    assert legacy_left(reg) == set()
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 0, out
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert code == 0, out
    assert set(d['image'] for d in doc['deleted']) == set(
        ids['old'] + ids['app'][1:])
    for repo in ('ns/base', 'ns/child', 'ns/more', 'ns/old'):
        assert client.pullable(repo, 'v') is None, repo


def start_cli(reg, config, *args, **env):
    """A CLI process of its own, not waited for."""
    environ = dict(os.environ, STORAGE_PATH=reg.storage,
                   DOCKER_REGISTRY_CONFIG=config, SETTINGS_FLAVOR='local')
    environ.update(env)
    return subprocess.Popen([CLI] + list(args), env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_stopped(proc, timeout=60):
    """Until ``proc`` stopped itself at its pause point."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        with open('/proc/%d/stat' % proc.pid) as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'T':
                return
        time.sleep(0.05)
    raise AssertionError('no pause')


def finish(proc):
    out, err = proc.communicate()
    return proc.returncode, out.decode('utf-8'), err.decode('utf-8')


def test_two_rebuilds_at_once_lose_no_marker(make_registry, tmpdir):
    """A rebuild stalled before converting a per-tag-list record, another
    one (other locks: a lock held twice) converts everything, pushes and
    tag writes add markers; the stalled one goes on from its old
    snapshot and must not take a marker with it.  One sharing its locks
    refuses while the stalled one holds the rebuild lock."""
    plain, ids, planted = pr606_registry(make_registry)
    reg = make_registry(storage=plain.storage).start()
    client = Client(reg.url)
    stalled = start_cli(reg, reg.config, '--json', '--jobs', '1', 'rebuild',
                        REGISTRY_REFCOUNT_PAUSE_AT='rebuild_before_convert')
    try:
        wait_stopped(stalled)
        code, doc, out, err = run(reg, '--json', 'rebuild')
        assert code == 1 and 'another rebuild' in doc['error'], (out, err)
        other = make_config(str(tmpdir.join('other-locks.yml')),
                            refcount_settings(tmpdir.mkdtemp()))
        second = start_cli(reg, other, '--json', '--ignore-lockspace',
                           'rebuild')
        # pushes go on meanwhile, onto the images being converted
        # (a child on each: whichever image the stalled one stopped at)
        pushed = dict((parent, client.push(
            'ns/new%d' % n, 'v', ['pr-new%d' % n], parent))
            for n, parent in enumerate(sorted(planted)))
        code, out, err = finish(second)
        assert code == 0, (out, err)
        client.tag('ns/more', 'v', ids['app'][0])
        client.push('ns/deep', 'v', ['pr-deep'], ids['app'][-1])
        reg.settle()
        before = all_markers(reg)
        assert set((p, 'child-' + c[0]) for p, c in pushed.items()) <= before
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    code, out, err = finish(stalled)
    assert code == 0, (out, err)
    assert before - all_markers(reg) == set()      # no marker lost
    assert legacy_left(reg) == set()
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 0, out
    for repo in ['ns/new%d' % n for n in range(len(pushed))] + [
            'ns/more', 'ns/deep']:
        assert client.pullable(repo, 'v') is None, repo
    assert image_id('pr-deep') in images_on_disk(reg)
