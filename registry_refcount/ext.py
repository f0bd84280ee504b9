"""The ``docker_registry.extensions`` entry point.

The registry imports this module while it starts (before its app and
routes); importing it boots the wiring.  Nothing else imports it.
"""

from __future__ import absolute_import

from . import wiring

wiring.boot()
