"""The ``extensions: refcount:`` block of the registry's configuration.

Read through the registry's own ``Config`` object, so every key may be an
``_env:NAME:default`` reference like the rest of the registry's settings.
A bad value is a :class:`ConfigError` naming the key: the registry refuses
to start rather than run with a setting silently ignored.
"""

from __future__ import absolute_import, unicode_literals

import collections
import os

from . import layout

BLOCK = 'extensions.refcount'


def _shown(value):
    """A config value as the operator wrote it (not Python 2's u'...')."""
    if isinstance(value, (type(u''), bytes)):
        return "'%s'" % (value.decode('utf-8', 'replace') if isinstance(
            value, bytes) else value)
    return '%s' % (value,)

#: ``intent_timeout`` decides only for work written on another host (this
#: host's is finished once its process is gone): below this, a live tag
#: write there would be taken for abandoned and its image released.
MIN_INTENT_TIMEOUT = 60

#: The default ``lock_dir`` on local storage, under the storage root: the
#: workers and the CLI of a host, which use the same storage, always share
#: it, and no system cleaner empties it (unlike /tmp).
LOCKS_UNDER_STORAGE = 'extensions/refcount/locks'


class ConfigError(Exception):
    """A bad value in the ``extensions.refcount`` block."""


Settings = collections.namedtuple('Settings', [
    'enabled', 'dry_run', 'lock_backend', 'lock_dir', 'redis',
    'grace_period', 'intent_timeout', 'lock_timeout', 'allow_mirroring',
    'audit_log', 'recovery_interval', 'lock_lease', 'sync_writes',
    'undo_window', 'retention', 'gc_interval', 'metrics_file'])

DEFAULTS = {
    'enabled': False,
    'dry_run': False,
    'lock_backend': 'local',
    'lock_dir': None,            # under the storage root: see make_locks
    'grace_period': 86400,
    'intent_timeout': 600,
    'lock_timeout': 30,
    'allow_mirroring': False,
    'audit_log': None,
    'recovery_interval': 300,
    'sync_writes': True,
    'lock_lease': 30,
    'undo_window': 3600,
    'retention': None,
    'gc_interval': 0,
    'metrics_file': None,
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
    raise ConfigError('%s.%s: expected true or false, got %s'
                      % (BLOCK, name, _shown(value)))


def _number(name, value, default, minimum=0):
    if value is None or value == '':
        return default
    if isinstance(value, bool):
        raise ConfigError('%s.%s: expected a number of seconds, got %s'
                          % (BLOCK, name, _shown(value)))
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError('%s.%s: expected a number of seconds, got %s'
                          % (BLOCK, name, _shown(value)))
    if number < minimum:
        raise ConfigError('%s.%s: must be at least %s, got %s'
                          % (BLOCK, name, minimum, _shown(value)))
    return number


def _positive(name, value):
    """Seconds that must be more than 0 (a wait or a lease of 0 would
    mean "never hold a lock")."""
    number = _number(name, value, DEFAULTS[name])
    if number <= 0:
        raise ConfigError('%s.%s: must be more than 0, got %s'
                          % (BLOCK, name, _shown(value)))
    return number


def _string(name, value, default):
    if value is None or value == '':
        return default
    if isinstance(value, (bool, int, float, dict, list)):
        raise ConfigError('%s.%s: expected a string, got %s'
                          % (BLOCK, name, _shown(value)))
    return '%s' % value


def load(registry_config):
    """Settings from the registry's config (or a plain dict of the whole
    flavor).  An absent block means disabled."""
    extensions = _get(registry_config, 'extensions')
    block = _get(extensions, 'refcount')
    if block is None:
        return parse({})
    if not (isinstance(block, dict) or hasattr(block, 'keys')):
        raise ConfigError('%s: expected a mapping of settings, got %s'
                          % (BLOCK, _shown(block)))
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
        raise ConfigError('%s.lock_backend: expected local or redis, got %s'
                          % (BLOCK, _shown(backend)))
    redis_block = _get(block, 'redis')
    redis = dict(REDIS_DEFAULTS)
    if redis_block is not None:
        for key in ('host', 'password'):
            redis[key] = _string('redis.' + key, _get(redis_block, key),
                                 redis[key])
        for key in ('port', 'db'):
            redis[key] = int(_number('redis.' + key, _get(redis_block, key),
                                     redis[key]))
    lock_timeout = _positive('lock_timeout', _get(block, 'lock_timeout'))
    lock_lease = _positive('lock_lease', _get(block, 'lock_lease'))
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
                               DEFAULTS['intent_timeout'],
                               minimum=MIN_INTENT_TIMEOUT),
        lock_timeout=lock_timeout,
        allow_mirroring=_bool('allow_mirroring',
                              _get(block, 'allow_mirroring'),
                              DEFAULTS['allow_mirroring']),
        audit_log=_string('audit_log', _get(block, 'audit_log'),
                          DEFAULTS['audit_log']),
        recovery_interval=_number('recovery_interval',
                                  _get(block, 'recovery_interval'),
                                  DEFAULTS['recovery_interval']),
        sync_writes=_bool('sync_writes', _get(block, 'sync_writes'),
                          DEFAULTS['sync_writes']),
        lock_lease=lock_lease,
        undo_window=_number('undo_window', _get(block, 'undo_window'),
                            DEFAULTS['undo_window']),
        retention=_retention(_get(block, 'retention')),
        gc_interval=_number('gc_interval', _get(block, 'gc_interval'),
                            DEFAULTS['gc_interval']),
        metrics_file=_string('metrics_file', _get(block, 'metrics_file'),
                             DEFAULTS['metrics_file']),
    )


