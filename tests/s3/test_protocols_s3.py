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
from ..storage.test_undo import (  # noqa: F401
    test_a_reference_written_again_rescues_the_image,
    test_a_tag_delete_trashes_the_top_and_the_purge_takes_the_chain,
    test_a_tag_write_in_flight_keeps_its_image_from_the_purge,
    test_an_unreadable_trash_record_keeps_its_image,
    test_gc_keeps_the_trash_until_its_time_then_purges_it,
    test_restore_puts_a_deleted_tag_back_and_refuses_once_purged,
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


def test_storage_calls_under_gevent_stay_on_the_hub(moto, bucket):
    """The registry's workers run under gevent, with one boto connection
    pool per worker.  The extension's storage calls from many greenlets
    at once, gap's scan of every image among them, all succeed (the
    scan ran in the hub's thread pool: ``LoopExit`` in it, and the next
    request on the connection it made closed without an answer - a CI
    failure of test_api_recovery_with_no_timeout_from_another_host)."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    probe = subprocess.Popen(
        [sys.executable, '-m', 'tests.s3.gevent_probe',
         json.dumps(moto.env(bucket))], cwd=root,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = probe.communicate()[0].decode('utf-8', 'replace')
    assert probe.returncode == 0, out[-3000:]
