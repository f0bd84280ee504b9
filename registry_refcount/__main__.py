"""``python -m registry_refcount``: the same as ``registry-refcount``."""

import sys

from .cli import main

sys.exit(main())
