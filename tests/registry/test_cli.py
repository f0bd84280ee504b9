"""Issue 4: the operator CLI on registry data produced by real pushes."""

from __future__ import absolute_import

import json
import os
import subprocess
import sys

from registry_refcount import gap

from .conftest import refcount_settings
from .harness import BIN, Client, image_id, make_config

CLI = os.path.join(BIN, 'registry-refcount')


def run(reg, *args):
    """The CLI on the registry's storage, once the registry's work after
    its last responses is done."""
    reg.settle()
    env = dict(os.environ, STORAGE_PATH=reg.storage,
               DOCKER_REGISTRY_CONFIG=reg.config, SETTINGS_FLAVOR='local')
    p = subprocess.Popen([CLI] + list(args), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = p.communicate()
    doc = None
    if '--json' in args and out.strip():
        doc = json.loads(out.decode('utf-8'))
    return p.returncode, doc, out.decode('utf-8'), err.decode('utf-8')


def images_on_disk(reg):
    reg.settle()
    try:
        return set(os.listdir(reg.path('images')))
    except OSError:
        return set()


def tree(root):
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_enable_on_existing_registry(make_registry, tmpdir):
    # a registry that ran without the extension: retags piled up orphans
    plain = make_registry(refcount=None).start()
    client = Client(plain.url)
    base = client.push_chain(['cli-base'])
    old = client.push('ns/app', 'latest', ['cli-a1', 'cli-a2'], base[-1])
    new = client.push('ns/app', 'latest', ['cli-b1'], base[-1])
    gone = client.push('ns/gone', 'v', ['cli-g1'])
    client.delete_tag('ns/gone', 'v')
    kept = client.push('ns/other', 'v', ['cli-o1'], base[-1])
    plain.stop()
    orphans = set(old + gone)

    reg = make_registry(storage=plain.storage).start()
    client = Client(reg.url)
    # tracking only: a retag now deletes nothing
    extra = client.push('ns/other', 'v', ['cli-o2'], base[-1])
    assert images_on_disk(reg) == set(base + old + new + gone + kept + extra)
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert code == 1 and doc['error'] == 'not initialised'
    code, doc, out, err = run(reg, '--json', 'status')
    assert code == 1 and doc['initialised'] is False    # as verify says
    assert doc['storage'] == os.path.abspath(reg.storage)
    code, _, out, err = run(reg, 'status')
    assert '  storage:              %s\n' % os.path.abspath(reg.storage) in out

    code, doc, out, err = run(reg, '--json', 'rebuild')
    assert code == 0, (out, err)
    assert doc['initialised'] is True
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 0, out
    orphans |= set(kept)           # retagged away while tracking only

    before = tree(reg.storage)
    code, doc, out, err = run(reg, '--json', 'gc', '--dry-run', '--grace',
                              '0')
    assert code == 0, (out, err)
    assert set(d['image'] for d in doc['deleted']) == orphans
    assert all(d['bytes'] > 0 and d['reason'] for d in doc['deleted'])
    assert tree(reg.storage) == before        # --dry-run changes nothing

    code, doc, out, err = run(reg, 'gc', '--grace', '0')
    assert code == 0, (out, err)
    assert 'deleted %d image(s)' % len(orphans) in out
    assert images_on_disk(reg) == set(base + new + extra)
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 0 and doc['unreachable'] == []
    audit = reg.path('extensions/refcount/audit/deletions.log')
    with open(audit) as f:
        logged = set(json.loads(line)['image'] for line in f)
    assert logged == orphans
    for repo, tag in (('ns/app', 'latest'), ('ns/other', 'v')):
        assert client.pullable(repo, tag) is None
    # the images lists are the registry's: deleted ids stay listed (as
    # they would after any deletion), their json answers 404
    with open(reg.path('repositories/ns/app/_index_images')) as f:
        listed = set(e['id'] for e in json.load(f)) & orphans
    assert listed
    for image in listed:
        assert client._req('GET', '/v1/images/%s/json' % image
                           ).status_code == 404


def test_verify_reports_and_repairs_corruption(make_registry, tmpdir):
    # no recovery round once the records are damaged: its catch-up of
    # recent writes (gap.py) would mend them before verify sees them
    import time
    registry = make_registry(refcount=refcount_settings(
        tmpdir, recovery_interval=600)).start()
    client = Client(registry.url)
    ids = client.push('ns/app', 'v', ['cr-1', 'cr-2'])
    time.sleep(gap.SLACK + 0.5)         # the pushes out of the slack, and
    assert run(registry, 'recover')[0] == 0     # checked: the cursor moves
    code, doc, out, err = run(registry, 'verify')   # (settled: see run)
    assert code == 0 and 'consistent' in out
    marker_dir = registry.path('images', ids[1], '_references')
    tag_marker = [n for n in os.listdir(marker_dir) if n.startswith('tag-')]
    with open(os.path.join(marker_dir, tag_marker[0]), 'w') as f:
        f.write('')                                    # torn marker
    os.remove(registry.path('images', ids[0], '_references',
                            'child-' + ids[1]))        # lost marker
    with open(registry.path('extensions/refcount/tags/ns/app/v'), 'w') as f:
        f.write('{"image": "trunc')                   # truncated ledger
    code, doc, out, err = run(registry, '--json', 'verify')
    assert code == 1
    kinds = sorted(d['kind'] for d in doc['r1'])
    assert kinds == ['missing_marker', 'torn_marker']
    assert doc['unreadable'] == ['extensions/refcount/tags/ns/app/v']
    code, doc, out, err = run(registry, 'verify', '--repair')
    assert code == 0, out
    code, doc, out, err = run(registry, 'verify')
    assert code == 0
    assert images_on_disk(registry) == set(ids)


def test_push_torn_inside_the_registrys_json_write(registry, client):
    """A worker killed inside docker-registry's json write (``_inprogress``
    written, the json opened and not yet written, no ancestry) leaves an
    empty json.  verify reports only registrations whose json never came;
    the push done again completes; an abandoned one is deleted by gc and
    its registration dropped by verify's repair."""
    base = client.push('ns/base', 'v', ['tj-base'])
    children = [image_id(n) for n in ('tj-retried', 'tj-abandoned')]
    for child in children:
        r = client._req('PUT', '/v1/images/%s/json' % child, data=json.dumps(
            {'id': child, 'parent': base[-1]}))
        assert r.status_code == 200, r.text
        open(registry.path('images', child, 'json'), 'w').close()
        os.remove(registry.path('images', child, 'ancestry'))
    code, doc, out, err = run(registry, '--json', 'verify')
    assert code == 1 and doc['s1'] == []
    assert sorted((d['kind'], d['marker'], d['dangling'])
                  for d in doc['r1']) == sorted(
        ('stale_marker', 'child-' + c, True) for c in children)
    retried = client.push('ns/app', 'v', ['tj-retried'], base[-1])
    assert client.pullable('ns/app', 'v') is None
    code, doc, out, err = run(registry, '--json', 'gc')
    assert code == 0, out
    assert [d['image'] for d in doc['deleted']] == [children[1]]
    # a registration whose json has not come is a push in flight for
    # intent_timeout (its worker lives): once older, repair drops it
    code, doc, out, err = run(registry, 'verify', '--repair')
    assert code == 1, out
    os.utime(registry.path('images', base[-1], '_references',
                           'child-' + children[1]), (1.0, 1.0))
    code, doc, out, err = run(registry, 'verify', '--repair')
    assert code == 0, out
    assert images_on_disk(registry) == set(base + retried)
    code, doc, out, err = run(registry, 'verify')
    assert code == 0, out


def damaged_registry(reg):
    """Issue 21 item 12: live chains, garbage, a push killed between its
    json and its ancestry (``_inprogress`` and the json stay) and a tagged
    image whose ancestry was cut short, all made by real pushes."""
    client = Client(reg.url)
    base = client.push('ns/base', 'v', ['dm-base'])
    app = client.push('ns/app', 'v', ['dm-app'], base[-1])
    garbage = client.push_chain(['dm-g1', 'dm-g2']) + client.push_chain(
        ['dm-g3'], base[-1])
    crash = image_id('dm-crash')
    r = client._req('PUT', '/v1/images/%s/json' % crash, data=json.dumps(
        {'id': crash, 'parent': base[-1]}))
    assert r.status_code == 200, r.text
    os.remove(reg.path('images', crash, 'ancestry'))
    deep = client.push('ns/deep', 'v', ['dm-d1', 'dm-d2', 'dm-d3'])
    with open(reg.path('images', deep[-1], 'ancestry'), 'rb') as f:
        whole = f.read()
    with open(reg.path('images', deep[-1], 'ancestry'), 'wb') as f:
        f.write(whole[:len(whole) // 2])
    return {'client': client, 'live': set(base + app + deep),
            'garbage': set(garbage), 'crash': crash, 'deep': deep,
            'whole': whole, 'base': base[-1]}


def check_damage_kept(reg, doc, w):
    """gc deleted the garbage only, kept both damaged chains whole and
    said what each damage keeps."""
    assert set(d['image'] for d in doc['deleted']) == w['garbage']
    assert images_on_disk(reg) == w['live'] | set([w['crash']])
    damage = dict((d['image'], d) for d in doc['damaged'])
    assert set(damage) == set([w['crash'], w['deep'][-1]])
    assert damage[w['crash']]['protects'] == [w['crash'], w['base']]
    assert damage[w['deep'][-1]]['protects'] == w['deep'][::-1]


def test_damaged_data_does_not_stop_gc(registry):
    w = damaged_registry(registry)
    code, doc, out, err = run(registry, 'gc', '--dry-run', '--grace', '0')
    assert code == 1, out
    assert 'damaged %s' % w['crash'] in out and '_inprogress' in out
    assert 'damaged %s' % w['deep'][-1] in out and 'kept for it' in out
    code, doc, out, err = run(registry, '--json', 'gc', '--grace', '0')
    assert code == 1 and doc['errors'] == [] and not doc['stopped'], out
    check_damage_kept(registry, doc, w)
    code, doc, out, err = run(registry, '--json', 'verify')
    assert code == 1
    assert sorted(d['image'] for d in doc['damaged']) == sorted(
        [w['crash'], w['deep'][-1]])
    code, doc, out, err = run(registry, 'verify', '--repair')
    assert code == 0, out
    with open(registry.path('images', w['deep'][-1], 'ancestry'), 'rb') as f:
        assert f.read() == w['whole']
    assert w['client'].pullable('ns/deep', 'v') is None
    code, doc, out, err = run(registry, '--json', 'gc', '--grace', '0')
    assert code == 0 and doc['damaged'] == [], out
    assert [d['image'] for d in doc['deleted']] == [w['crash']]
    assert images_on_disk(registry) == w['live']


def test_rebuild_completes_beside_damaged_data(make_registry):
    plain = make_registry(refcount=None).start()
    w = damaged_registry(plain)
    plain.stop()
    reg = make_registry(storage=plain.storage).start()
    code, doc, out, err = run(reg, '--json', 'rebuild')
    assert code == 1 and doc['initialised'] and doc['errors'] == [], out
    assert sorted(d['image'] for d in doc['damaged']) == sorted(
        [w['crash'], w['deep'][-1]])
    code, doc, out, err = run(reg, 'rebuild')
    assert code == 1 and 'verify --repair' in out
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert code == 1 and not doc['stopped'], out
    check_damage_kept(reg, doc, w)


def test_rebuild_converts_per_tag_list_records(make_registry):
    plain = make_registry(refcount=None).start()
    client = Client(plain.url)
    base = client.push('ns/a', 'v', ['lg-base'])
    top = client.push('ns/b', 'v', ['lg-top'], base[-1])
    orphan = client.push('ns/c', 'v', ['lg-orphan'])
    client.delete_tag('ns/c', 'v')
    plain.stop()
    # what the earlier extension left: a file per image listing tags
    for image, refs in ((base[0], {'["ns", "a", "v"]': base[0],
                                   '["ns", "b", "v"]': top[0]}),
                        (top[0], {'["ns", "b", "v"]': top[0]}),
                        (orphan[0], {'["ns", "c", "v"]': orphan[0]})):
        with open(plain.path('images', image, '_references'), 'w') as f:
            json.dump(refs, f)
    reg = make_registry(storage=plain.storage).start()
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 1 and len(doc['legacy']) == 3
    code, doc, out, err = run(reg, '--json', 'rebuild')
    assert code == 0 and doc['legacy_converted'] == 3, (out, err)
    code, doc, out, err = run(reg, '--json', 'verify')
    assert code == 0, out
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '0')
    assert [d['image'] for d in doc['deleted']] == orphan
    assert images_on_disk(reg) == set(base + top)


def test_usage_and_config_errors(registry, tmpdir):
    code, doc, out, err = run(registry, 'nonsense')
    assert code == 2
    bad = make_config(str(tmpdir.join('bad.yml')),
                      refcount_settings(tmpdir, lock_timeout='x'))
    env = dict(os.environ, DOCKER_REGISTRY_CONFIG=bad, SETTINGS_FLAVOR='local',
               STORAGE_PATH=registry.storage)
    p = subprocess.Popen([CLI, 'status'], env=env, stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    out, err = p.communicate()
    assert p.returncode == 2 and b'extensions.refcount.lock_timeout' in err
    p = subprocess.Popen([sys.executable, '-m', 'registry_refcount',
                          '--config', registry.config, '--flavor', 'local',
                          '--json', 'status'],
                         env=dict(os.environ, STORAGE_PATH=registry.storage),
                         stdout=subprocess.PIPE)
    out, _ = p.communicate()
    assert p.returncode == 0 and json.loads(out.decode())['initialised']
