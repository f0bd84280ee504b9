"""``lock_lease`` and the default ``lock_dir``: parsed, checked, and
handed to the lock providers by ``make_locks``."""

from __future__ import absolute_import, unicode_literals

import os

import pytest

from registry_refcount import locks
from registry_refcount import records
from registry_refcount import settings


def test_lock_lease_defaults_to_30_seconds():
    assert settings.parse({}).lock_lease == 30
    assert settings.parse({'lock_lease': None}).lock_lease == 30


@pytest.mark.parametrize('value, expected', [
    (2, 2), ('1.5', 1.5), (0.5, 0.5), ('45', 45)])
def test_lock_lease_takes_seconds(value, expected):
    assert settings.parse({'lock_lease': value}).lock_lease == expected


@pytest.mark.parametrize('value', [0, '0', -1, 'soon', True, [30]])
def test_a_bad_lock_lease_is_refused_by_name(value):
    with pytest.raises(settings.ConfigError) as e:
        settings.parse({'lock_lease': value})
    assert 'extensions.refcount.lock_lease' in str(e.value)


def _registry_config(yaml_text):
    config = pytest.importorskip('docker_registry.lib.config')
    return config.Config(yaml_text)


LEASE_FROM_ENV = '''
extensions:
    refcount:
        enabled: true
        lock_lease: _env:REFCOUNT_LOCK_LEASE:30
'''


@pytest.mark.parametrize('env, expected', [(None, 30), ('2', 2),
                                           ('0.5', 0.5)])
def test_lock_lease_from_the_environment(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv(str('REFCOUNT_LOCK_LEASE'), raising=False)
    else:
        monkeypatch.setenv(str('REFCOUNT_LOCK_LEASE'), str(env))
    assert settings.load(_registry_config(LEASE_FROM_ENV)).lock_lease == \
        expected


@pytest.mark.parametrize('env', ['0', '-3', 'later'])
def test_a_bad_lock_lease_from_the_environment_is_refused(monkeypatch, env):
    monkeypatch.setenv(str('REFCOUNT_LOCK_LEASE'), str(env))
    with pytest.raises(settings.ConfigError) as e:
        settings.load(_registry_config(LEASE_FROM_ENV))
    assert 'lock_lease' in str(e.value)


def test_config_sample_names_lock_lease_and_no_temporary_lock_dir():
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(os.path.join(root, 'config_sample.yml')) as f:
        sample = f.read()
    assert 'lock_lease: _env:REFCOUNT_LOCK_LEASE:30' in sample
    assert '/tmp/registry-refcount-locks' not in sample


def test_default_lock_dir_is_under_the_storage_root(store):
    root = records.local_root(store)
    provider = settings.make_locks(settings.parse({}), root)
    assert isinstance(provider, locks.LocalLocks)
    assert provider.lock_dir == os.path.join(
        root, 'extensions', 'refcount', 'locks')
    with provider.image('a' * 64):
        provider.verify()
    assert os.path.exists(os.path.join(provider.lock_dir, 'image.locks'))


def test_lock_dir_set_is_used_whatever_the_storage(tmpdir, store):
    chosen = str(tmpdir.join('chosen'))
    parsed = settings.parse({'lock_dir': chosen})
    assert settings.make_locks(parsed, records.local_root(store)).lock_dir \
        == chosen
    assert settings.make_locks(parsed, None).lock_dir == chosen


def test_local_locks_without_local_storage_need_a_lock_dir():
    with pytest.raises(settings.ConfigError) as e:
        settings.make_locks(settings.parse({}), None)
    message = str(e.value)
    assert 'extensions.refcount.lock_dir' in message
    assert '/var/lib/registry-refcount/locks' in message
    assert 'redis' in message


def test_redis_locks_get_the_lease_and_need_no_lock_dir():
    pytest.importorskip('redis')
    provider = settings.make_locks(settings.parse(
        {'lock_backend': 'redis', 'lock_lease': 3}), None)
    assert isinstance(provider, locks.RedisLocks)
    assert provider.lease == 3
