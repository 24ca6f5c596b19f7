"""Learned acoustic fields in the UI: per-listener choice, and training a field from a capture.

* The camera's Soundstage Listener panel and the sidebar's Listeners list get
  an "Acoustics" sub-panel: Simulator or Learned Field, and the model file
  (``Object.soundstage.acoustics`` / ``field_model``, in ``addon.properties``
  so that headless bakes honour them). Sub-panels rather than draw functions
  appended to ``addon.panels``' classes, which would replace their ``draw``.
* ``soundstage.train_field`` trains a field from a recording walk: modal from
  the UI (a thread or worker process trains, a timer shows progress, Esc
  cancels, Resume continues from the checkpoint), blocking from scripts.
* The sidebar's "Learned Field" panel holds the training inputs
  (``Scene.soundstage_field``).

Operators stay thin: ``bridge.fields`` does the work.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..bridge import fields as bfields
from ..bridge.errors import BakeCancelled, BridgeError
from . import panels, prefs
from .modal import WorkerModal, stop_session

PRESET_ITEMS = [
    ("SMALL", "Small", "Trains in minutes on a laptop CPU (64 wide, 1000 steps)", 0),
    ("PAPER", "Paper", "AV-NeRF's size (128 wide, 20000 steps); wants a GPU", 1),
]
_PRESET = {"SMALL": "small", "PAPER": "paper"}

#: The training in progress (one at a time per Blender session).
_active: dict = {"session": None}


def active_training():
    return _active["session"]


# --------------------------------------------------------------------------- properties
def _is_speaker(_self, obj):
    return obj.type == "SPEAKER"


def _is_camera(_self, obj):
    return obj.type == "CAMERA"


class SoundstageFieldSettings(bpy.types.PropertyGroup):
    """The inputs of "Train Field" kept with the scene (the sidebar's Learned Field panel)."""

    recording: StringProperty(name="Recording", subtype="FILE_PATH", default="",
                              description="The binaural recording of the walk (two channels: left, right)")
    recording_sound: PointerProperty(name="Recording Sound", type=bpy.types.Sound,
                                     description="Or a sound in this file holding the binaural recording")
    source: PointerProperty(name="Source", type=bpy.types.Object, poll=_is_speaker,
                            description="The speaker standing where the loudspeaker stood, playing what it played "
                                        "(empty: the scene's only speaker)")
    camera: PointerProperty(name="Capture Camera", type=bpy.types.Object, poll=_is_camera,
                            description="The camera animated along the walk (empty: the scene camera)")
    offset: FloatProperty(name="Recording Offset", default=0.0, unit="TIME_ABSOLUTE",
                          description="Time in the recording at the first frame, seconds")
    use_room: BoolProperty(name="Room from Acoustic Meshes", default=True,
                           description="Give the field the room's shape (scene features) from the acoustic meshes")
    model: StringProperty(name="Model File", subtype="FILE_PATH", default="",
                          description="Where to write the field (.pt); "
                                      "empty: <output folder>/<scene>_<camera>_field.pt")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="SMALL")
    steps: IntProperty(name="Steps", min=0, default=0,
                       description="Training steps (0: the preset's, 1000 for Small)")
    assign_to: PointerProperty(name="Use for Listener", type=bpy.types.Object, poll=_is_camera,
                               description="After training, set this listener camera to bake with the new field")


