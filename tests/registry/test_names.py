# -*- coding: utf-8 -*-
"""Issue 21, items 1, 6, 7 and 8: names and ids at the edges, on the real
registry.  Names are sent URL-encoded, as the docker client sends them."""

from __future__ import absolute_import

import json

from registry_refcount import layout
from registry_refcount import records

from .conftest import assert_invariants
from .harness import image_id
from .test_cli import run

#: Repository names as a docker client puts them in the URL: '..', '.',
#: 'a%b', 'a+b', 'a b'.  (The registry stores them quoted twice: once by
#: its view, once by its driver - '..' becomes '%252E%252E'.)
ODD_REPOSITORIES = ['%2e%2e', '%2e', 'a%25b', 'a%2Bb', 'a%20b']
#: 'é': the registry itself cannot store it (its quoting takes bytes only
#: and fails: a 500 without the extension); the extension refuses it first.
UNSTORABLE = '%C3%A9'


def _images(reg):
    return reg.images()


def test_odd_repository_names_keep_their_images(registry, client):
    """Item 1: a tag under '..', '.', '%', '+', ' ' protects its image, and
    deleting it frees the image; 'é' is refused with a clear 400."""
    kept = client.push('ns/app', 'v1', ['odd-base'])
    top = client.push_chain(['odd-top'], kept[-1])
    for repo in ODD_REPOSITORIES:
        r = client.put_tag('ns/' + repo, 'latest', top[-1])
        assert r.status_code == 200, (repo, r.status_code, r.text)
        assert _images(registry) == set(kept + top), repo   # (settled)
    r = client.put_tag('ns/' + UNSTORABLE, 'latest', top[-1])
    assert r.status_code == 400 and 'name' in r.text, (r.status_code, r.text)
    r = client.put_tag('ns/app', UNSTORABLE, top[-1])
    assert r.status_code == 400 and 'name' in r.text, (r.status_code, r.text)
    for repo in ODD_REPOSITORIES:
        assert client.pullable('ns/' + repo, 'latest') is None, repo
    assert_invariants(registry, client=None)
    code, doc, out, err = run(registry, 'verify')
    assert code == 0, out + err
    for repo in ODD_REPOSITORIES[:-1]:
        assert client.delete_tag('ns/' + repo, 'latest').status_code == 200
    assert _images(registry) == set(kept + top)
    r = client.delete_repository('ns/' + ODD_REPOSITORIES[-1])
    assert r.status_code == 200, r.text
    assert _images(registry) == set(kept)
    assert_invariants(registry, client)


def test_id_with_trailing_newline_deletes_nothing(registry, client):
    """Item 6: an id followed by a newline is not an id (the registry's own
    rule ends in '$', which matches before a final newline; the driver
    stores such an image at 'images/<id>%0A')."""
    ids = client.push('ns/app', 'v1', ['nl-base', 'nl-top'])
    bad = ids[-1] + '\n'
    r = client.http.put(registry.url + '/v1/images/%s%%0A/json' % ids[-1],
                        data=json.dumps({'id': bad, 'parent': ids[0]}))
    assert r.status_code == 400, (r.status_code, r.text)
    assert not registry.exists('images/%s%%0A' % ids[-1])
    for tag in ('v1', 'v2'):
        r = client.put_tag('ns/app', tag, None, raw=json.dumps(bad))
        assert r.status_code in (400, 404), (tag, r.status_code, r.text)
    registry.settle()
    assert _images(registry) == set(ids)
    assert client.pullable('ns/app', 'v1') is None
    assert_invariants(registry, client)
    code, doc, out, err = run(registry, 'verify')
    assert code == 0, out + err


def test_names_too_long_for_storage_are_refused(registry, client):
    """Item 7: a tag or repository name whose files could not be named on
    this file system is refused before anything is written, so no intent
    is left to pin its image or fail recovery."""
    ids = client.push_chain(['long-base'])
    long_name = 'y' * 300
    for repo, tag in (('ns/app', long_name), ('ns/' + long_name, 'latest'),
                      (long_name + '/app', 'latest'),
                      ('ns/app', 'y' * 250)):       # 'tag<250>_json' > 255
        r = client.put_tag(repo, tag, ids[-1])
        assert r.status_code == 400 and 'too long' in r.text, (
            len(repo), len(tag), r.status_code, r.text)
        r = client.delete_tag(repo, tag)
        assert r.status_code == 400 and 'too long' in r.text, r.text
    r = client.delete_repository('ns/' + long_name)
    assert r.status_code == 400 and 'too long' in r.text, r.text
    client.tag('ns/app', 'y' * 240, ids[-1])         # the longest that fits
    assert registry.settle()
    assert not [name for name in records.listing(registry.store(),
                                                 layout.INTENTS)
                if layout.INTENT_RE.match(name)]
    assert _images(registry) == set(ids)
    code, doc, out, err = run(registry, 'recover')
    assert code == 0, out + err
    assert_invariants(registry, client)
    assert client.delete_tag('ns/app', 'y' * 240).status_code == 200
    assert _images(registry) == set()


def test_tags_starting_with_a_dot_are_tracked(registry, client):
    """Item 8: tags whose stored name starts with '.' are tags like any
    other: verify is consistent, and deleting them frees the image."""
    ids = client.push('ns/app', 'v1', ['dot-base'])
    top = client.push_chain(['dot-top'], ids[-1])
    tags = ['.hidden', '..x', '.tmp-%s' % image_id('x')[:32]]
    for tag in tags:
        client.tag('ns/app', tag, top[-1])
    client.tag('.ns/.repo', '.v', top[-1])
    assert _images(registry) == set(ids + top)
    assert_invariants(registry, client)
    code, doc, out, err = run(registry, 'verify')
    assert code == 0, out + err
    for tag in tags:
        assert client.delete_tag('ns/app', tag).status_code == 200
    assert _images(registry) == set(ids + top)
    assert client.delete_tag('.ns/.repo', '.v').status_code == 200
    assert _images(registry) == set(ids)
    assert_invariants(registry, client)
