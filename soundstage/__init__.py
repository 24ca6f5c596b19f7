"""Soundstage engine: physically based spatial audio for 3D scenes.

This package never imports ``bpy`` or ``mathutils``; Blender talks to it through
the job format (see ``soundstage.job``) and the worker protocol
(``soundstage.worker``).
"""

__version__ = "0.1.0"

from soundstage.errors import Cancelled, SoundstageError  # noqa: F401
