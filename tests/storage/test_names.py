# -*- coding: utf-8 -*-
"""Issue 21, items 1, 6, 7 and 8, at the level of paths and records: the
extension names every registry file exactly as the registry's own driver
code does, keeps its own records inside ``extensions/refcount/``, takes
no id with a trailing newline, and tells its temporary files from tags."""

from __future__ import absolute_import, unicode_literals

import posixpath

import pytest
from hypothesis import given, strategies as st

from registry_refcount import layout
from registry_refcount import protocols
from registry_refcount import records

# -- item 6: ids ------------------------------------------------------------


@pytest.mark.parametrize('value', ['a' * 64 + '\n', 'a' * 16 + '\n',
                                   '\n' + 'a' * 64, 'a' * 64 + '\r'])
def test_an_id_with_a_newline_is_not_an_id(value):
    assert layout.valid_id(value) is False
    with pytest.raises(layout.InvalidName):
        layout.check_id(value)
    with pytest.raises(layout.InvalidName):
        layout.check_marker(layout.CHILD_PREFIX + value)


def test_an_intent_or_digest_with_a_newline_is_refused():
    with pytest.raises(layout.InvalidName):
        layout.intent('a' * 32 + '\n')
    with pytest.raises(layout.InvalidName):
        layout.check_marker(layout.TAG_PREFIX + 'a' * 64 + '\n')
    with pytest.raises(layout.InvalidName):
        layout.check_marker(layout.PENDING_PREFIX + 'a' * 32 + '\n')


def test_a_tag_file_naming_an_id_and_a_newline_names_no_image(store):
    """The registry reads such a tag as the image ``<id>%0A``: the image
    ``<id>`` is not what it names (nothing is deleted on its word)."""
    key = layout.TagKey('ns', 'app', 'v1')
    store.put_content(layout.tag_file(key), ('a' * 64 + '\n').encode())
    with pytest.raises(protocols.BadInput):
        protocols.read_tag(store, key)


# -- item 1: the registry's paths, for any name -----------------------------

def _registry_base():
    """The registry's own path functions, where they run (Python 2: its
    ``check`` calls ``urllib.quote_plus``)."""
    from docker_registry.core import driver
    base = driver.Base()
    try:
        base.tag_path('ns', 'repo', 'tag')
    except AttributeError:
        return None
    return base


BASE = _registry_base()
on_the_registrys_python = pytest.mark.skipif(
    BASE is None, reason="docker-registry-core's quoting runs on Python 2")

#: Names as the registry's views see them: anything a URL can carry, with
#: the edges named in issue 21 drawn often.
NAMES = st.one_of(
    st.sampled_from(['.', '..', '...', '%', '+', ' ', 'a b', 'a+b', 'a%b',
                     '%2E%2E', '%252E', '.hidden', '..x', '~', '\n',
                     'caf\xe9', '\xe9', '', 'latest', '%tmp-x', '.tmp-x']),
    st.text(max_size=12),
    st.text(alphabet='.%+ -_~aZ09/:', max_size=8))


def _registry_paths(ns, repo, tag):
    """The registry's own paths of a tag's files, or None where its own
    code fails on the names (it could not store the tag)."""
    try:
        return (BASE.repository_path(ns, repo), BASE.tag_path(ns, repo, tag),
                BASE.repository_tag_json_path(ns, repo, tag),
                BASE.index_images_path(ns, repo))
    except UnicodeError:
        return None


def _our_paths(key):
    return (layout.repository_dir(key.namespace, key.repository),
            layout.tag_file(key), layout.tag_json_file(key),
            layout.index_images_file(key.namespace, key.repository))


@on_the_registrys_python
@given(NAMES, NAMES, NAMES)
def test_paths_of_a_tag_are_the_registrys(ns, repo, tag):
    """Every name the registry stores is found where the registry put it;
    the others (not ASCII; an empty part, whose path would be another
    repository's) are refused."""
    want = _registry_paths(ns, repo, tag)
    try:
        key = layout.TagKey.from_request(ns, repo, tag)
    except layout.InvalidName:
        assert want is None or '' in (ns, repo, tag)
        return
    assert want is not None
    assert _our_paths(key) == want


