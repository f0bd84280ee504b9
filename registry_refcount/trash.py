"""The trash: images that lost their last referrer online, kept whole for
the undo window.

An image whose last marker goes online (a tag deleted or moved, its
repository deleted, its last child torn down) is not torn down while
``undo_window`` is set: it gets a record here, ``trash/<id>`` = ``{due,
at, reason, by}``, ``due`` on the storage's clock (the one every host
agrees on), and stays as it is.  Nothing else changes: it has no marker,
so any new reference (a tag written again, a child pushed onto it,
``restore``) is the ordinary kind, and the purge, when ``due`` has come,
goes through the ordinary tear-down, which cancels for a marker.  So the
record only ever *delays* a deletion: a stale one (the image was
rescued) is dropped by the purge; a lost one leaves the image to gc's
sweep, as any unreferenced image.  A record that cannot be read keeps
its image (reported, never acted on).
"""

from __future__ import absolute_import, unicode_literals

from . import audit
from . import layout
from . import records


def put(ctx, image_id, reason):
    """Put an image that nothing needs into the trash (the caller holds
    its lock and found no marker)."""
    now = records.now(ctx.store)
    records.write(ctx.store, layout.trash_entry(image_id), {
        'image': image_id, 'due': now + ctx.undo_window, 'at': now,
        'reason': reason, 'by': ctx.by})
    audit.event('trashed', image_id, '%s; purged after %ds unless a '
                'reference comes back' % (reason, ctx.undo_window),
                by=ctx.by)


def read(store, image_id):
    """Its record (None: not in the trash); :class:`.records.Unreadable`
    for one that cannot be read."""
    return records.read(store, layout.trash_entry(image_id))


def waiting(store, image_id, now=None):
    """Is the image in the trash and its time not come yet?  (Else it may
    be torn down.)  An unreadable record keeps it."""
    try:
        doc = read(store, image_id)
    except records.Unreadable:
        return True
    if doc is None:
        return False
    if now is None:
        now = records.now(store)
    return not is_due(doc, now)


def is_due(doc, now):
    """Has the record's time come?  (Not for a ``due`` that is no
    number.)"""
    try:
        return float(doc.get('due')) <= now
    except (TypeError, ValueError):
        return False


def forget(store, image_id):
    records.remove(store, layout.trash_entry(image_id))


def entries(store):
    """The ids in the trash (valid ones; anything else is reported by
    the caller as an error and left)."""
    return [name for name in records.listing(store, layout.TRASH)
            if not layout.is_scratch(name)]
