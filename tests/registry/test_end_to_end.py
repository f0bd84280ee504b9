"""Issue 2's scenarios against the real registry over HTTP."""

from __future__ import absolute_import

import json
import os

from .conftest import assert_invariants
from .harness import Client, image_id


def images_on_disk(reg):
    return reg.images()


def test_delete_tag_frees_whole_chain(registry, client):
    other = client.push('ns/other', 'latest', ['o1', 'o2'])
    ids = client.push('ns/app', 'v1', ['a1', 'a2', 'a3'])
    assert images_on_disk(registry) == set(ids + other)
    before = registry.outside_listing()
    assert client.delete_tag('ns/app', 'v1').status_code == 200
    assert images_on_disk(registry) == set(other)
    after = registry.outside_listing()
    # only what the registry itself removes for a tag delete changed
    assert set(before) - set(after) == {
        'repositories/ns/app/tag_v1', 'repositories/ns/app/tagv1_json'}
    assert_invariants(registry, client)


def test_two_tags_share_base(registry, client):
    base = client.push_chain(['base'])
    a = client.push('ns/a', 'latest', ['a1', 'a2'], base[-1])
    b = client.push('ns/b', 'latest', ['b1'], base[-1])
    assert client.delete_tag('ns/a', 'latest').status_code == 200
    assert images_on_disk(registry) == set(base + b)
    assert_invariants(registry, client)
    assert a


def test_retag_to_sibling_then_to_descendant(registry, client):
    base = client.push_chain(['base'])
    a = client.push('ns/app', 'latest', ['a1', 'a2'], base[-1])
    b = client.push('ns/app', 'latest', ['b1'], base[-1])
    # A's private images go at once, the base stays
    assert images_on_disk(registry) == set(base + b)
    d = client.push('ns/app', 'latest', ['d1', 'd2'], b[-1])
    # retag to a descendant: nothing goes
    assert images_on_disk(registry) == set(base + b + d)
    assert_invariants(registry, client)
    assert a


def test_same_image_tagged_in_two_repositories(registry, client):
    ids = client.push('ns/one', 'v', ['x1', 'x2'])
    client.tag('other/two', 'v', ids[-1])
    assert client.delete_tag('ns/one', 'v').status_code == 200
    assert images_on_disk(registry) == set(ids)
    assert client.pullable('other/two', 'v') is None
    assert_invariants(registry, client)


def test_repository_delete_both_endpoints(registry, client):
    base = client.push_chain(['base'])
    theirs = client.push('ns/theirs', 'latest', ['t1'], base[-1])
    for endpoint, repo in (('/', 'ns/mine'), ('/tags', 'ns/mine2')):
        mine = client.push(repo, 'a', ['%s-1' % repo, '%s-2' % repo],
                           base[-1])
        client.push(repo, 'b', ['%s-3' % repo], mine[0])
        client.tag(repo, 'c', base[-1])
        assert images_on_disk(registry) >= set(mine)
        r = client.delete_repository(repo, endpoint)
        assert r.status_code == 200, r.text
        assert images_on_disk(registry) == set(base + theirs)
        assert not registry.exists('extensions/refcount/tags/' + repo)
    assert_invariants(registry, client)


def test_path_tricks_change_nothing(registry, client):
    ids = client.push('ns/app', 'v1', ['p1', 'p2'])
    before = registry.outside_listing()
    bodies = [json.dumps('../repositories/ns/app'), json.dumps('..'),
              json.dumps('not-an-id'), json.dumps(['x']), '{"a": 1}',
              'garbage', json.dumps('../' + ids[0])]
    for body in bodies:
        r = client.put_tag('ns/app', 'trick', None, raw=body)
        assert r.status_code in (400, 404), (body, r.status_code)
    child = image_id('trick-child')
    for parent in ('..', '../repositories/ns/app', 'nothex'):
        r = client.http.put(registry.url + '/v1/images/%s/json' % child,
                            data=json.dumps({'id': child, 'parent': parent}))
        assert r.status_code == 400, (parent, r.status_code)
    r = client.delete_tag('ns/app', 'trick')
    assert r.status_code == 404
    assert registry.outside_listing() == before
    assert images_on_disk(registry) == set(ids)
    assert client.pullable('ns/app', 'v1') is None
    assert_invariants(registry, client)


