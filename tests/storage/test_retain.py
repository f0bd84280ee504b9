"""Retention at the storage level (issue 27): a tag written again after
the run started is kept; the rule checks its settings."""

from __future__ import absolute_import, unicode_literals

import pytest

from registry_refcount import layout
from registry_refcount import protocols
from registry_refcount import records
from registry_refcount import retain

from .test_protocols import chain, consistent
from .world import present, put_tag

T = layout.TagKey


def test_a_tag_written_again_during_the_run_is_kept(ctx, store):
    ids = chain(ctx, ['rt-a', 'rt-b'])
    other = chain(ctx, ['rt-c'])
    put_tag(ctx, T('ci', 'a', 'one'), ids[0])
    put_tag(ctx, T('ci', 'a', 'two'), ids[1])
    started = records.now(store) + 1
    rule = retain.rule(keep_younger=0, allow_empty=True)
    planned = retain.plan(store, rule, started)['delete']
    assert sorted(k.tag for k, _, _ in planned) == ['one', 'two']
    put_tag(ctx, T('ci', 'a', 'two'), other[0])        # rewritten meanwhile
    deleted, spared = retain.apply(ctx, planned, started)
    assert [k.tag for k in deleted] == ['one']
    assert len(spared) == 1 and 'ci/a:two' in spared[0]
    assert protocols.read_tag(store, T('ci', 'a', 'two')) == other[0]
    assert present(store) == set(other)
    consistent(store)


@pytest.mark.parametrize('kwargs', [{}, {'keep_last': -1},
                                    {'keep_last': 1, 'match': '('}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(Exception):
        retain.rule(**kwargs)


def test_durations():
    assert retain.duration('30d') == 30 * 86400
    assert retain.duration('12h') == 43200
    assert retain.duration('90') == 90
    with pytest.raises(ValueError):
        retain.duration('soon')


def test_a_retention_policy_in_the_config_is_checked_at_start():
    """``retention:`` is a list of rules; a bad one stops the registry at
    start-up with an error naming it."""
    from registry_refcount import settings
    rule = {'keep_last': 5, 'match': '^build-', 'repository': 'ci/*'}
    assert settings.parse({'retention': [rule]}).retention == [rule]
    assert settings.parse({}).retention == []
    for bad in ([{'keep_last': 5, 'colour': 1}], [{'match': 'x'}], 'keep',
                [{'keep_younger': 'soon'}], [{'keep_last': 1,
                                              'match': '('}]):
        with pytest.raises(settings.ConfigError) as e:
            settings.parse({'retention': bad})
        assert 'extensions.refcount.retention' in str(e.value), bad
