from __future__ import absolute_import, unicode_literals

import pytest

from docker_registry.drivers import file as file_driver

from registry_refcount import locks
from registry_refcount import protocols


@pytest.fixture
def store(tmpdir):
    s = file_driver.Storage(path=str(tmpdir.join('storage')))
    protocols.initialise(s)
    return s


@pytest.fixture
def ctx(store, tmpdir):
    return protocols.context(
        store, locks.LocalLocks(str(tmpdir.join('locks')), timeout=5))
