"""What a root process makes in a storage someone else owns keeps that
owner (issue 23): a ``registry-refcount`` run as root once left root-owned
0755 folders in a storage owned by ``nobody``, where the registry's workers
could then write no marker."""

from __future__ import absolute_import, unicode_literals

import os
import stat

import pytest

from docker_registry.drivers import file as file_driver

from registry_refcount import audit
from registry_refcount import backends
from registry_refcount import layout
from registry_refcount import locks
from registry_refcount import ownership
from registry_refcount import protocols
from registry_refcount import rebuild
from registry_refcount import settings as settings_mod
from registry_refcount import sweep

from .world import delete_tag, image_id, push, put_tag

T = layout.TagKey
NOBODY = 65534
#: not what ``makedirs`` gives under the usual umask (0755), so that a
#: folder given the root's mode is told from one that was not
ROOT_MODE = 0o750

as_root = pytest.mark.skipif(
    not hasattr(os, 'geteuid') or os.geteuid() != 0,
    reason='giving files away needs root')


def extensions_own(relative):
    """Is ``relative`` (a path in storage) the extension's?  Its folder
    ``extensions/``, markers and tombstones; the rest is the registry's
    (made here by this root process, standing in for the registry)."""
    parts = relative.split(os.sep)
    return (parts[0] == 'extensions' or layout.REFERENCES in parts or
            any(p.startswith(layout.TOMBSTONE) for p in parts))


def walk(root):
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = os.path.join(folder, name)
            yield os.path.relpath(path, root), os.lstat(path)


@as_root
def test_root_run_keeps_the_storage_owner(tmpdir, monkeypatch):
    """Pushes, tags, a retag, a tag delete (a cascade: journal, tombstones,
    an audit line), a rebuild and a gc, all by root on a storage root
    owned by nobody, mode 0750: every file and folder the extension made -
    records, markers, ledger, lock files, the lock space's id, the audit
    log - is nobody's, and each folder 0750."""
    root = str(tmpdir.join('storage'))
    os.mkdir(root)
    os.chown(root, NOBODY, NOBODY)
    os.chmod(root, ROOT_MODE)
    store = file_driver.Storage(path=root)
    lock_dir = settings_mod.lock_dir(settings_mod.load({}), root)
    provider = locks.LocalLocks(lock_dir, timeout=5)
    ctx = protocols.context(store, provider)
    monkeypatch.setattr(audit, '_file', {})
    audit.open_file(os.path.join(root, layout.AUDIT, 'deletions.log'))
    protocols.initialise(store)
    protocols.record_lockspace(store, provider)

    base, old, new, stray = [image_id(n) for n in 'bons']
    push(ctx, base)
    push(ctx, old, base)
    push(ctx, new, base)
    push(ctx, stray)                        # never tagged: gc's
    put_tag(ctx, T('ns', 'app', 'latest'), old)
    put_tag(ctx, T('ns', 'app', 'latest'), new)     # retag frees old
    put_tag(ctx, T('ns', 'keep', 'v'), base)
    delete_tag(ctx, T('ns', 'app', 'latest'))       # frees new
    assert rebuild.rebuild_exclusively(ctx, jobs=2)['initialised']
    report = sweep.sweep(ctx, grace_period=0, jobs=2)
    assert report['deleted'] and report['errors'] == [], report
    assert not os.path.exists(os.path.join(root, 'images', old))

    theirs = [(p, st) for p, st in walk(root) if extensions_own(p)]
    made = set(p for p, _ in theirs)
    for expected in (layout.STATE, layout.LOCKSPACE,
                     layout.ledger(T('ns', 'keep', 'v')),
                     os.path.join(layout.AUDIT, 'deletions.log'),
                     os.path.relpath(os.path.join(lock_dir, 'identity'),
                                     root),
                     os.path.relpath(os.path.join(lock_dir, 'image.locks'),
                                     root),
                     layout.references_dir(base)):
        assert expected in made, (expected, sorted(made))
    wrong = [(p, st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode)))
             for p, st in theirs
             if (st.st_uid, st.st_gid) != (NOBODY, NOBODY) or
             (stat.S_ISDIR(st.st_mode) and
              stat.S_IMODE(st.st_mode) != ROOT_MODE)]
    assert wrong == []


@as_root
def test_root_owned_storage_is_left_alone(tmpdir):
    """Root's own storage: nothing to give (no chown, no chmod)."""
    root = str(tmpdir.join('storage'))
    os.mkdir(root)
    assert ownership.of(root) is None
    assert ownership.of(os.path.join(root, 'not', 'yet')) is None


def test_not_root_does_nothing(tmpdir, monkeypatch):
    """A registry's own worker (not root) asks nothing: no stat, no
    chown; the backend's owner is None."""
    monkeypatch.setattr(ownership, '_euid', [12345])
    monkeypatch.setattr(os, 'stat', None)       # would fail if asked
    assert ownership.of(str(tmpdir)) is None
    monkeypatch.undo()
    monkeypatch.setattr(ownership, '_euid', [12345])
    store = file_driver.Storage(path=str(tmpdir.join('s')))
    assert backends.backend(store).owner is None


@as_root
def test_nearest_existing_folder_decides(tmpdir):
    """A folder yet to be made takes the owner of the nearest one above
    it that exists (the lock folder's, the audit log's)."""
    root = str(tmpdir.join('storage'))
    os.mkdir(root)
    os.chown(root, NOBODY, NOBODY + 1)
    os.chmod(root, 0o2770)
    owner = ownership.of(os.path.join(root, 'extensions', 'refcount'))
    assert owner == (NOBODY, NOBODY + 1, 0o2770)