@on_the_registrys_python
@given(st.one_of(NAMES, st.text()))
def test_our_copy_of_the_registrys_quoting(name):
    """Python 3 has no registry to ask: our copy of its rule agrees with
    it on every name."""
    from docker_registry.core.driver import check
    try:
        want = check(name)
    except UnicodeError:
        with pytest.raises(UnicodeError):
            layout.check_like_the_registry(name)
        return
    assert layout.check_like_the_registry(name) == want


@pytest.mark.parametrize('name, stored', [
    ('..', '%252E%252E'), ('.', '%252E'), ('a b', 'a+b'), ('a+b', 'a%2Bb'),
    ('a%b', 'a%25b'), ('~', '%7E'), ('.hidden', '.hidden'), ('...', '...')])
def test_quoting_examples(name, stored):
    assert layout.quote(name) == stored
    assert layout.check_like_the_registry(name) == stored


def test_a_name_the_registry_cannot_store_is_refused():
    with pytest.raises(layout.InvalidName):
        layout.TagKey.from_request('ns', '\xe9', 'latest')
    with pytest.raises(layout.InvalidName):
        layout.TagKey.from_request('', 'repo', 'latest')


@given(NAMES, NAMES, NAMES)
def test_the_ledger_stays_in_its_folder(ns, repo, tag):
    try:
        key = layout.TagKey.from_request(ns, repo, tag)
    except layout.InvalidName:
        return
    path = layout.ledger(key)
    assert posixpath.normpath(path) == path
    assert path.startswith(layout.LEDGER + '/')
    assert path.count('/') == layout.LEDGER.count('/') + 3


# -- item 7: names too long for storage --------------------------------------

@pytest.mark.parametrize('ns, repo, tag', [
    ('ns', 'app', 'y' * 300), ('ns', 'app', 'y' * 250),   # tag<250>_json
    ('ns', 'y' * 256, 'v'), ('y' * 256, 'app', 'v'),
    ('ns', 'app', '%' * 90)])                            # 270 once quoted
def test_a_name_too_long_for_the_file_system_is_refused(store, ns, repo,
                                                         tag):
    from registry_refcount import names
    with pytest.raises(layout.InvalidName) as e:
        names.request_key(store, 'put_tag', dict(namespace=ns,
                                                  repository=repo, tag=tag))
    assert 'too long' in str(e.value)


def test_the_longest_names_that_fit_are_taken(store):
    from registry_refcount import names
    key, intent = names.request_key(store, 'put_tag', dict(
        namespace='n' * 255, repository='r' * 255, tag='t' * 247))
    assert intent == {'tag': str(key)}


def test_object_storage_limits_whole_keys():
    key = layout.TagKey('ns', 'app', 'y' * 300)
    layout.check_length(key, path_max=1024, prefix=10)
    with pytest.raises(layout.InvalidName):
        layout.check_length(layout.TagKey('ns', 'app', 'y' * 1000),
                            path_max=1024, prefix=10)


# -- item 8: tags starting with '.' and the extension's temporary files -------

@given(NAMES)
def test_no_stored_name_looks_like_a_temporary_file(name):
    try:
        stored = layout.quote(name)
    except layout.InvalidName:
        return
    assert not layout.is_temporary(stored)
    assert layout.is_temporary(layout.temporary_name())


@pytest.mark.parametrize('tag', ['.hidden', '..x', '.tmp-%s' % ('a' * 32)])
def test_a_tag_starting_with_a_dot_has_its_ledger_entry(ctx, store, tag):
    """The ledger lists it (verify and repair see it), and a temporary
    file beside it is no tag."""
    key = layout.TagKey.from_request('ns', 'app', tag)
    records.write(store, layout.ledger(key), {'image': 'a' * 64,
                                              'tag': str(key)})
    store.put_content('%s/%s' % (layout.ledger_dir('ns', 'app'),
                                 layout.temporary_name()), b'{')
    assert list(protocols.ledger_tags(store, 'ns', 'app')) == [key]
