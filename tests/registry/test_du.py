"""Issue 26: ``registry-refcount du`` - for each repository the bytes
only it holds, which must be exactly what deleting it frees; on a
registry with a shared base, a tag in two repositories, a mid-chain tag
and an untagged push standing on a tagged image."""

from __future__ import absolute_import

import os

from .conftest import assert_invariants, refcount_settings
from .harness import Client
from .test_cli import images_on_disk, run


def test_du_says_what_deleting_each_repository_frees(make_registry,
                                                     tmpdir):
    reg = make_registry(refcount=refcount_settings(tmpdir)).start()
    client = Client(reg.url)
    base = client.push_chain(['du-base'])
    a1 = client.push('team/a', 'v1', ['du-a1'], base[-1])   # mid-chain tag
    a2 = client.push('team/a', 'v2', ['du-a2'], a1[-1])
    client.push('team/b', 'v1', ['du-b1'], base[-1])
    client.tag('team/b', 'same', a2[-1])         # a tag in two repositories
    c1 = client.push('team/c', 'v1', ['du-c1'])
    client.push_chain(['du-orphan'], c1[-1])     # untagged, on team/c's
    client.push('team/d', 'v1', ['du-d1', 'du-d2'])
    code, doc, out, err = run(reg, '--json', 'du')
    assert code == 0, (out, err)
    repos = doc['repositories']
    assert sorted(repos) == ['team/a', 'team/b', 'team/c', 'team/d']
    assert repos['team/a']['tags'] == 2 and repos['team/a']['images'] == 3
    assert repos['team/c']['exclusive_images'] == 0     # the orphan's
    assert repos['team/d']['exclusive_images'] == 2
    for name in ('team/b', 'team/a', 'team/d', 'team/c'):
        code, doc, out, err = run(reg, '--json', 'du', name)
        assert code == 0, (out, err)
        said = doc['repositories'][name]
        before = images_on_disk(reg)
        assert client.delete_repository(name).status_code == 200
        freed = before - images_on_disk(reg)
        assert len(freed) == said['exclusive_images'], (name, said, freed)
        sizes = dict((i, os.path.getsize(reg.path('images', i, 'layer')))
                     for i in before if i not in freed)
        assert said['exclusive_bytes'] == (
            doc['bytes'] - sum(sizes.values())), (name, said)
    assert_invariants(reg, client)
    code, doc, out, err = run(reg, 'du', 'team/nope')
    assert code == 1 and 'no such repository' in out