class SoundstageTrainState(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    fraction: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    last_result: StringProperty(default="")


# --------------------------------------------------------------------------- operators
class SOUNDSTAGE_OT_train_field(WorkerModal, bpy.types.Operator):
    """Train a learned acoustic field from a recording walk: the capture camera's animation, \
the source speaker and the binaural recording"""

    bl_idname = "soundstage.train_field"
    bl_label = "Train Field"
    bl_options = {"REGISTER"}

    recording: StringProperty(name="Recording", subtype="FILE_PATH", default="",
                              description="Binaural recording file (empty: use Recording Sound)")
    recording_sound: StringProperty(name="Recording Sound", default="",
                                    description="Name of a sound datablock holding the recording")
    source: StringProperty(name="Source Speaker", default="", description="Empty: the scene's only speaker")
    camera: StringProperty(name="Capture Camera", default="", description="Empty: the scene camera")
    offset: FloatProperty(name="Recording Offset", default=0.0, description="Recording time at the first frame, s")
    use_room: BoolProperty(name="Room from Acoustic Meshes", default=True)
    model: StringProperty(name="Model File", subtype="FILE_PATH", default="",
                          description="Empty: <output folder>/<scene>_<camera>_field.pt")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="SMALL")
    steps: IntProperty(name="Steps", min=0, default=0, description="0: the preset's")
    seed: IntProperty(name="Seed", min=0, default=0)
    resume: BoolProperty(name="Resume", default=False,
                         description="Continue from the training checkpoint beside the model file")
    assign_to: StringProperty(name="Use for Listener", default="",
                              description="After training, set this camera to bake with the new field")

    # The modal half (invoke, start_modal, modal, _end) is WorkerModal's.
    state_attr = "soundstage_field_train"
    status_label = "Soundstage training"
    registry = _active
    timer_step = 0.2
    stop_timeout = 30.0

    @classmethod
    def poll(cls, context):
        return context.scene is not None and active_training() is None

    def _session(self, context) -> bfields.TrainSession:
        mode, python = prefs.engine_settings(context)
        return bfields.TrainSession(
            context.scene, mode=mode, python=python, camera=self.camera, source=self.source,
            recording=self.recording, recording_sound=self.recording_sound, offset=self.offset,
            use_room=self.use_room, model=self.model, preset=_PRESET[self.preset], steps=self.steps,
            seed=self.seed, resume=self.resume)

    def _succeeded(self, context, session) -> None:
        for w in session.warnings:
            self.report({"WARNING"}, w)
        if self.assign_to:
            cam = context.scene.objects.get(self.assign_to)
            if cam is not None and cam.type == "CAMERA":
                cam.soundstage.acoustics = "FIELD"
                cam.soundstage.field_model = str(session.model)
        self.report({"INFO"}, session.summary())
        context.window_manager.soundstage_field_train.last_result = session.summary()

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
        self._succeeded(context, session)
        return {"FINISHED"}


class SOUNDSTAGE_OT_cancel_training(bpy.types.Operator):
    """Stop training; the last checkpoint stays, so Resume can continue"""

    bl_idname = "soundstage.cancel_training"
    bl_label = "Cancel Training"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context):
        return active_training() is not None

    def execute(self, context):
        active_training().cancel()
        context.window_manager.soundstage_field_train.message = "cancelling..."
        return {"FINISHED"}


def stop_training(timeout: float = 30.0) -> None:
    """Cancel a running training and wait for it (unregister): no worker outlives the add-on."""
    stop_session(_active, timeout)


# --------------------------------------------------------------------------- drawing
def draw_camera_acoustics(self, context):
    """The camera's acoustics: simulator or field, the model file and whether it can bake."""
    obj = context.object
    if obj is None or obj.type != "CAMERA":
        return
    layout = self.layout
    layout.prop(obj.soundstage, "acoustics", expand=True)
    if obj.soundstage.acoustics == "FIELD":
        layout.prop(obj.soundstage, "field_model")
        _model_status(layout, obj)


def _model_status(layout, cam) -> None:
    setting = cam.soundstage.field_model
    if not setting:
        layout.label(text="Pick a model file (Soundstage > Learned Field trains one)", icon="ERROR")
    elif not Path(bpy.path.abspath(setting)).is_file():
        layout.label(text="Model file not found", icon="ERROR")
    elif bpy.context.scene.soundstage.format != "BINAURAL":
        layout.label(text="A field bakes binaural only: set Output > Format", icon="ERROR")
    else:
        layout.label(text="Bakes with the learned field (binaural)", icon="CHECKMARK")


