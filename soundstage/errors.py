"""Exception types shared by the whole engine.

``SoundstageError`` and its subclasses mean "the user can fix this": the
command line prints ``error: <message>`` on one line and exits with status 2,
Blender shows the message in its status bar. Anything else is a bug and keeps
its traceback.
"""


class SoundstageError(Exception):
    """A problem with the user's input; ``str(err)`` is one line naming what and where.

    Messages quote user-given names (objects, fields, files) as they are; a line
    break inside one is shown escaped (``\\n``) so the message stays one line.
    """

    def __str__(self) -> str:
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class JobError(SoundstageError):
    """The job document is invalid (a field, an object or a value)."""


class AudioError(SoundstageError):
    """An audio file is missing, unreadable, empty or holds unusable samples."""


class HRTFError(SoundstageError):
    """An HRTF file is missing, unreadable or of an unsupported convention."""


class GeometryError(SoundstageError):
    """Room or object geometry cannot be used (open, degenerate, non-finite)."""


class Cancelled(Exception):
    """Raised inside long work when the caller asked to stop; nothing was written."""
