"""Writes the extension did not see (registry_refcount.gap), on storage."""

from __future__ import absolute_import, unicode_literals

from registry_refcount import gap
from registry_refcount import layout
from registry_refcount import protocols
from registry_refcount import recovery

from .test_protocols import chain, consistent
from .world import delete_tag, end_push, image_id, present, put_tag

T = layout.TagKey


def unseen_tag(store, key, image):
    """A tag file written by a registry without the extension."""
    store.put_content(layout.tag_file(key), image.encode())


def test_unseen_child_and_tag_keep_their_images(ctx, store):
    base = chain(ctx, 'b')
    top = chain(ctx, 'xy', base[-1])
    put_tag(ctx, T('ns', 'app1', 'v'), top[-1])
    end_push(ctx, image_id('u'), base[-1])        # no child marker
    unseen_tag(store, T('ns', 'other', 'v'), top[0])   # no tag marker
    delete_tag(ctx, T('ns', 'app1', 'v'))
    assert present(store) == set(base + top[:1] + [image_id('u')])
    report = gap.catch_up(ctx)
    assert report == {'registered': 2, 'errors': []}
    consistent(store)
    assert gap.catch_up(ctx)['registered'] == 0     # the cursor moved


def test_a_refused_registration_keeps_the_write_unchecked(ctx, store):
    base = chain(ctx, 'b')
    until = gap.checked_until(store)
    end_push(ctx, image_id('u'), base[-1])
    token = protocols.new_intent_id()
    store.put_content(layout.tombstone(base[-1], token), b'{}')
    report = gap.catch_up(ctx)
    assert report['errors'] and gap.checked_until(store) == until
    assert gap.claims(ctx, base[-1])
    store.remove(layout.tombstone(base[-1], token))
    rep = recovery.recover(ctx, intent_timeout=60)
    assert rep['caught_up'] == 1 and not rep['errors']
    assert store.exists(layout.marker_path(
        base[-1], layout.child_marker(image_id('u'))))
    consistent(store)