#: The keys of a retention rule (``retain.rule``'s arguments).
RULE_KEYS = ('keep_last', 'keep_younger', 'match', 'exclude', 'repository',
             'include_latest', 'allow_empty')


def _retention(value):
    """The ``retention:`` policy: a list of rules, each checked now (a bad
    one stops the registry at start-up, naming it), kept as plain dicts
    for ``registry-refcount retain``."""
    if value is None or value == '':
        return []
    if not isinstance(value, list):
        raise ConfigError('%s.retention: expected a list of rules, got %s'
                          % (BLOCK, _shown(value)))
    from . import retain
    rules = []
    for n, item in enumerate(value):
        name = '%s.retention[%d]' % (BLOCK, n)
        if not isinstance(item, dict):
            raise ConfigError('%s: expected a mapping, got %s'
                              % (name, _shown(item)))
        unknown = sorted(set(item) - set(RULE_KEYS))
        if unknown:
            raise ConfigError('%s: unknown key(s) %s (known: %s)' % (
                name, ', '.join(unknown), ', '.join(RULE_KEYS)))
        rule = dict(item)
        try:
            if rule.get('keep_younger') is not None:
                rule['keep_younger'] = retain.duration(rule['keep_younger'])
            retain.rule(**rule)
        except Exception as e:   # ValueError, re.error
            raise ConfigError('%s: %s' % (name, e))
        rules.append(rule)
    return rules


def make_locks(settings, storage_root=None):
    """The lock provider the settings ask for.  ``storage_root`` is the
    local file driver's root folder (``records.local_root(store)``), or
    None when the storage is not local: the default ``lock_dir`` lives
    under it."""
    from . import locks
    if settings.lock_backend == 'redis':
        r = settings.redis
        return locks.RedisLocks(host=r['host'], port=r['port'], db=r['db'],
                                password=r['password'],
                                timeout=settings.lock_timeout,
                                lease=settings.lock_lease)
    return locks.LocalLocks(lock_dir(settings, storage_root),
                            timeout=settings.lock_timeout)


def lock_dir(settings, storage_root=None):
    """The local backend's folder: ``lock_dir`` if set, else
    ``<storage root>/extensions/refcount/locks``.  Without local storage
    there is no default: a folder the operator did not choose (a temporary
    one, another container's) may be one the CLI does not share with the
    workers, or one a cleaner empties, and then locks silently stop
    excluding."""
    if settings.lock_dir:
        return settings.lock_dir
    if storage_root is None:
        raise ConfigError(
            '%s.lock_dir: not set, and the storage is not local, so there '
            'is no default: set lock_dir to a persistent folder every '
            'worker and the registry-refcount command of this host share, '
            'such as /var/lib/registry-refcount/locks, or use '
            'lock_backend: redis' % BLOCK)
    return os.path.join(os.path.abspath(storage_root), LOCKS_UNDER_STORAGE)


def audit_log(settings, storage_root=None):
    """The audit log's file: ``audit_log`` if set, else
    ``<storage root>/extensions/refcount/audit/deletions.log``; without
    local storage and without the setting, None (the log only)."""
    if settings.audit_log or storage_root is None:
        return settings.audit_log or None
    return os.path.join(storage_root, layout.AUDIT, 'deletions.log')
