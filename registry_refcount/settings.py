"""The ``extensions: refcount:`` block of the registry's configuration.

Read through the registry's own ``Config`` object, so every key may be an
``_env:NAME:default`` reference like the rest of the registry's settings.
A bad value is a :class:`ConfigError` naming the key: the registry refuses
to start rather than run with a setting silently ignored.
"""

from __future__ import absolute_import, unicode_literals

import collections
import os
import tempfile

BLOCK = 'extensions.refcount'


class ConfigError(Exception):
    """A bad value in the ``extensions.refcount`` block."""


Settings = collections.namedtuple('Settings', [
    'enabled', 'dry_run', 'lock_backend', 'lock_dir', 'redis',
    'grace_period', 'intent_timeout', 'lock_timeout', 'allow_mirroring',
    'audit_log', 'recovery_interval'])

DEFAULTS = {
    'enabled': False,
    'dry_run': False,
    'lock_backend': 'local',
    'lock_dir': os.path.join(tempfile.gettempdir(), 'registry-refcount-locks'),
    'grace_period': 86400,
    'intent_timeout': 600,
    'lock_timeout': 30,
    'allow_mirroring': False,
    'audit_log': None,
    'recovery_interval': 300,
}
REDIS_DEFAULTS = {'host': '127.0.0.1', 'port': 6379, 'db': 0,
                  'password': None}


def _get(block, key):
    """A key of a registry ``Config`` (``_env:`` expanded) or a dict."""
    if block is None:
        return None
    if isinstance(block, dict):
        return block.get(key)
    try:
        return getattr(block, key)
    except Exception as e:  # the registry's Config raises on bad _env YAML
        raise ConfigError('%s.%s: %s' % (BLOCK, key, e))


def _bool(name, value, default):
    if value is None or value == '':
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) or type(value).__name__ == 'unicode':
        low = value.strip().lower()
        if low in ('true', 'yes', 'on', '1'):
            return True
        if low in ('false', 'no', 'off', '0'):
            return False
    raise ConfigError('%s.%s: expected true or false, got %r'
                      % (BLOCK, name, value))


def _number(name, value, default, minimum=0):
    if value is None or value == '':
        return default
    if isinstance(value, bool):
        raise ConfigError('%s.%s: expected a number of seconds, got %r'
                          % (BLOCK, name, value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError('%s.%s: expected a number of seconds, got %r'
                          % (BLOCK, name, value))
    if number < minimum:
        raise ConfigError('%s.%s: must be at least %s, got %r'
                          % (BLOCK, name, minimum, value))
    return number


def _string(name, value, default):
    if value is None or value == '':
        return default
    if isinstance(value, (bool, int, float, dict, list)):
        raise ConfigError('%s.%s: expected a string, got %r'
                          % (BLOCK, name, value))
    return '%s' % value


def load(registry_config):
    """Settings from the registry's config (or a plain dict of the whole
    flavor).  An absent block means disabled."""
    extensions = _get(registry_config, 'extensions')
    block = _get(extensions, 'refcount')
    if block is None:
        return parse({})
    if not (isinstance(block, dict) or hasattr(block, 'keys')):
        raise ConfigError('%s: expected a mapping of settings, got %r'
                          % (BLOCK, block))
    return parse(block)


def parse(block):
    known = set(DEFAULTS) | {'redis'}
    keys = block.keys() if hasattr(block, 'keys') else []
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ConfigError('%s: unknown key(s) %s (known: %s)' % (
            BLOCK, ', '.join(unknown), ', '.join(sorted(known))))
    backend = _string('lock_backend', _get(block, 'lock_backend'),
                      DEFAULTS['lock_backend'])
    if backend not in ('local', 'redis'):
        raise ConfigError('%s.lock_backend: expected local or redis, got %r'
                          % (BLOCK, backend))
    redis_block = _get(block, 'redis')
    redis = dict(REDIS_DEFAULTS)
    if redis_block is not None:
        for key in ('host', 'password'):
            redis[key] = _string('redis.' + key, _get(redis_block, key),
                                 redis[key])
        for key in ('port', 'db'):
            redis[key] = int(_number('redis.' + key, _get(redis_block, key),
                                     redis[key]))
    lock_timeout = _number('lock_timeout', _get(block, 'lock_timeout'),
                           DEFAULTS['lock_timeout'])
    if lock_timeout <= 0:
        raise ConfigError('%s.lock_timeout: must be more than 0, got %r'
                          % (BLOCK, lock_timeout))
    return Settings(
        enabled=_bool('enabled', _get(block, 'enabled'), DEFAULTS['enabled']),
        dry_run=_bool('dry_run', _get(block, 'dry_run'), DEFAULTS['dry_run']),
        lock_backend=backend,
        lock_dir=_string('lock_dir', _get(block, 'lock_dir'),
                         DEFAULTS['lock_dir']),
        redis=redis,
        grace_period=_number('grace_period', _get(block, 'grace_period'),
                             DEFAULTS['grace_period']),
        intent_timeout=_number('intent_timeout',
                               _get(block, 'intent_timeout'),
                               DEFAULTS['intent_timeout']),
        lock_timeout=lock_timeout,
        allow_mirroring=_bool('allow_mirroring',
                              _get(block, 'allow_mirroring'),
                              DEFAULTS['allow_mirroring']),
        audit_log=_string('audit_log', _get(block, 'audit_log'),
                          DEFAULTS['audit_log']),
        recovery_interval=_number('recovery_interval',
                                  _get(block, 'recovery_interval'),
                                  DEFAULTS['recovery_interval']),
    )


def make_locks(settings):
    """The lock provider the settings ask for."""
    from . import locks
    if settings.lock_backend == 'redis':
        r = settings.redis
        return locks.RedisLocks(host=r['host'], port=r['port'], db=r['db'],
                                password=r['password'],
                                timeout=settings.lock_timeout)
    return locks.LocalLocks(settings.lock_dir, timeout=settings.lock_timeout)
