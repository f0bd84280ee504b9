"""Run as a script, under gevent as the registry's workers run: the
extension's storage calls on the registry's S3 driver from many
greenlets at once, the gap's scan of every image among them.  Prints
each greenlet's exception and exits 1 if there was one.

boto's connection pool is shared by the whole worker and guarded by a
lock that gevent turns into a greenlet lock: a storage call made from a
native thread (the hub's thread pool) meets that lock, or a connection
made on another hub, and fails (``LoopExit``), and so can the request
that takes that connection next."""

from gevent import monkey
monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from registry_refcount import gap, layout, records  # noqa: E402
from tests.services import s3_store  # noqa: E402


def main():
    store = s3_store(json.loads(sys.argv[1]))
    thread = monkey.get_original('thread', 'get_ident')
    if records.scan(store, thread) != thread():
        print('a scan of S3 left the hub\'s thread')
        sys.exit(1)
    ids = ['%064x' % n for n in range(1, 61)]
    for image in ids:
        store.put_content(layout.image_file(image, 'json'), b'{}')
    errors = []

    def reads():
        for _ in range(15):
            for image in ids[:10]:
                store.get_content(layout.image_file(image, 'json'))

    def scans():
        for _ in range(3):
            gap.unchecked(store, None)

    def guarded(fn):
        try:
            fn()
        except BaseException as e:
            errors.append('%s: %r' % (fn.__name__, e))
    gevent.joinall([gevent.spawn(guarded, fn)
                    for fn in [reads] * 6 + [scans] * 3], timeout=120)
    for error in errors:
        print(error)
    print('%d error(s)' % len(errors))
    sys.exit(1 if errors else 0)


if __name__ == '__main__':
    main()
