# -*- coding: utf-8 -*-
"""Issue 21, items 1, 6, 7 and 8, at the level of paths and records: the
extension names every registry file exactly as the registry's own driver
code does, keeps its own records inside ``extensions/refcount/``, takes
no id with a trailing newline, and tells its temporary files from tags."""

from __future__ import absolute_import, unicode_literals

import pytest

from registry_refcount import layout
from registry_refcount import protocols

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
