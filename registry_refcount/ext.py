"""The ``docker_registry.extensions`` entry point.

The registry imports this module while it starts (before its app and
routes); importing it boots the wiring.  Nothing else imports it.  A bad
setting stops the registry with one line naming the key
(:func:`.wiring.refuse_to_start`), not a traceback per worker.
"""

from __future__ import absolute_import

from . import settings
from . import wiring

try:
    wiring.boot()
except settings.ConfigError as e:
    wiring.refuse_to_start(e)
