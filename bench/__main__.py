"""The one driver of the benchmarks (``make bench``): each part in a fresh
process, then the report.

    python -m bench [--parts cost,online,counted,gc,undo,peers,s3]
                    [--no-report]

QUICK=1 in the environment: fewer sizes, repetitions and rounds (each part
reads it), and no counted part.  Every part's results are removed first,
so that a report never mixes two runs.  Exit status 1 if a part failed.
"""

from __future__ import absolute_import, print_function

import argparse
import os
import subprocess
import sys
import time

from . import common
from . import report

PARTS = (('cost', 'storage_cost'), ('online', 'online'),
         ('counted', 'instructions'), ('gc', 'gc_bench'),
         ('undo', 'undo_cost'), ('peers', 'peers'),
         ('s3', 'object_storage'))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--parts', default='cost,online,gc,undo,peers,s3' if
                        common.quick() else 'cost,online,counted,gc,undo,'
                        'peers,s3')
    parser.add_argument('--no-report', action='store_true')
    args = parser.parse_args(argv)
    os.environ['BENCH_COMMIT'] = common.commit()
    for name in ('storage_cost', 'online', 'instructions', 'gc', 'undo_cost',
                 'peers', 'object_storage', 'run'):
        if os.path.exists(os.path.join(common.RESULTS, name + '.json')):
            os.remove(os.path.join(common.RESULTS, name + '.json'))
    started, status = time.time(), 0
    for key, module in PARTS:
        if key in args.parts.split(','):
            print('== bench %s: python -m bench.%s' % (key, module))
            sys.stdout.flush()
            status |= bool(subprocess.call(
                [sys.executable, '-m', 'bench.' + module], cwd=common.ROOT))
    common.save('run', {'command': os.environ.get('BENCH_COMMAND', (
        'QUICK=1 ' if common.quick() else '') + 'make bench'),
        'seconds': int(time.time() - started), 'status': status})
    if not args.no_report:
        report.main()
    return status


if __name__ == '__main__':
    sys.exit(main())
