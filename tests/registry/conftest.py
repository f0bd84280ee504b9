from __future__ import absolute_import

import contextlib

import pytest

from registry_refcount import invariants

from .harness import Client, Registry


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'install: builds the wheel and a fresh registry '
        'environment (fetches its dependencies as make setup does)')


ENABLED = {'enabled': True, 'lock_dir': None, 'intent_timeout': 60,
           'undo_window': 0,
           'recovery_interval': 2, 'grace_period': 0, 'lock_timeout': 10}


def refcount_settings(tmpdir, **overrides):
    settings = dict(ENABLED, lock_dir=str(tmpdir.join('locks')))
    settings.update(overrides)
    return settings


@contextlib.contextmanager
def registries(tmpdir, settings=None, **defaults):
    """A factory of registries, all stopped at the end.  ``settings``
    are refcount settings on top of :func:`refcount_settings`;
    ``defaults`` are :class:`Registry` arguments (flavor, env, ...)."""
    started = []

    def make(refcount='default', workers=2, **kw):
        if refcount == 'default':
            refcount = refcount_settings(tmpdir, **(settings or {}))
        workdir = tmpdir.mkdtemp() if started else tmpdir
        args = dict(defaults, **kw)
        reg = Registry(str(workdir), refcount=refcount, workers=workers,
                       **args)
        started.append(reg)
        return reg
    try:
        yield make
    finally:
        for reg in started:
            reg.stop()


@pytest.fixture
def make_registry(tmpdir):
    with registries(tmpdir) as make:
        yield make


@pytest.fixture
def registry(make_registry):
    return make_registry().start()


@pytest.fixture
def client(registry):
    return Client(registry.url)


def file_store(path):
    from docker_registry.drivers import file as file_driver
    return file_driver.Storage(path=path)


def assert_invariants(reg, client=None, l1=True):
    """S1 and R1 on the registry's storage; L1 when asked; every tag
    pullable over HTTP."""
    reg.settle()
    rep = invariants.check(reg.store(), jobs=4)
    assert rep.s1 == [], rep.s1
    assert rep.r1 == [], rep.r1
    assert rep.unreadable == [] and rep.journal == [], rep.as_dict()
    if client is not None:
        for key in rep.tags:
            repo = '%s/%s' % (key.namespace, key.repository)
            assert client.pullable(repo, key.tag) is None, key
    return rep
