"""Add-on preferences: where the engine's Python environment is."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ..bridge import runner
from ..bridge.errors import BridgeError

#: The extension's package name (``bl_ext.<repo>.soundstage`` inside Blender).
ADDON_ID = __package__.rpartition(".")[0]


class SoundstagePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    engine_python: StringProperty(
        name="Engine Python", subtype="FILE_PATH", default="",
        description="Python of the environment with the Soundstage engine (the repository's .venv/bin/python "
                    "after `make demo`); found by itself when the add-on is installed from the repository")
    engine_mode: EnumProperty(
        name="Run Engine", default="AUTO",
        items=[("AUTO", "Automatic", "In this process when the engine imports here, else as a worker process", 0),
               ("WORKER", "Worker Process", "Always in the engine's environment as a separate process", 1),
               ("INPROCESS", "In Blender", "Inside Blender (only when Blender's Python has the engine)", 2)],
        description="Where the engine runs")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "engine_mode")
        layout.prop(self, "engine_python")
        box = layout.box()
        if runner.engine_importable():
            box.label(text="The engine imports in Blender's Python: it can run in-process", icon="CHECKMARK")
        try:
            py = runner.find_engine_python(self.engine_python)
            box.label(text=f"Worker environment: {py}", icon="CHECKMARK")
        except BridgeError as e:
            box.alert = True
            for i, part in enumerate(str(e).split(": ", 1)):
                box.label(text=part, icon="ERROR" if i == 0 else "BLANK1")


def get(context=None):
    """The add-on preferences, or None when not enabled as an add-on (e.g. tests, headless)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def engine_settings(context=None) -> tuple[str, str]:
    """``(mode, python)`` for ``bridge.runner.make_runner``."""
    p = get(context)
    if p is None:
        return "auto", ""
    return {"AUTO": "auto", "WORKER": "worker", "INPROCESS": "inprocess"}[p.engine_mode], p.engine_python


CLASSES = (SoundstagePreferences,)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
