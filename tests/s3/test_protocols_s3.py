"""The storage-level protocol tests of ``tests/storage`` on the registry's
S3 driver (moto) with Redis locks: records are single PUTs there, and
nothing may rely on a local filesystem (no rename, no mtime, no rmdir).
The tests whose logic does not depend on the driver stay in
``tests/storage`` only."""

from __future__ import absolute_import

from ..storage.test_protocols import (  # noqa: F401
    test_child_refused_while_parent_deleted,
    test_corrupt_ledger_is_quarantined_not_acted_on,
    test_delete_tag_frees_whole_chain,
    test_pending_refused_for_deleted_image,
    test_recovery_finishes_abandoned_intent,
    test_removing_a_legacy_record_never_takes_markers,
    test_repository_delete,
    test_retag_to_sibling_then_descendant,
    test_same_image_two_repositories,
    test_tag_on_legacy_file_moves_it_aside_where_it_still_counts,
    test_torn_marker_counts_as_reference,
    test_two_tags_share_base,
)
from registry_refcount import records


def test_records_are_plain_objects(store, ctx):
    """On object storage a record is one object written with one PUT: no
    temporary file is left beside it."""
    from registry_refcount import layout
    records.write(store, layout.STATE, {'initialised': True})
    names = list(records.listing(store, 'extensions/refcount'))
    assert records.local_root(store) is None
    assert not any(n.startswith('.tmp') for n in names)
    assert records.read(store, layout.STATE)['initialised'] is True
