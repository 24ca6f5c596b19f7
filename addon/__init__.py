"""Blender UI of Soundstage: properties, preferences, operators, panels.

Each module exposes ``CLASSES`` with ``register()``/``unregister()``; this
package registers them in dependency order and unregisters in reverse, so
register -> unregister -> register is clean. Operators stay thin and call
``bridge``.
"""

from . import fields, footage, impacts, operators, panels, prefs, properties, splats

# splats, impacts and fields after panels: their sidebar panels are children of theirs
# (fields also appends to the camera and listener panels).
MODULES = (properties, prefs, operators, panels, splats, impacts, footage, fields)


def register():
    for m in MODULES:
        m.register()


def unregister():
    # Stop a bake that is still running so no worker outlives the add-on.
    session = operators.active_session()
    if session is not None:
        session.cancel()
        operators._active["session"] = None
    for m in reversed(MODULES):
        m.unregister()