def draw_listener_acoustics(self, context):
    """Each listener's acoustics, in the sidebar's Listeners list."""
    listeners = panels._listeners_or_none(context.scene)
    if not listeners:
        self.layout.label(text="No listener", icon="INFO")
        return
    col = self.layout.column(align=True)
    for cam in listeners:
        row = col.row(align=True)
        row.label(text=cam.name, icon="OUTLINER_OB_CAMERA")
        row.prop(cam.soundstage, "acoustics", text="")
        if cam.soundstage.acoustics == "FIELD":
            col.prop(cam.soundstage, "field_model", text="")


def _train_op(layout, settings, text: str, icon: str, resume: bool):
    op = layout.operator("soundstage.train_field", text=text, icon=icon)
    op.recording = settings.recording
    op.recording_sound = settings.recording_sound.name if settings.recording_sound else ""
    op.source = settings.source.name if settings.source else ""
    op.camera = settings.camera.name if settings.camera else ""
    op.offset, op.use_room, op.model = settings.offset, settings.use_room, settings.model
    op.preset, op.steps, op.resume = settings.preset, settings.steps, resume
    op.assign_to = settings.assign_to.name if settings.assign_to else ""
    return op


class DATA_PT_soundstage_camera_acoustics(bpy.types.Panel):
    bl_label = "Acoustics"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "data"
    bl_parent_id = "DATA_PT_soundstage_camera"

    @classmethod
    def poll(cls, context):
        return context.object is not None and context.object.type == "CAMERA"

    draw = draw_camera_acoustics


class VIEW3D_PT_soundstage_listener_acoustics(panels.SoundstageSidebar, bpy.types.Panel):
    bl_label = "Acoustics"
    bl_parent_id = "VIEW3D_PT_soundstage_listeners"

    draw = draw_listener_acoustics


class VIEW3D_PT_soundstage_field(panels.SoundstageSidebar, bpy.types.Panel):
    bl_label = "Learned Field"
    bl_parent_id = "VIEW3D_PT_soundstage"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.soundstage_field
        state = context.window_manager.soundstage_field_train
        col = layout.column()
        col.prop(s, "recording")
        col.prop(s, "recording_sound")
        col.prop(s, "source")
        col.prop(s, "camera")
        col.prop(s, "offset")
        col.prop(s, "use_room")
        col.prop(s, "model")
        row = col.row(align=True)
        row.prop(s, "preset", text="")
        row.prop(s, "steps")
        col.prop(s, "assign_to")
        session = active_training()
        if session is not None:
            layout.label(text=session.message or "training...", icon="TIME")
            if hasattr(layout, "progress"):  # Blender 4.0+
                layout.progress(factor=session.fraction, type="BAR", text=f"{session.fraction * 100:.0f} %")
            layout.operator("soundstage.cancel_training", icon="CANCEL", text="Cancel (Esc)")
        else:
            row = layout.row(align=True)
            row.scale_y = 1.3
            _train_op(row, s, "Train", "PLAY", False)
            sub = row.row(align=True)
            sub.enabled = _checkpoint_exists(context, s)
            _train_op(sub, s, "Resume", "FORWARD", True)
        if state.last_result:
            layout.label(text=state.last_result, icon="INFO")


def _checkpoint_exists(context, s) -> bool:
    try:
        if s.model:
            model = Path(bpy.path.abspath(s.model))
        else:
            cam = s.camera or context.scene.camera
            if cam is None:
                return False
            model = bfields.default_model_path(context.scene, cam.name)
        return bfields.checkpoint_path(model).is_file()
    except (BridgeError, OSError):
        return False


CLASSES = (SoundstageFieldSettings, SoundstageTrainState, SOUNDSTAGE_OT_train_field,
           SOUNDSTAGE_OT_cancel_training, DATA_PT_soundstage_camera_acoustics,
           VIEW3D_PT_soundstage_listener_acoustics, VIEW3D_PT_soundstage_field)

_POINTERS = (
    (bpy.types.Scene, "soundstage_field", SoundstageFieldSettings),
    (bpy.types.WindowManager, "soundstage_field_train", SoundstageTrainState),
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for owner, attr, cls in _POINTERS:
        setattr(owner, attr, PointerProperty(type=cls))


def unregister():
    stop_training()
    for owner, attr, _cls in reversed(_POINTERS):
        if hasattr(owner, attr):
            delattr(owner, attr)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
