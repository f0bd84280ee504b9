"""Issue 27: retention - ``registry-refcount retain`` deletes the tags no
keep rule keeps, as a tag DELETE would.  On storage made by real pushes,
through the real command."""

from __future__ import absolute_import

import json
import time

import pytest

from registry_refcount import layout

from .conftest import assert_invariants, refcount_settings
from .harness import Client
from .test_cli import images_on_disk, run

REPOS = ('ci/a', 'ci/b', 'ci/c')
DAY = 86400


def age_tag(reg, repo, tag, days):
    """Make the registry's ``last_update`` of a tag ``days`` old (as if it
    had been pushed then)."""
    ns, name = repo.split('/')
    path = reg.path(layout.tag_json_file(layout.TagKey(ns, name, tag)))
    with open(path) as f:
        doc = json.load(f)
    doc['last_update'] = int(time.time() - days * DAY)
    with open(path, 'w') as f:
        json.dump(doc, f)


def ci_registry(reg, builds=20):
    """Each repository: a shared base, a mid-chain image tagged ``mid``
    (the oldest tag), and ``builds`` builds on it, one a day."""
    client = Client(reg.url)
    base = client.push_chain(['rt-base'])
    built = {}
    for repo in REPOS:
        mid = client.push(repo, 'mid', ['%s-mid' % repo], base[-1])
        age_tag(reg, repo, 'mid', builds + 1)
        built[repo] = []
        for i in range(builds):
            built[repo] += client.push(repo, 'build-%02d' % i,
                                       ['%s-%d' % (repo, i)], mid[-1])
            age_tag(reg, repo, 'build-%02d' % i, builds - i)
    return client, base, built


def test_keep_last_keeps_the_newest_per_repository(make_registry, tmpdir):
    """``--keep-last 5``: the 5 newest builds stay in each repository, the
    rest and ``mid`` go; the dry run's bytes are what the real run frees
    (``mid``'s image stays: kept builds reach it); every kept tag pulls."""
    reg = make_registry(refcount=refcount_settings(tmpdir)).start()
    client, base, built = ci_registry(reg)
    before = images_on_disk(reg)
    code, dry, out, err = run(reg, '--json', 'retain', '--keep-last', '5',
                              '--dry-run')
    assert code == 0, (out, err)
    [rule] = dry['rules']
    assert len(rule['deleted']) == 3 * 16, rule['deleted']
    assert images_on_disk(reg) == before          # a dry run writes nothing
    code, doc, out, err = run(reg, '--json', 'retain', '--keep-last', '5')
    assert code == 0, (out, err)
    assert sorted(doc['rules'][0]['deleted']) == sorted(rule['deleted'])
    for repo in REPOS:
        assert sorted(client.tags(repo)) == ['build-%02d' % i
                                             for i in range(15, 20)]
        for tag in client.tags(repo):
            assert client.pullable(repo, tag) is None
    freed = before - images_on_disk(reg)
    assert freed == set(rule['images'])
    assert freed == set(i for repo in REPOS for i in built[repo][:15])
    sizes = rule['bytes']
    assert sizes == doc['rules'][0]['bytes'] and sizes > 0
    assert_invariants(reg, client)


def test_latest_and_excluded_tags_stay_and_no_repository_is_emptied(
        make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(tmpdir)).start()
    client = Client(reg.url)
    client.push('ci/a', 'latest', ['rl-latest'])
    client.push('ci/a', 'release-1', ['rl-rel'])
    client.push('ci/a', 'nightly-1', ['rl-n1'])
    client.push('ci/b', 'nightly-1', ['rl-b1'])
    for repo, tag in (('ci/a', 'latest'), ('ci/a', 'release-1'),
                      ('ci/a', 'nightly-1'), ('ci/b', 'nightly-1')):
        age_tag(reg, repo, tag, 40)
    code, doc, out, err = run(reg, '--json', 'retain', '--keep-younger',
                              '30d', '--exclude', '^release-')
    assert code == 0, (out, err)
    [rule] = doc['rules']
    assert rule['deleted'] == ['ci/a:nightly-1'], rule
    assert any('ci/b' in why for why in rule['refused']), rule
    assert sorted(client.tags('ci/a')) == ['latest', 'release-1']
    assert sorted(client.tags('ci/b')) == ['nightly-1']


def test_a_retention_deletion_is_restored_within_the_undo_window(
        make_registry, tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, undo_window=600)).start()
    client = Client(reg.url)
    old = client.push('ci/a', 'build-1', ['rr-1'])
    client.push('ci/a', 'build-2', ['rr-2'])
    age_tag(reg, 'ci/a', 'build-1', 10)
    code, doc, out, err = run(reg, '--json', 'retain', '--keep-last', '1')
    assert code == 0, (out, err)
    assert doc['rules'][0]['deleted'] == ['ci/a:build-1']
    assert images_on_disk(reg) >= set(old)          # in the trash
    with open(reg.path('extensions', 'refcount', 'audit',
                       'deletions.log')) as f:
        trashed = [json.loads(l) for l in f]
    assert [e['reason'] for e in trashed if e.get('event') == 'trashed'
            ][0].startswith('retention deleted tag ci/a:build-1')
    code, doc, out, err = run(reg, '--json', 'restore', 'ci/a:build-1')
    assert code == 0, (out, err)
    assert client.tags('ci/a') == {'build-1': old[-1],
                                   'build-2': client.tags('ci/a')['build-2']}
    assert client.pullable('ci/a', 'build-1') is None


def test_a_bad_rule_is_a_usage_error_and_deletes_nothing(make_registry,
                                                         tmpdir):
    reg = make_registry(refcount=refcount_settings(tmpdir)).start()
    Client(reg.url).push('ci/a', 'build-1', ['rb-1'])
    for args in (['--match', '('], ['--keep-younger', 'soon'], []):
        code, doc, out, err = run(reg, 'retain', *args)
        assert code == 2, (args, out, err)
    assert sorted(Client(reg.url).tags('ci/a')) == ['build-1']


def test_the_config_policy_is_what_retain_applies_and_a_bad_one_stops_start(
        make_registry, tmpdir):
    policy = [{'keep_last': 1, 'repository': 'ci/*', 'match': '^build-'}]
    reg = make_registry(refcount=refcount_settings(
        tmpdir, retention=policy)).start()
    client = Client(reg.url)
    client.push('ci/a', 'build-1', ['rp-1'])
    client.push('ci/a', 'build-2', ['rp-2'])
    client.push('ci/a', 'keep-me', ['rp-k'])
    age_tag(reg, 'ci/a', 'build-1', 3)
    code, doc, out, err = run(reg, '--json', 'retain')
    assert code == 0, (out, err)
    assert doc['rules'][0]['deleted'] == ['ci/a:build-1'], doc
    assert sorted(client.tags('ci/a')) == ['build-2', 'keep-me']
    bad = make_registry(refcount=refcount_settings(
        tmpdir, retention=[{'keep_last': 1, 'match': '('}]))
    with pytest.raises(RuntimeError):
        bad.start()
    assert 'extensions.refcount.retention[0]' in bad.log()
