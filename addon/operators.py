"""Operators under ``bpy.ops.soundstage``. Thin: gather input, call the bridge, report.

``soundstage.bake`` is modal when invoked from the UI: the engine runs in a
thread or worker process, a timer drains its progress into the status bar and
the window manager's progress indicator, Esc cancels, and results are applied
on the main thread. Called from a script (``execute``), it bakes blocking.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..bridge.errors import BakeCancelled, BridgeError
from ..bridge.pipeline import BakeSession
from . import prefs
from .modal import WorkerModal
from .properties import FORMAT_ITEMS

FORMAT_CHOICES = [("SCENE", "Scene Setting", "Use the format set in Soundstage > Output", 0)] + [
    (i, n, d, k + 1) for (i, n, d, k) in FORMAT_ITEMS]
_ENUM_TO_FORMAT = {"BINAURAL": "binaural", "STEREO": "stereo", "AMBIX": "ambix", "SURROUND_51": "5.1"}

#: The bake in progress (one at a time per Blender session).
_active: dict = {"session": None}


def active_session():
    return _active["session"]


def _summary(session: BakeSession) -> str:
    names = ", ".join(t.final.name for t in session.tracks)
    return f"Baked {names} into {session.out_dir}"


def _report_warnings(op, session: BakeSession) -> None:
    for w in session.warnings:
        op.report({"WARNING"}, w)


class SOUNDSTAGE_OT_bake(WorkerModal, bpy.types.Operator):
    """Bake the sound heard by each listener camera and put it on the Video Sequencer"""

    bl_idname = "soundstage.bake"
    bl_label = "Bake Sound"
    bl_options = {"REGISTER", "UNDO"}

    listener: StringProperty(name="Listener", default="",
                             description="Bake only this camera (empty: every listener)")
    format: EnumProperty(name="Format", items=FORMAT_CHOICES, default="SCENE")

    # The modal half (invoke, start_modal, modal, _end) is WorkerModal's.
    state_attr = "soundstage_bake"
    registry = _active
    redraw_areas = ("VIEW_3D", "SEQUENCE_EDITOR", "PROPERTIES")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and active_session() is None

    def _session(self, context) -> BakeSession:
        mode, python = prefs.engine_settings(context)
        fmt = None if self.format == "SCENE" else _ENUM_TO_FORMAT[self.format]
        return BakeSession(context.scene, fmt=fmt, listener=self.listener or None, mode=mode, python=python)

    # -------------------------------------------------------------- blocking (scripts)
    def execute(self, context):
        session = self._session(context)
        _active["session"] = session
        try:
            session.run()
        except BakeCancelled as e:
            self.report({"WARNING"}, str(e))
            return {"CANCELLED"}
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        finally:
            _active["session"] = None
        _report_warnings(self, session)
        self.report({"INFO"}, _summary(session))
        return {"FINISHED"}

    def _succeeded(self, context, session) -> None:
        _report_warnings(self, session)
        self.report({"INFO"}, _summary(session))
        context.window_manager.soundstage_bake.last_result = _summary(session)


class SOUNDSTAGE_OT_cancel_bake(bpy.types.Operator):
    """Stop the running bake; the previous tracks stay as they were"""

    bl_idname = "soundstage.cancel_bake"
    bl_label = "Cancel Bake"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return active_session() is not None

    def execute(self, context):
        active_session().cancel()
        context.window_manager.soundstage_bake.message = "cancelling..."
        return {"FINISHED"}


class SOUNDSTAGE_OT_add_source(bpy.types.Operator):
    """Add a Speaker at the 3D cursor playing a sound file"""

    bl_idname = "soundstage.add_source"
    bl_label = "Add Sound Source"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Sound File", subtype="FILE_PATH", default="")
    filter_sound: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def invoke(self, context, event):
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        sound = None
        if self.filepath:
            path = Path(bpy.path.abspath(self.filepath))
            if not path.is_file():
                self.report({"ERROR"}, f"sound file '{path}' not found")
                return {"CANCELLED"}
            try:
                sound = bpy.data.sounds.load(str(path), check_existing=True)
            except RuntimeError as e:
                self.report({"ERROR"}, f"cannot load sound '{path}': {e}")
                return {"CANCELLED"}
        # The stock operator also creates the NLA sound strip that sets when the sound starts.
        bpy.ops.object.speaker_add(location=context.scene.cursor.location)
        obj = context.active_object
        if sound is not None:
            obj.data.sound = sound
            obj.name = obj.data.name = Path(sound.filepath).stem or "Speaker"
            self.report({"INFO"}, f"Added speaker '{obj.name}' playing {sound.name}")
        else:
            self.report({"WARNING"}, f"Added speaker '{obj.name}' without a sound: pick one in its properties")
        return {"FINISHED"}


class SOUNDSTAGE_OT_add_listener(bpy.types.Operator):
    """Add a listener camera at the 3D cursor, looking along +Y"""

    bl_idname = "soundstage.add_listener"
    bl_label = "Add Listener"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Name", default="Listener")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def execute(self, context):
        scene = context.scene
        cams = [o for o in scene.objects if o.type == "CAMERA"]
        # The scene camera is the implicit listener; once cameras are ticked
        # explicitly, keep it a listener too so adding one never drops another.
        if scene.camera is not None and not any(o.soundstage.listener for o in cams):
            scene.camera.soundstage.listener = True
        data = bpy.data.cameras.new(self.name)
        obj = bpy.data.objects.new(self.name, data)
        context.collection.objects.link(obj)
        obj.location = scene.cursor.location
        obj.rotation_euler = (math.pi / 2, 0.0, 0.0)  # camera -Z axis turned to look along +Y, ears level
        obj.soundstage.listener = True
        if scene.camera is None:
            scene.camera = obj
        for o in context.selected_objects:
            o.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        self.report({"INFO"}, f"Added listener camera '{obj.name}'")
        return {"FINISHED"}


class SOUNDSTAGE_OT_mark_acoustic(bpy.types.Operator):
    """Mark the selected meshes as room geometry (or unmark them)"""

    bl_idname = "soundstage.mark_acoustic"
    bl_label = "Mark Acoustic"
    bl_options = {"REGISTER", "UNDO"}

    acoustic: BoolProperty(name="Acoustic", default=True)

    @classmethod
    def poll(cls, context):
        return any(o.type == "MESH" for o in context.selected_objects)

    def execute(self, context):
        n = 0
        for o in context.selected_objects:
            if o.type == "MESH":
                o.soundstage.acoustic = self.acoustic
                n += 1
        self.report({"INFO"}, f"{n} mesh(es) {'marked' if self.acoustic else 'unmarked'} as acoustic")
        return {"FINISHED"}


class SOUNDSTAGE_OT_play_preview(bpy.types.Operator):
    """Play the scene from its first frame with the baked track (again to stop)"""

    bl_idname = "soundstage.play_preview"
    bl_label = "Play Preview"

    @classmethod
    def poll(cls, context):
        return context.screen is not None

    def execute(self, context):
        if context.screen.is_animation_playing:
            bpy.ops.screen.animation_cancel(restore_frame=False)
            return {"FINISHED"}
        context.scene.frame_set(context.scene.frame_start)
        bpy.ops.screen.animation_play()
        return {"FINISHED"}


CLASSES = (SOUNDSTAGE_OT_bake, SOUNDSTAGE_OT_cancel_bake, SOUNDSTAGE_OT_add_source, SOUNDSTAGE_OT_add_listener,
           SOUNDSTAGE_OT_mark_acoustic, SOUNDSTAGE_OT_play_preview)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
