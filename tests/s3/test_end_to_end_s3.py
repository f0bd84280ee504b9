"""The end-to-end scenarios of ``tests/registry`` on the ``s3`` flavor: the
real registry with its own S3 driver on moto and Redis locks (fixtures in
this folder's conftest), checked on the bucket's contents.

The scenario functions are imported, not copied: pytest collects them here
again, with this folder's fixtures."""

from __future__ import absolute_import

from ..registry.test_end_to_end import (  # noqa: F401
    test_delete_tag_frees_whole_chain,
    test_path_tricks_change_nothing,
    test_repository_delete_both_endpoints,
    test_retag_to_sibling_then_to_descendant,
    test_same_image_tagged_in_two_repositories,
    test_two_tags_share_base,
)


def test_bucket_holds_the_registry(registry, client, moto, bucket):
    """The s3 flavor really stores in the bucket (under STORAGE_PATH)."""
    from ..services import bucket_keys
    ids = client.push('ns/app', 'v1', ['s3-a', 's3-b'])
    assert registry.settle()        # the tag's records come after its PUT
    keys = bucket_keys(registry.env)
    for image in ids:
        assert 'images/%s/layer' % image in keys
        assert 'images/%s/json' % image in keys
    assert keys['repositories/ns/app/tag_v1']
    assert 'extensions/refcount/tags/ns/app/v1' in keys
    assert client.pullable('ns/app', 'v1') is None
