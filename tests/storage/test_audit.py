from __future__ import absolute_import, unicode_literals

import json
import os

from registry_refcount import audit


def test_audit_lines_and_rotation(tmpdir, monkeypatch):
    path = str(tmpdir.join('a', 'deletions.log'))
    monkeypatch.setattr(audit, '_file', {})
    audit.open_file(path, max_bytes=400, backups=2)
    audit.open_file(path, max_bytes=400, backups=2)      # a second worker
    for n in range(12):
        audit.deleted('%016x' % n, 'tag ns/a:v was deleted', n * 10,
                      dry_run=(n % 2 == 1), by='gc')
    lines = []
    for name in (path + '.2', path + '.1', path):
        if os.path.exists(name):
            with open(name) as f:
                lines += [json.loads(l) for l in f]
    assert not os.path.exists(path + '.3')
    assert [l['image'] for l in lines] == ['%016x' % n for n in
                                            range(12 - len(lines), 12)]
    assert lines[-1]['bytes'] == 110 and lines[-1]['dry_run'] is True
    assert set(lines[0]) == {'time', 'image', 'reason', 'bytes', 'dry_run',
                             'by'}