def scenario(client):
    """The same operations, for the with/without comparisons."""
    base = client.push_chain(['s-base'])
    client.push('ns/a', 'latest', ['s-a1', 's-a2'], base[-1])
    client.push('ns/b', 'latest', ['s-b1'], base[-1])
    client.push('ns/a', 'latest', ['s-a3'], base[-1])       # retag
    client.delete_tag('ns/b', 'latest')
    client.push('ns/c', 'v', ['s-c1'])
    client.delete_repository('ns/c')


def tree(root):
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def test_disabled_or_absent_is_the_registry_alone(make_registry, tmpdir):
    results = []
    for refcount in (None, {'enabled': False}, {'enabled': 'false'}):
        reg = make_registry(refcount=refcount).start()
        scenario(Client(reg.url))
        reg.stop()
        results.append(tree(reg.storage))
    assert results[0] == results[1] == results[2]
    assert not any(p.startswith('extensions') for p in results[0])
    assert any(p.endswith('/layer') for p in results[0])
    # and with the extension, storage holds less
    reg = make_registry().start()
    scenario(Client(reg.url))
    reg.stop()
    with_ext = set(p for p in tree(reg.storage)
                   if not p.startswith('extensions') and
                   '/_references/' not in p)
    assert with_ext < results[0]


def test_existing_registry_tracks_but_deletes_nothing(make_registry):
    reg = make_registry(refcount=None).start()
    client = Client(reg.url)
    old = client.push('ns/old', 'v', ['e1', 'e2'])
    reg.stop()
    # now the operator enables the extension on this storage
    reg2 = make_registry(storage=reg.storage).start()
    client = Client(reg2.url)
    new = client.push('ns/new', 'v', ['e3'], old[-1])
    assert client.delete_tag('ns/new', 'v').status_code == 200
    assert client.delete_tag('ns/old', 'v').status_code == 200
    assert images_on_disk(reg2) == set(old + new)
    assert 'not initialised' in reg2.log()
    # and each worker said so when it started, in words (issue 23)
    assert ('refcount: enabled (tracking only, deleting nothing until '
            '`registry-refcount rebuild`' in reg2.log()), reg2.log()[-3000:]


def test_bad_config_is_a_startup_error(make_registry):
    import pytest
    reg = make_registry(refcount={'enabled': True, 'grace_period': 'soon'})
    with pytest.raises(RuntimeError):
        reg.start()
    assert 'extensions.refcount.grace_period' in reg.log()


def test_mirror_refused_unless_allowed(make_registry):
    import pytest
    reg = make_registry(extra={'mirroring': {
        'source': 'http://127.0.0.1:9', 'source_index': None,
        'tags_cache_ttl': 10}})
    with pytest.raises(RuntimeError):
        reg.start()
    assert 'allow_mirroring' in reg.log()


def test_a_tag_write_refused_by_the_registry_deletes_nothing(
        make_registry):
    """Issue 21, item 3: a tag PUT that fails after ``request_started``
    (here 401: the registry is not standalone and the client has no
    token) released its pending marker with a cascade, deleting at once
    the untagged top of a push - anyone who can reach the port could do
    it.  A request that did not write its tag deletes nothing."""
    first = make_registry().start()
    top = Client(first.url).push_chain(['refused-1', 'refused-2'])[-1]
    first.stop()
    reg = make_registry(storage=first.storage, extra={
        'standalone': False, 'index_endpoint': 'http://127.0.0.1:1'})
    reg.start()
    r = Client(reg.url).put_tag('ns/app', 'v', top)
    assert r.status_code == 401, r.text
    reg.settle()
    assert top in reg.images()
    assert not os.listdir(os.path.join(
        reg.storage, 'extensions', 'refcount', 'intents'))
