"""The registry's signals, wired to the protocols.

This module is the ``docker_registry.extensions`` entry point: the registry
imports it at start-up (``extensions.factory.boot()``), before its app and
routes.  It reads ``extensions.refcount``; absent or disabled, it connects
nothing and touches nothing.

Receivers accept ``**kwargs`` (the registry may add arguments), catch and
log every error, and leave unfinished work to recovery: they never turn a
request into a 500 after the registry has changed storage.  The only
requests they refuse are the ones that would otherwise break a chain: a
tag write naming an image that is being deleted, and a child of such an
image.
"""

from __future__ import absolute_import, unicode_literals

import json
import logging
import os
import sys
import time

from . import audit
from . import background
from . import durable
from . import gap
from . import history
from . import layout
from . import locks
from . import names as naming
from . import owner
from . import protocols
from . import records
from . import recovery
from . import runs
from . import settings as settings_mod
from . import tally

logger = logging.getLogger(__name__)

_state = {}   # 'ctx', 'settings' once booted
#: The flask module, once the receivers are connected.  (Not imported in
#: each receiver: under gevent an import statement takes the patched
#: import lock, and every request of the registry passes here twice.)
flask = None


def boot(registry_config=None, store=None):
    """Read the settings and, when enabled, connect the receivers."""
    if registry_config is None:
        from docker_registry.lib import config
        registry_config = config.load()
    settings = settings_mod.load(registry_config)
    if not settings.enabled:
        _announce('refcount: disabled (extensions.refcount.enabled is not '
                  'true); connecting nothing')
        return None
    mirroring = registry_config.mirroring
    if mirroring and mirroring.source and not settings.allow_mirroring:
        raise settings_mod.ConfigError(
            'extensions.refcount: this registry is a mirror '
            '(mirroring.source is set): it caches upstream images that no '
            'local tag names, and a gc would delete that whole cache. '
            'Disable the extension, or set extensions.refcount.'
            'allow_mirroring: true if you really mean it.')
    if store is None:
        # The drivers' LRU decorators look at the cache when the driver
        # module is imported: initialise it first, as the registry would,
        # or loading the driver here would turn the registry's cache off.
        from docker_registry.lib import cache  # noqa: F401
        from docker_registry import storage
        store = storage.load()
    moved = protocols.move_predecessor_aside(store)
    if moved:
        _announce(moved)
    durable.enabled = settings.sync_writes
    lock_provider = settings_mod.make_locks(settings,
                                            records.local_root(store))
    if settings.lock_backend == 'local' and records.local_root(store) is None:
        logger.warning('refcount: lock_backend is local but storage is not: '
                       'this is safe only if a single host serves this '
                       'storage; use lock_backend: redis for several hosts')
    ctx = protocols.context(store, lock_provider, settings.dry_run,
                            undo_window=settings.undo_window)
    audit.open_file(settings_mod.audit_log(settings,
                                           records.local_root(store)))
    protocols.initialise(store)
    try:
        protocols.record_lockspace(store, lock_provider)
    except locks.LockTimeout as e:
        logger.error('refcount: could not record the lock space: %s', e)
    _state.update(ctx=ctx, settings=settings)
    _connect()
    _start_recovery(settings)
    _announce(startup_line(settings, protocols.is_initialised(store)))
    return ctx


