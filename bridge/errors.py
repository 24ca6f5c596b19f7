"""The bridge's one exception type.

The engine's ``soundstage.errors`` cannot be imported inside Blender's own
Python (the engine lives in another environment), so the bridge has its own
"the user can fix this" error. Its message is one line that names the object,
file or setting and says what to do; operators show it with
``self.report({'ERROR'}, ...)`` and ``headless/render.py`` prints it and exits 2.
"""


class BridgeError(Exception):
    """A problem with the user's scene or settings; ``str(err)`` is one line."""


class BakeCancelled(Exception):
    """The user cancelled the bake; nothing was written or replaced."""
