"""Issue 23: the operator's first day - a CLI that cannot be pointed at
the wrong place, options anywhere, a clean Ctrl-C, clear output.  Through
the real command, on storage made by real pushes."""

from __future__ import absolute_import

import json
import os
import signal
import subprocess
import time

from registry_refcount import layout

from .conftest import refcount_settings
from .harness import Client, make_config
from .test_cli import CLI, images_on_disk, run


def cli(storage, config, *args, **env):
    """The command on ``storage`` (which need not be a registry's)."""
    environ = dict(os.environ, STORAGE_PATH=storage,
                   DOCKER_REGISTRY_CONFIG=config, SETTINGS_FLAVOR='local')
    environ.update(env)
    p = subprocess.Popen([CLI] + list(args), env=environ,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    return p.returncode, out.decode('utf-8'), err.decode('utf-8')


def snapshot(root):
    """Every folder and file under ``root``, with each file's bytes."""
    found = {}
    for folder, dirs, files in os.walk(root):
        found[os.path.relpath(folder, root) + '/'] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def with_orphans(make_registry, n=3):
    """A registry that ran without the extension (retags and deletes left
    orphans), now serving with it, initialised by ``rebuild``."""
    plain = make_registry(refcount=None).start()
    client = Client(plain.url)
    base = client.push_chain(['fd-base'])
    orphans = []
    for i in range(n):
        orphans += client.push('ns/app', 'latest', ['fd-%d' % i], base[-1])
    kept = client.push('ns/app', 'latest', ['fd-kept'], base[-1])
    plain.stop()
    reg = make_registry(storage=plain.storage).start()
    code, doc, out, err = run(reg, '--json', 'rebuild')
    assert code == 0, (out, err)
    return reg, Client(reg.url), set(orphans), set(base + kept)


def test_the_wrong_storage_is_refused_and_left_untouched(registry, tmpdir):
    config = registry.config
    missing = str(tmpdir.join('no-such-registry'))
    for args in (['status'], ['verify'], ['recover'], ['gc'], ['rebuild'],
                 ['gc', '--dry-run']):
        code, out, err = cli(missing, config, *args)
        assert code == 2, (args, out, err)
        assert 'no such folder' in err and missing in err, err
        assert 'Traceback' not in err
        assert not os.path.exists(missing), args
    plain_file = str(tmpdir.join('a-file'))
    with open(plain_file, 'w') as f:
        f.write('not a folder')
    code, out, err = cli(plain_file, config, 'status')
    assert code == 2 and 'not a folder' in err and 'Traceback' not in err
    empty = str(tmpdir.mkdir('empty'))
    for args in (['status'], ['rebuild'], ['gc']):
        code, out, err = cli(empty, config, *args)
        assert code == 2 and 'is not a registry' in err, (args, err)
        assert os.listdir(empty) == []
    code, out, err = cli(empty, config, 'rebuild', '--init-empty')
    assert code == 0, (out, err)
    assert 'storage: %s' % os.path.abspath(empty) in out
    code, out, err = cli(empty, config, 'status')
    assert code == 0, (out, err)


def test_read_only_commands_write_nothing(make_registry):
    reg, client, orphans, kept = with_orphans(make_registry)
    # a damaged record: the read would quarantine it, were it allowed to
    ledger = reg.path(layout.ledger(layout.TagKey("ns", "app",
                                                       'latest')))
    with open(ledger, 'wb') as f:
        f.write(b'{"v": 1, "image": ')
    reg.stop()
    before = snapshot(reg.storage)
    for args in (['status'], ['--json', 'verify'], ['gc', '--dry-run'],
                 ['gc', '--dry-run', '--json']):
        code, out, err = cli(reg.storage, reg.config, *args)
        assert code in (0, 1), (args, out, err)
        assert 'storage' in out
        assert snapshot(reg.storage) == before, args
    code, out, err = cli(reg.storage, reg.config, '--json', 'gc',
                         '--dry-run', '--grace', '0')
    doc = json.loads(out)
    assert set(d['image'] for d in doc['deleted']) == orphans
    assert snapshot(reg.storage) == before


def test_options_before_or_after_the_command(registry, client):
    client.push('ns/o', 'v', ['opt-1'])
    for args in (['gc', '--dry-run', '--json'], ['verify', '--json'],
                 ['recover', '--json'], ['--json', 'status'],
                 ['status', '--json', '--quiet'], ['--quiet', 'gc',
                                                   '--json', '-v']):
        code, doc, out, err = run(registry, *args)
        assert code == 0, (args, out, err)
        doc = json.loads(out)
        assert doc['storage'] == os.path.abspath(registry.storage), args
    code, doc, out, err = run(registry, 'status', '--quiet')
    assert code == 0 and 'storage' in out
    code, doc, out, err = run(registry, '--version')
    assert code == 0 and 'registry-refcount 0.' in out + err


def test_ctrl_c_in_gc_stops_cleanly_and_recover_finishes_at_once(
        make_registry):
    reg, client, orphans, kept = with_orphans(make_registry, n=4)
    reg.stop()      # (its recovery loop would finish the work at once)

    def paused_gc(*args):
        p = subprocess.Popen(
            [CLI, 'gc', '--grace', '0'] + list(args), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(
                os.environ, STORAGE_PATH=reg.storage,
                DOCKER_REGISTRY_CONFIG=reg.config, SETTINGS_FLAVOR='local',
                REGISTRY_REFCOUNT_PAUSE_AT='after_json_removed'))
        deadline = time.time() + 30
        while _state(p.pid) != 'T':          # stopped mid-deletion
            assert time.time() < deadline and p.poll() is None
            time.sleep(0.05)
        return p

    # a gc that dies mid-deletion (one at a time: --jobs 1) leaves it ...
    p = paused_gc('--jobs', '1')
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    # ... status and verify agree on what is left
    s_code, s_out, _ = cli(reg.storage, reg.config, 'status')
    v_code, v_out, _ = cli(reg.storage, reg.config, 'verify')
    assert s_code == v_code == 1, (s_out, v_out)
    assert 'unfinished deletion' in s_out and 'recover' in s_out
    assert 'unfinished deletion' in v_out
    # the gc is gone: recover finishes its deletion at once, whatever
    # the timeout
    code, out, err = cli(reg.storage, reg.config, '--json', 'recover',
                         '--intent-timeout', '3600')
    assert code == 0 and json.loads(out)['deletions_finished'] == 1, out
    assert cli(reg.storage, reg.config, 'verify')[0] == 0

    # the operator's Ctrl-C lands while a deletion is under way: it
    # finishes (none is left half done), nothing more is begun
    p = paused_gc()
    os.kill(p.pid, signal.SIGINT)
    os.kill(p.pid, signal.SIGCONT)
    out, err = p.communicate()
    out, err = out.decode('utf-8'), err.decode('utf-8')
    assert p.returncode == 130, (out, err)
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
    said = [line for line in err.splitlines() if 'interrupted' in line]
    assert len(said) == 1 and 'recover' in said[0], err
    s_code, s_out, _ = cli(reg.storage, reg.config, 'status')
    v_code, v_out, _ = cli(reg.storage, reg.config, 'verify')
    assert s_code == v_code == 0, (s_out, v_out)
    code, out, err = cli(reg.storage, reg.config, 'gc', '--grace', '0')
    assert code == 0, (out, err)
    assert images_on_disk(reg) == kept
    # the run history (issue 26) has each run, the interrupted one as such
    # (a killed one cannot say anything)
    code, out, err = cli(reg.storage, reg.config, '--json', 'history')
    got = [(r['command'], r['outcome'], r['by'])
           for r in json.loads(out)['runs']]
    assert got == [('gc', 'done', 'command'), ('gc', 'interrupted', 'command'),
                   ('recover', 'done', 'command'),
                   ('rebuild', 'done', 'command')], got
    code, out, err = cli(reg.storage, reg.config, 'status')
    assert 'last gc:' in out and ' gc       done' in out, out
    assert [l for l in out.splitlines() if 'last error:' in l][0].endswith(
        'none recorded'), out


def _state(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def test_gc_lists_deletions_only_when_asked(make_registry):
    reg, client, orphans, kept = with_orphans(make_registry)
    code, doc, out, err = run(reg, 'gc', '--grace', '0')
    assert code == 0, (out, err)
    assert 'deleted 3 image(s)' in out or 'deleted %d image(s)' % len(
        orphans) in out, out
    assert not any(i in out for i in orphans), out     # a summary
    assert not any(i in err for i in orphans), err     # nothing at WARNING
    with open(os.path.join(reg.storage, layout.AUDIT,
                           'deletions.log')) as f:
        logged = [json.loads(line) for line in f]
    assert set(d['image'] for d in logged if d['by'] == 'gc') == orphans


def test_verify_before_rebuild_says_so(make_registry):
    plain = make_registry(refcount=None).start()
    Client(plain.url).push('ns/x', 'v', ['vb-1'])
    plain.stop()
    reg = make_registry(storage=plain.storage).start()
    code, doc, out, err = run(reg, 'verify')
    assert code == 1 and 'not initialised' in out and 'rebuild' in out, out
    assert 'R1' not in out


def test_recover_says_what_it_left_and_why(registry, client):
    # an intent of a tag write on another host, just written
    registry.stop()
    path = registry.path(layout.intent('f' * 32))
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as f:
        json.dump({'v': 1, 'tag': 'ns/a:v', 'at': time.time(),
                   'owner': {'host': 'elsewhere/x/y', 'pid': 1,
                             'start': '1'}}, f)
    code, doc, out, err = run(registry, '--json', 'recover')
    assert code == 0, (out, err)
    assert doc['intents_waiting'] == 1
    [left] = doc['left']
    assert left['id'] == 'f' * 32 and 'elsewhere' in left['why'] and \
        'intent_timeout' in left['why'], left
    code, doc, out, err = run(registry, 'recover')
    assert 'left intent %s' % ('f' * 32) in out, out
    assert "{u'" not in err


def test_a_bad_setting_stops_the_registry_with_one_line(make_registry,
                                                        tmpdir):
    reg = make_registry(refcount=refcount_settings(
        tmpdir, lock_backend='etcd'), workers=4)
    reg.start(wait=False)
    deadline = time.time() + 60
    while reg.proc.poll() is None:
        assert time.time() < deadline, reg.log()
        time.sleep(0.1)
    log = reg.log()
    assert reg.proc.returncode == 3, log      # gunicorn: failed to boot
    said = [line for line in log.splitlines()
            if 'extensions.refcount.lock_backend' in line]
    assert len(said) == 1, log
    assert "got 'etcd'" in said[0] and "u'" not in said[0]
    assert 'Traceback' not in log, log


def test_an_unreachable_redis_is_called_that(registry, tmpdir):
    bad = make_config(str(tmpdir.join('redis.yml')), refcount_settings(
        tmpdir, lock_backend='redis', lock_timeout=2,
        redis={'host': '127.0.0.1', 'port': 1}))
    code, out, err = cli(registry.storage, bad, 'gc')
    assert code in (1, 2), (out, err)
    assert 'another gc is running' not in out + err
    assert 'unreachable' in out + err or 'cannot be reached' in out + err


def test_the_audit_says_what_happened_in_words(registry, client):
    old = client.push('lib/b', 'latest', ['why-1'])
    # (the first write's work over: else its pending marker may be the
    # last to leave why-1, and the reason is that write's end)
    registry.settle()
    client.push('lib/b', 'latest', ['why-2'])            # a retag
    client.push('lib/c', 'v', ['why-3'])
    registry.settle()               # (the tag write's work is over)
    client.delete_repository('lib/c')
    registry.settle()
    with open(registry.path(layout.AUDIT, 'deletions.log')) as f:
        reasons = [json.loads(line)['reason'] for line in f]
    assert any(r.startswith('tag lib/b:latest moved to image ')
               for r in reasons), reasons
    assert 'its repository lib/c was deleted (tag v)' in reasons, reasons
    assert not any('tag lib/c:v was deleted' == r for r in reasons)
    assert old


def test_the_first_gc_frees_a_backlog_written_days_ago(make_registry):
    """Item 2: orphans whose files were written days ago go at the first
    gc after rebuild, with an hour's grace; the dry run before it reports
    exactly that; an orphan written just now is kept, and the output says
    when it becomes eligible."""
    reg, client, orphans, live = with_orphans(make_registry)
    days_ago = time.time() - 3 * 86400
    for image in os.listdir(reg.path('images')):
        folder = reg.path('images', image)
        for name in os.listdir(folder):
            os.utime(os.path.join(folder, name), (days_ago, days_ago))
    fresh = client.push_chain(['fd-fresh'])[-1]      # no tag: an orphan
    code, out, err = cli(reg.storage, reg.config, 'gc', '--dry-run',
                         '--grace', '3600')
    assert code == 0, (out, err)
    assert 'would delete %d image(s)' % len(orphans) in out, out
    assert 'kept %s: last written 0s ago, eligible in 60m' % fresh in out \
        or 'kept %s: last written 1s ago, eligible in 60m' % fresh in out, out
    code, doc, out, err = run(reg, '--json', 'gc', '--dry-run', '--grace',
                              '3600')
    assert set(d['image'] for d in doc['deleted']) == orphans
    assert [y['image'] for y in doc['young']] == [fresh]
    code, doc, out, err = run(reg, '--json', 'gc', '--grace', '3600')
    assert code == 0, (out, err)
    assert set(d['image'] for d in doc['deleted']) == orphans
    assert all('last written 3d ago' in d['reason'] for d in doc['deleted'])
    assert images_on_disk(reg) == live | {fresh}
