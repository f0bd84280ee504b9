"""Who wrote a record, and whether that process still lives.

An intent, a deletion's tombstone and a child registration are work in
flight: they may be finished or undone by somebody else only once their
writer can no longer act on them.  Deciding that by the age of the
record, on each host's own clock, took live work for abandoned when a
host's clock ran ahead or a worker stalled.  So each such record names its
owner - a host and a process on it - and:

* on the owner's own host, the owner is alive while a process with its pid
  and its start time exists (a stopped process is alive: it will resume);
* on another host nothing can be seen of it, so the record's age on the
  storage's own clock (one clock for every host, :func:`.records.now`)
  decides, with ``intent_timeout``.

A host is its boot (``/proc/sys/kernel/random/boot_id``) and its pid
namespace: two containers that share a host name but not a pid namespace
are two hosts, since neither can see the other's processes.
"""

from __future__ import absolute_import, unicode_literals

import os
import socket

_me = {}


def _read(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace').strip()
    except (IOError, OSError):
        return ''


def host():
    """This host's identity: name, boot and pid namespace."""
    if 'host' not in _me:
        try:
            ns = os.readlink('/proc/self/ns/pid')
        except OSError:
            ns = ''
        _me['host'] = '%s/%s/%s' % (socket.gethostname(),
                                    _read('/proc/sys/kernel/random/boot_id'),
                                    ns)
    return _me['host']


def start_time(pid):
    """The process's start time in clock ticks since boot, as a string
    ('' when there is no such process, or no /proc to ask)."""
    stat = _read('/proc/%d/stat' % pid)
    if not stat:
        return ''
    # the command name (field 2) may hold spaces: count from its end
    fields = stat.rsplit(')', 1)[-1].split()
    return fields[19] if len(fields) > 19 else ''


def me():
    """The owner fields of a record this process writes."""
    pid = os.getpid()
    if _me.get('pid') != pid:           # a forked worker is another owner
        _me.update(pid=pid, start=start_time(pid))
    return {'host': host(), 'pid': pid, 'start': _me['start']}


#: The work in flight in this process (intent ids, deleters' tokens): a
#: record this process wrote whose work is no longer here - it failed,
#: and was left for recovery - is abandoned although its owner lives.
_working = set()


def begin(token):
    """This process now works on the record named ``token``."""
    _working.add(token)


def end(token):
    """... and no longer (done, or failed and left for recovery)."""
    _working.discard(token)


def alive(doc, token=None):
    """Is the work a record names (its owner ``doc``, its ``token``)
    still in the hands of a live process?  True or False where this
    process can tell - another process of this host, or its own work
    named by ``token`` - and None where it cannot (another host, a record
    of an earlier version, which names no owner, or its own work that
    names no token)."""
    try:
        if doc.get('host') != host():
            return None
        pid, start = int(doc['pid']), doc.get('start')
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if not start:
        return None
    if pid == os.getpid() and start == me()['start']:
        return None if token is None else token in _working
    return start_time(pid) == start
