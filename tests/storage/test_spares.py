"""Spare files: removed records reused as new ones, on local storage."""

from __future__ import absolute_import, unicode_literals

import os
import shutil

from registry_refcount import layout
from registry_refcount import records
from registry_refcount import spares

ID = 'c' * 64


def _root(store):
    return records.local_root(store)


def _spare_files(root):
    found = []
    for folder, _, files in os.walk(os.path.join(root, layout.SPARES)):
        found.extend(os.path.join(folder, f) for f in files)
    return found


def test_a_removed_record_is_reused_whole(store):
    root = _root(store)
    records.write_marker(store, ID, 'child-' + 'd' * 64, b'x' * 500)
    path = os.path.join(root, layout.marker_path(ID, 'child-' + 'd' * 64))
    inode = os.stat(path).st_ino
    records.remove_marker(store, ID, 'child-' + 'd' * 64)
    assert not os.path.exists(path)
    assert len(_spare_files(root)) == 1
    records.write(store, layout.intent('e' * 32), {'tag': 'a/b:c'})
    target = os.path.join(root, layout.intent('e' * 32))
    assert os.stat(target).st_ino == inode          # no new file made
    assert records.read(store, layout.intent('e' * 32)) == {
        'tag': 'a/b:c', 'v': records.FORMAT}       # no stale tail
    assert _spare_files(root) == []


def test_absent_is_fine_and_the_pool_is_bounded(store):
    root = _root(store)
    records.remove(store, layout.intent('f' * 32))     # never there
    for i in range(spares.LIMIT + 5):
        records.write_marker(store, ID, 'pending-%032x' % i)
    for i in range(spares.LIMIT + 5):
        records.remove_marker(store, ID, 'pending-%032x' % i)
    assert len(_spare_files(root)) == spares.LIMIT
    assert list(records.markers(store, ID)) == []


def test_a_spare_folder_removed_under_a_live_process(store):
    root = _root(store)
    for i in range(3):
        records.write_marker(store, ID, 'pending-%032x' % i)
        records.remove_marker(store, ID, 'pending-%032x' % i)
    shutil.rmtree(os.path.join(root, layout.SPARES))
    records.write(store, layout.STATE, {'initialised': True})
    assert records.read(store, layout.STATE)['initialised'] is True
    records.write_marker(store, ID, 'pending-%032x' % 9, b'{}')
    records.remove_marker(store, ID, 'pending-%032x' % 9)
    assert list(records.markers(store, ID)) == []
    assert len(_spare_files(root)) == 1     # a new folder was started


def test_recovery_cleans_the_spares_of_dead_processes(store):
    root = _root(store)
    pid = os.fork()
    if pid == 0:               # a worker killed with spares on disk
        try:
            records.write_marker(store, ID, 'pending-%032x' % 1)
            records.remove_marker(store, ID, 'pending-%032x' % 1)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    records.write_marker(store, ID, 'pending-%032x' % 2)
    records.remove_marker(store, ID, 'pending-%032x' % 2)
    base = os.path.join(root, layout.SPARES)
    assert len(os.listdir(base)) == 2
    assert spares.clean(root) == 1
    (left,) = os.listdir(base)
    assert left.split('-')[1] == str(os.getpid())
    old = os.path.join(base, 'otherhost-1-abcdef12')
    os.makedirs(old)
    assert spares.clean(root) == 0                      # recently touched
    os.utime(old, (0, 0))
    assert spares.clean(root) == 1