def refuse_to_start(error):
    """A setting is wrong: say so in one line, once for all the workers
    of one gunicorn master (the first to boot says it), and exit with
    gunicorn's "worker failed to boot" code, which stops the master - not
    a traceback per worker, each booted again and again."""
    import os
    import tempfile
    parent = os.getppid()
    said = os.path.join(tempfile.gettempdir(), 'registry-refcount-refused-'
                        '%d-%s' % (parent, owner.start_time(parent)))
    try:
        os.close(os.open(said, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        first = True
    except OSError:
        first = False
    if first:
        sys.stderr.write('registry-refcount: configuration error, the '
                         'registry does not start: %s\n' % (error,))
        sys.stderr.flush()
    # The first exits with gunicorn's "worker failed to boot" code
    # (Arbiter.WORKER_BOOT_ERROR) once the master is in its main loop,
    # which halts it; the others a little later, quietly, while it halts
    # (a second boot error met during the halt, or one while it still
    # spawns workers, escapes its handler as a traceback of its own).
    import time
    time.sleep(1 if first else 2)
    os._exit(3 if first else 0)


def startup_line(settings, initialised):
    """What a worker says once enabled.  Not initialised, the extension
    records references but deletes nothing (an image already there may
    have referrers it has not counted yet): the line says so in words,
    with the command that ends it, since an operator reading
    ``initialised=False`` took it for a fault or missed it."""
    what = ('' if initialised else
            'tracking only, deleting nothing until '
            '`registry-refcount rebuild`; ')
    return 'refcount: enabled (%sdry_run=%s, lock_backend=%s)' % (
        what, settings.dry_run, settings.lock_backend)


def _announce(message):
    """Say it at start-up: the registry configures logging only after the
    extensions are loaded, so write to stderr if nothing listens yet."""
    if logging.getLogger().handlers:
        logger.warning(message)
    else:
        sys.stderr.write(message + '\n')


def _connect():
    global flask
    import flask
    from docker_registry.lib import signals
    flask.request_started.connect(on_request_started)
    flask.request_finished.connect(on_request_finished)
    flask.request_tearing_down.connect(on_request_tearing_down)
    signals.tag_created.connect(on_tag_created)
    signals.tag_deleted.connect(on_tag_deleted)
    signals.repository_deleted.connect(on_repository_deleted)
    signals.before_put_image_json.connect(on_before_put_image_json)


def _start_recovery(settings):
    """Recovery in the background: at start-up, then periodically."""
    try:
        import gevent
        from gevent import monkey
        if not monkey.is_module_patched('socket'):
            raise ImportError
    except ImportError:
        return

    import gevent.event
    wake = _state['wake'] = gevent.event.Event()

    def loop():
        while True:
            ctx = _state['ctx']
            try:
                # again each round: a Redis flushed or a lock folder wiped
                # is a new lock space, which a CLI must find recorded
                protocols.record_lockspace(ctx.store, ctx.locks)
                report = recovery.recover_exclusively(
                    ctx._replace(by='recovery'), ctx.locks,
                    settings.intent_timeout)
                if report and recovery.eventful(report):
                    runs.record(ctx.store, 'recover', 'worker',
                                report['started'], records.now(ctx.store),
                                runs.outcome(0, report), report)
            except Exception:
                logger.exception('refcount: recovery failed; will retry')
            tally.flush(ctx.store)
            if settings.gc_interval:
                _scheduled_gc(settings)
            if settings.metrics_file:
                _write_metrics(settings)
            wake.clear()
            wake.wait(settings.recovery_interval)
            gevent.sleep(RETRY_AFTER)

    background.forever(loop)


def _scheduled_gc(settings):
    """Every ``gc_interval``: ``registry-refcount gc --scheduled``, the
    same command an operator runs, with this worker's configuration.  It
    skips itself when another worker or host ran it, or runs it (it holds
    the gc lock)."""
    if _due('gc', settings.gc_interval):
        _command('scheduled gc', 'gc', '--scheduled')


def _write_metrics(settings):
    """Every recovery round, ``registry-refcount metrics --output`` keeps
    ``metrics_file`` current - unless another worker of this host wrote
    it within half a round (the file is this host's)."""
    path, every = settings.metrics_file, settings.recovery_interval
    try:
        fresh = time.time() - os.path.getmtime(path) < every / 2.0
    except OSError:
        fresh = False
    if not fresh and _due('metrics', every):
        _command('metrics', 'metrics', '--output', path)


def _due(what, every):
    """Has ``every`` passed since this worker last started ``what``?"""
    if time.time() - _state.get('tried:' + what, 0) < every:
        return False
    _state['tried:' + what] = time.time()
    return True


def _command(what, *args):
    """``registry-refcount <args>`` in a process of its own (a walk of the
    whole registry in this worker would stop its requests); the wait for
    it is cooperative."""
    import subprocess
    try:
        child = subprocess.Popen(
            [sys.executable, '-m', 'registry_refcount', '--quiet'] +
            list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = child.communicate()[0]
    except Exception as e:
        logger.error('refcount: %s could not start: %s', what, e)
        return
    if child.returncode:
        logger.error('refcount: %s exited with %d: %s', what,
                     child.returncode, out.decode('utf-8', 'replace')[-2000:])


#: Seconds before work a request left (a storage error, a lock not had)
#: is tried again by this worker's recovery, rather than at its next
#: round: a deletion left with its tombstone refuses re-pushes of the
#: image meanwhile.
RETRY_AFTER = 1


def _recover_soon():
    wake = _state.get('wake')
    if wake is not None:
        wake.set()


# -- receivers -------------------------------------------------------------

def _abort(message, code):
    from docker_registry import toolkit
    flask.abort(toolkit.api_error(message, code))


def _request_tag(view_args):
    """The tag a request names, as the registry's views parse it."""
    parse = _state.get('parse')
    if parse is None:
        from docker_registry.toolkit import parse_repository_name
        parse = _state['parse'] = parse_repository_name(
            lambda namespace, repository, tag=None: dict(
                namespace=namespace, repository=repository, tag=tag))
    return parse(view_args['repository'], **dict(
        (k, v) for k, v in view_args.items() if k == 'tag'))


def on_request_started(sender, **kwargs):
    """Before a tag write or delete: record the intent; for a write, also
    keep the named image alive until the tag is written."""
    request = flask.request
    endpoint = request.endpoint
    if endpoint not in ('put_tag', '_delete_tag', 'delete_repository'):
        return
    ctx = _state['ctx']
    try:
        names = _request_tag(request.view_args or {})
        key, intent = naming.request_key(ctx.store, endpoint, names)
    except (layout.InvalidName, KeyError, UnicodeError) as e:
        logger.warning('refcount: refusing request with unusable names: %r',
                       e)
        _abort(naming.refusal(e), 400)
    if endpoint == 'put_tag':
        image = _tag_body(request)
        if image is None:
            return        # the registry answers it; nothing to protect
        intent['image'] = image
    intent_id = protocols.new_intent_id()
    try:
        if endpoint == 'put_tag':
            stored = protocols.begin_tag_write(ctx, intent_id, key, intent)
        else:
            stored = protocols.write_intent(ctx.store, intent_id, **intent)
    except Exception as e:
        if gap.no_space(e):
            return _untracked('tag request %s' % intent, e)
        logger.exception('refcount: could not record intent %s', intent)
        if endpoint == 'put_tag':
            _abort('Registry storage is not available, retry later', 503)
        return
    if stored is None:
        _abort('Image not found', 404)
    flask.g.refcount = dict(intent, id=intent_id, stored=stored, names=(
        names['namespace'], names['repository'], names.get('tag')))
    if endpoint == 'put_tag':
        records.before_registry_write(layout.tag_file(key))


def _tag_body(request):
    """The image id in a tag PUT body, or None (logged) if not valid."""
    data = request.get_data()
    try:
        value = json.loads(layout.text(data))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, (type(''), type(u''))):
        return None
    if not layout.valid_id(value):
        logger.warning('refcount: tag write with invalid image id %r; not '
                       'tracked', value[:80])
        return None
    return layout.text(value)


def _run(what, fn, *args):
    """Run a protocol step for a receiver: log, never raise."""
    try:
        fn(*args)
        return True
    except locks.LockTimeout as e:
        logger.error('refcount: %s: %s; left to recovery', what, e)
        tally.add('lock_timeouts')
        _recover_soon()
    except (protocols.BadInput, layout.InvalidName) as e:
        logger.error('refcount: %s: %s; nothing deleted', what, e)
    except Exception:
        logger.exception('refcount: %s failed; left to recovery', what)
        _recover_soon()
    return False


def _covered(names=None, repository=None):
    """Is this tag (its names as the view parsed them, before any key is
    built) or repository the one the request's intent names?  Then its
    reconcile runs after the response, with the intent."""
    state = getattr(flask.g, 'refcount', None)
    return bool(state) and (state['names'] == names if names else
                            state.get('repository') == repository)


def on_tag_created(sender, namespace=None, repository=None, tag=None,
                   **kwargs):
    _on_tag(namespace, repository, tag)


def on_tag_deleted(sender, namespace=None, repository=None, tag=None,
                   image=None, **kwargs):
    _on_tag(namespace, repository, tag)
    _note_deleted(namespace, repository, tag, image)


def _note_deleted(namespace, repository, tag, image):
    """Put a deleted tag into the tag history (``restore``), after the
    response, from the signal, which says what it named: the reconcile may
    not know it (a tag deleted before its write's work after the response
    had run: its ledger never named the image)."""
    ctx = _state['ctx']
    if not ctx.undo_window or ctx.dry_run:
        return
    try:
        key = layout.TagKey.from_request(namespace, repository, tag)
        image = layout.check_id(layout.text(image))
    except (layout.InvalidName, UnicodeError, TypeError, AttributeError):
        return                  # nothing to put back: nothing to note
    why = ('its repository was deleted' if _covered(repository='%s/%s' % (
        key.namespace, key.repository)) else 'the tag was deleted')
    background.run(_run, 'note the deletion of %s' % key.display,
                   history.record, ctx, key, image, None, why)


def _on_tag(namespace, repository, tag):
    if _covered(names=(namespace, repository, tag)):
        return
    ctx = _state['ctx']
    try:
        key = layout.TagKey.from_request(namespace, repository, tag)
    except layout.InvalidName as e:
        logger.error('refcount: ignoring tag signal: %s', e)
        return
    if _covered(repository='%s/%s' % (key.namespace, key.repository)):
        return      # a repository delete's tags: its intent reconciles them
    _run('reconcile %s' % key.display, protocols.reconcile_tag, ctx, key)


def on_repository_deleted(sender, namespace=None, repository=None,
                          **kwargs):
    ctx = _state['ctx']
    try:
        ns, repo = layout.quote(namespace), layout.quote(repository)
        layout.TagKey(ns, repo, 'x')
    except layout.InvalidName as e:
        logger.error('refcount: ignoring repository signal: %s', e)
        return
    if not _covered(repository='%s/%s' % (ns, repo)):
        _run('reconcile repository %s/%s' % (namespace, repository),
             protocols.reconcile_repository, ctx, ns, repo)


def on_before_put_image_json(sender, image_json=None, **kwargs):
    """Register the new image as a child of its parent.  Returns an error
    string (the registry answers 400 and stores nothing) if the parent is
    gone or being deleted, or if this very image is being deleted."""
    refusal = _register_image(image_json)
    if refusal is None and isinstance(image_json, dict):
        # The registry's cache skips a write of the bytes it holds: after
        # a write of this request's that reached Redis and not storage,
        # every retry would answer 200 and write nothing - no json (the
        # layer and checksum PUTs answer 404 for ever), no ancestry (the
        # extension's truth).  Their entries dropped first, storage is
        # written: the request's files, _inprogress, json and ancestry.
        image = layout.text(image_json['id'])
        for name in (layout.IN_PROGRESS, 'json', 'ancestry'):
            records.before_registry_write(layout.image_file(image, name))
    return refusal


def _register_image(image_json):
    """(See :func:`on_before_put_image_json`.)  None, or the refusal."""
    ctx = _state['ctx']
    if not isinstance(image_json, dict):
        return None
    image_id = image_json.get('id')
    parent = image_json.get('parent')
    if not layout.valid_id(image_id):
        # the registry's id rule ends in '$': it lets '<id>\n' through
        return 'Invalid image id'
    if parent and not layout.valid_id(parent):
        logger.error('refcount: image %s names an invalid parent %r',
                     image_id, parent)
        return 'Invalid parent image id'
    parent = parent and layout.text(parent)
    store = ctx.store
    try:
        # three reads that do not depend on one another, at once (one
        # round trip on object storage, not three: bench part 7)
        deleting, descends, old = records.values(records.together(
            store, lambda: protocols.tombstones(store, image_id),
            lambda: parent and _descends_from(store, parent, image_id),
            lambda: parent and _stored_parent(store, image_id)))
        if deleting:
            return ('Image %s is being deleted; retry the push shortly'
                    % image_id)
        if not parent:
            return None
        if descends:
            return ANCESTOR_REFUSAL
        if old not in (None, parent):
            # a json PUT again for a push in progress, naming another
            # parent than the stored json: once the request is over, the
            # first parent's registration is stale (if the new json was
            # stored; checked then)
            flask.g.refcount_reparent = (image_id, old)
        return protocols.register_child(ctx, image_id, parent)
    except locks.LockTimeout as e:
        logger.error('refcount: %s; refusing image %s', e, image_id)
        return 'Registry busy, retry the push'
    except Exception as e:
        if gap.no_space(e):
            return _untracked('image %s' % image_id, e)
        logger.exception('refcount: could not register image %s as a child '
                         'of %s', image_id, parent)
        return 'Registry storage is not available, retry the push'


#: The refusal of an image json whose parent is the image, or descends
#: from it: its child marker would keep it (or the cycle) for ever.
ANCESTOR_REFUSAL = 'An image cannot be its own ancestor'


def _descends_from(store, parent, image_id):
    """Is ``parent`` the image itself, or does it descend from it (its
    ancestry names it)?  The registry alone stores such a json (the
    parent's json is there); what cannot be read says no."""
    if parent == image_id:
        return True
    try:
        return image_id in protocols.read_ancestry(store, parent)
    except protocols.BadInput:
        return False


def _stored_parent(store, image_id):
    """The parent the image's stored json names; None if none is stored
    or it cannot be told."""
    try:
        old = protocols.stored_parent(store, image_id)
    except protocols.BadInput:
        return None
    return None if old is protocols.NOT_STORED else old


def _drop_old_registration(ctx, image_id, old_parent):
    """After a json PUT that named another parent: the old parent's
    ``child-`` marker goes if the stored json no longer names it
    (:func:`.protocols.drop_stale_marker` reads it again), and the old
    parent with it if that was its last marker."""
    def drop():
        if protocols.drop_stale_marker(ctx, old_parent,
                                       layout.child_marker(image_id), 0):
            protocols.remove_reference(
                ctx, old_parent, None, 'its child %s was pushed again '
                'with another parent' % image_id)
    _run('drop the registration of %s on %s' % (image_id, old_parent), drop)


def _untracked(what, error):
    """A full disk: the extension's record could not be written.  The
    request goes on as the registry alone would answer it (refusing it
    would block the registry's writes, which may still fit); its write
    is registered by the catch-up once there is room (:mod:`.gap`), and
    a deletion keeps what it names meanwhile."""
    logger.error('refcount: %s goes through untracked: %s; it is caught '
                 'up with once there is room', what, error)
    gap.untracked()
    return None


def on_request_finished(sender, response=None, **kwargs):
    """Remember whether the tag request succeeded: one that did not
    write its tag (refused by auth, a 500 of the registry's own write, a
    tag that was not there) must delete nothing."""
    state = getattr(flask.g, 'refcount', None)
    if state and response is not None:
        state['status'] = response.status_code


def on_request_tearing_down(sender, **kwargs):
    """After the request: reconcile what it named, release the pending
    marker, drop the intent - after the response (:mod:`.background`).
    Anything that fails stays recorded in the intent for recovery."""
    reparent = getattr(flask.g, 'refcount_reparent', None)
    if reparent:
        flask.g.refcount_reparent = None
        background.run(_drop_old_registration, _state['ctx'], *reparent)
    state = getattr(flask.g, 'refcount', None)
    if not state:
        return
    flask.g.refcount = None
    ctx = _state['ctx']
    doc = dict(state['stored'])
    if state.get('status') != 200:
        doc['failed'] = True
    background.run(_finish, ctx, state['id'], doc)


def _finish(ctx, intent_id, doc):
    """A request's work after its response."""
    _run('finish request %s' % intent_id, protocols.finish_intent, ctx,
         intent_id, doc)
