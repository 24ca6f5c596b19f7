"""Soundstage Blender extension: composition root.

The repository root is the extension root (see ``blender_manifest.toml``).
All the add-on code lives in ``addon/`` (UI) and ``bridge/`` (scene <-> engine);
this file only delegates. The engine itself is the ``soundstage/`` package,
which never imports bpy and runs in its own environment (docs/blender.md).
"""


def register():
    from . import addon

    addon.register()


def unregister():
    from . import addon

    addon.unregister()
