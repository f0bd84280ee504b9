"""A counting TCP relay on 127.0.0.1, between the S3 driver and the S3
server: bytes on the wire in each direction and HTTP requests by method.

The driver is pointed at the relay's port instead of the server's; the
relay forwards every byte unchanged.  Requests are counted by following
the client's byte stream (request head, then ``Content-Length`` bytes of
body), which is all boto 2 sends.
"""

from __future__ import absolute_import, unicode_literals

import collections
import re
import threading

from tests.services import TcpProxy

_HEAD_END = b'\r\n\r\n'
_LENGTH = re.compile(br'\r\ncontent-length:\s*(\d+)', re.I)


class Relay(TcpProxy):
    """The tests' TCP proxy, counting what it relays."""

    def __init__(self, target_port):
        self._lock = threading.Lock()
        self.reset()
        TcpProxy.__init__(self, target_port)

    def reset(self):
        with self._lock:
            self.sent = 0          # client -> server
            self.received = 0      # server -> client
            self.requests = collections.Counter()

    def snapshot(self):
        with self._lock:
            return {'wire_sent': self.sent, 'wire_received': self.received,
                    'wire_bytes': self.sent + self.received,
                    'requests': sum(self.requests.values()),
                    'by_method': dict(self.requests)}

    def _watcher(self, up):
        parser = _RequestParser(self._count_request) if up else None

        def watch(data):
            with self._lock:
                if up:
                    self.sent += len(data)
                else:
                    self.received += len(data)
            if parser is not None:
                parser.feed(data)
        return watch

    def _count_request(self, method):
        with self._lock:
            self.requests[method] += 1


class _RequestParser(object):
    """Splits a client's stream into HTTP/1.1 requests (head + body of
    ``Content-Length`` bytes); calls ``on_request(method)`` for each."""

    def __init__(self, on_request):
        self.on_request = on_request
        self.buf = b''
        self.body_left = 0

    def feed(self, data):
        self.buf += data
        while True:
            if self.body_left:
                take = min(self.body_left, len(self.buf))
                self.body_left -= take
                self.buf = self.buf[take:]
                if self.body_left:
                    return
            end = self.buf.find(_HEAD_END)
            if end < 0:
                return
            head = self.buf[:end]
            self.buf = self.buf[end + len(_HEAD_END):]
            method = head.split(b' ', 1)[0].decode('ascii', 'replace')
            self.on_request(method)
            m = _LENGTH.search(head)
            self.body_left = int(m.group(1)) if m else 0
