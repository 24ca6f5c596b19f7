"""Impact sounds in Blender: click to add a hit (with an audible preview), impact materials,
locating a recorded hit with a heat map, and the sidebar's "Impacts" panel.

Operators are thin: they gather input and call ``bridge.impacts`` (which
documents the data: impact Empties, keyed hits, materials).

* ``soundstage.impact_click``: click on a mesh or on splats; an impact Empty is
  added there (arrow along the normal, keyed at the current frame, parented
  to the object) and its sound is synthesised and played (binaural from the
  listener camera). Scripts give the ray: ``impact_click(origin=..., direction=...)``.
* ``soundstage.preview_impact``: hear the active impact point again (after an edit).
* ``soundstage.locate_hit``: pick a recording of a hit; the scene's meshes are
  ranked and painted with a heat map (colour attribute ``soundstage_heat``).
* ``soundstage.select_impact``: make an impact point the active object (panel list).
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..bridge import impacts as bridge
from ..bridge import splats as splat_bridge
from ..bridge.errors import BridgeError
from . import prefs
from .modal import ClickInViewport

D = bridge.IMPACT_DEFAULTS
SD = bridge.SCENE_DEFAULTS

# Built once: Blender keeps references to these strings.
MATERIAL_ITEMS = [(bridge.AUTO, "Auto", "Impacts: the target object's impact material. Objects: guessed from the "
                                        "Blender material (name, metallic, roughness, transmission, base colour)", 0)]
MATERIAL_ITEMS += [(name, name.capitalize(), desc, i + 1) for i, (name, desc) in enumerate(bridge.MATERIAL_TABLE)]
_MATERIAL_INDEX = {item[0]: item[3] for item in MATERIAL_ITEMS}


def _get_material(self):
    # Stored by name (material_name), so a table that grows never changes what a file means.
    return _MATERIAL_INDEX.get(self.material_name, 0)


def _set_material(self, value):
    for ident, _label, _desc, number in MATERIAL_ITEMS:
        if number == value:
            self.material_name = ident
            return


def _get_frame(self):
    return bridge.hit_frames(self.id_data)[0]


def _set_frame(self, value):
    bridge.set_hit_frame(self.id_data, value)
    self.frame_value = int(value)


def _target_poll(self, obj):
    return obj.type == "MESH"


class SoundstageImpactSettings(bpy.types.PropertyGroup):
    """``Object.soundstage_impact``: an impact point (Empty), or a mesh's impact material."""

    is_impact: BoolProperty(name="Impact Point", default=D["is_impact"],
                            description="This Empty is a hit: a sound source at its place, at its keyed frames")
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_target_poll,
                            description="The object that is hit (its shape and material make the sound)")
    force: FloatProperty(name="Force", min=0.01, max=10000.0, soft_max=500.0, default=D["force"],
                         description="Peak contact force in newtons (20 N: a firm tap with a small steel ball)")
    frame: IntProperty(name="Frame", get=_get_frame, set=_set_frame,
                       description="Frame of the (first) hit: moves the hit's keys (drag them in the Timeline too)")
    frame_value: IntProperty(name="Frame (unkeyed)", default=D["frame_value"], options={"HIDDEN"},
                             description="The hit's frame when it has no keys")
    material_name: StringProperty(name="Impact Material Name", default=D["material_name"], options={"HIDDEN"})
    material: EnumProperty(name="Impact Material", items=MATERIAL_ITEMS, get=_get_material, set=_set_material,
                           description="What the object is made of, for impact sounds")
    seed: IntProperty(name="Seed", min=0, default=D["seed"],
                      description="Natural variation between hits (force, contact time, direction)")
    gain_db: FloatProperty(name="Gain", soft_min=-40.0, soft_max=40.0, default=D["gain_db"], unit="NONE",
                           description="Level change in dB (0: the physical level)")
    duration: FloatProperty(name="Duration", min=0.05, max=30.0, default=D["duration"], unit="TIME_ABSOLUTE",
                            description="Seconds of ring-out synthesised")
    patch_radius: FloatProperty(name="Patch Radius", min=0.005, max=10.0, default=D["patch_radius"], unit="LENGTH",
                                description="Splat targets: the gaussians within this distance of the hit make "
                                            "the struck object")
    notes: StringProperty(name="Notes", default=D["notes"],
                          description="What the engine changed or assumed in the last synthesis")


class SoundstageImpactSceneSettings(bpy.types.PropertyGroup):
    """``Scene.soundstage_impacts``: quality and preview settings, the last Locate result."""

    budget: IntProperty(name="Modal Cells", min=50, max=50000, default=SD["budget"],
                        description="Grid cells of the modal analysis (more: slower first hit, more accurate modes)")
    preview_spatial: BoolProperty(name="Binaural Preview", default=SD["preview_spatial"],
                                  description="Hear the click's preview from the listener camera (else mono at 1 m)")
    preview_play: BoolProperty(name="Play Preview", default=SD["preview_play"],
                               description="Play the preview after a click (it is written to a WAV either way)")
    locate_result: StringProperty(default=SD["locate_result"], options={"HIDDEN"})
    last_preview: StringProperty(default=SD["last_preview"], options={"HIDDEN"})


def _engine(context):
    return prefs.engine_settings(context)


def _interactive(context) -> bool:
    return context.window is not None and not bpy.app.background


def _select_only(context, obj) -> None:
    for o in context.selected_objects:
        o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


# --------------------------------------------------------------------------- previews in the background
#: Previews being synthesised: EngineTask with ``empty_name``; a timer drains them.
_pending: list = []


def _apply_preview(task, result, scene_name: str) -> dict:
    empty = bpy.data.objects.get(task.empty_name)
    scene = bpy.data.scenes.get(scene_name)
    play = bridge.scene_settings(scene)["preview_play"] if scene is not None else True
    summary = bridge.finish_preview(result, empty, play_sound=play)
    if scene is not None and hasattr(scene, bridge.SCENE_PROP):
        getattr(scene, bridge.SCENE_PROP).last_preview = summary["message"]
    return summary


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PROPERTIES"):
                area.tag_redraw()


def poll_previews():
    """Timer: finish the previews whose synthesis is done. Returns the next interval (None: stop)."""
    for task, scene_name in list(_pending):
        try:
            result = task.poll()
        except BridgeError as e:
            _pending.remove((task, scene_name))
            scene = bpy.data.scenes.get(scene_name)
            if scene is not None and hasattr(scene, bridge.SCENE_PROP):
                getattr(scene, bridge.SCENE_PROP).last_preview = f"Error: {e}"
            continue
        if result is None:
            continue
        _pending.remove((task, scene_name))
        _apply_preview(task, result, scene_name)
    _redraw()
    return 0.1 if _pending else None


def start_preview(op, context, empty, *, wait: bool) -> bool:
    """Synthesise and play ``empty``'s hit: now (``wait``) or in the background (a timer plays it)."""
    mode, python = _engine(context)
    scene = context.scene
    try:
        task = bridge.preview_task(empty, scene, mode=mode, python=python, background=not wait)
        if not wait:
            _pending.append((task, scene.name))
            if not bpy.app.timers.is_registered(poll_previews):
                bpy.app.timers.register(poll_previews, first_interval=0.05)
            getattr(scene, bridge.SCENE_PROP).last_preview = f"{empty.name}: synthesising..."
            return True
        summary = _apply_preview(task, task.wait(), scene.name)
    except BridgeError as e:
        op.report({"ERROR"}, f"preview of '{empty.name}': {e}")
        return False
    for note in summary["notes"]:
        op.report({"WARNING"}, f"{empty.name}: {note}")
    op.report({"INFO"}, summary["message"])
    return True


# --------------------------------------------------------------------------- operators
class SOUNDSTAGE_OT_impact_click(ClickInViewport, bpy.types.Operator):
    """Click on an object to hit it: adds an impact point keyed at the current frame and plays its sound.
Esc or right-click cancels"""

    bl_idname = "soundstage.impact_click"
    bl_label = "Add Impact"
    bl_options = {"REGISTER", "UNDO"}
    click_prompt = "Soundstage: click on an object to hit it; Esc or right-click to cancel"

    origin: FloatVectorProperty(name="Ray Origin", size=3, subtype="XYZ", unit="LENGTH", options={"SKIP_SAVE"})
    direction: FloatVectorProperty(name="Ray Direction", size=3, subtype="XYZ", options={"SKIP_SAVE"},
                                   description="World-space ray to cast (set by the click; zero: ask for a click)")
    force: FloatProperty(name="Force", min=0.01, max=10000.0, soft_max=500.0, default=D["force"],
                         description="Peak contact force in newtons")
    frame: IntProperty(name="Frame", default=-1, options={"SKIP_SAVE"},
                       description="Frame of the hit (-1: the current frame)")
    parent: BoolProperty(name="Follow Object", default=True,
                         description="Parent the impact point to the object so it moves with it")
    preview: BoolProperty(name="Preview", default=True, description="Synthesise and play the hit")
    wait: BoolProperty(name="Wait for Preview", default=False, options={"SKIP_SAVE"},
                       description="Synthesise before returning (scripts); the UI does it in the background")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def execute(self, context):
        if not any(self.direction):
            self.report({"ERROR"}, "no ray to cast: click on an object in the 3D viewport")
            return {"CANCELLED"}
        scene = context.scene
        context.view_layer.update()
        mode, python = _engine(context)
        try:
            hit = bridge.raycast(scene, self.origin, self.direction, mode=mode, python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if hit is None:
            self.report({"ERROR"}, "the click hit no object: click on a mesh or on splats (nothing was added)")
            return {"CANCELLED"}
        frame = scene.frame_current if self.frame < 0 else self.frame
        empty = bridge.create_impact(scene, hit, frame=frame, force=self.force, parent=self.parent)
        _select_only(context, empty)
        material, reason = bridge.impact_material(empty)
        p = hit["point"]
        self.report({"INFO"}, f"'{empty.name}' on '{hit['object'].name}' at ({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f}), "
                              f"frame {frame}: {material} ({reason})")
        if self.preview:
            start_preview(self, context, empty, wait=self.wait or not _interactive(context))
        return {"FINISHED"}


class SOUNDSTAGE_OT_preview_impact(bpy.types.Operator):
    """Synthesise and play the active impact point's hit again (after changing its material, force...)"""

    bl_idname = "soundstage.preview_impact"
    bl_label = "Preview Impact"

    name: StringProperty(name="Impact", default="", description="Empty: the active object")
    wait: BoolProperty(name="Wait for Preview", default=False, options={"SKIP_SAVE"})

    def execute(self, context):
        empty = bpy.data.objects.get(self.name) if self.name else context.active_object
        if not bridge.is_impact(empty):
            self.report({"ERROR"}, "select an impact point first (Soundstage > Impacts > Add Impact)")
            return {"CANCELLED"}
        ok = start_preview(self, context, empty, wait=self.wait or not _interactive(context))
        return {"FINISHED"} if ok else {"CANCELLED"}


class SOUNDSTAGE_OT_select_impact(bpy.types.Operator):
    """Select this impact point and jump to its frame"""

    bl_idname = "soundstage.select_impact"
    bl_label = "Select Impact"
    bl_options = {"REGISTER", "UNDO"}

    name: StringProperty(name="Impact", default="")

    def execute(self, context):
        obj = context.scene.objects.get(self.name)
        if not bridge.is_impact(obj):
            self.report({"ERROR"}, f"no impact point called '{self.name}' in this scene")
            return {"CANCELLED"}
        _select_only(context, obj)
        context.scene.frame_set(bridge.hit_frames(obj)[0])
        return {"FINISHED"}


class SOUNDSTAGE_OT_locate_hit(bpy.types.Operator):
    """Find where a recorded hit came from: ranks the scene's meshes by their modes and paints a heat map
(colour attribute "soundstage_heat")"""

    bl_idname = "soundstage.locate_hit"
    bl_label = "Locate Hit"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Recording", subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.wav;*.flac;*.ogg;*.aif;*.aiff", options={"HIDDEN"})
    selected_only: BoolProperty(name="Selected Only", default=False,
                                description="Rank only the selected meshes (else every visible mesh)")
    show_heat: BoolProperty(name="Show Heat Map", default=True,
                            description="Show the heat map in Solid mode (viewport colour: Attribute)")

    _timer = None
    _task = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def _start(self, context, background: bool):
        if not self.filepath:
            self.report({"ERROR"}, "no recording given: pick a WAV file of the hit")
            return None
        scene = context.scene
        mode, python = _engine(context)
        try:
            objs = bridge.locate_candidates(scene, selected_only=self.selected_only)
            return bridge.locate_task(scene, self.filepath, objects=objs, mode=mode, python=python,
                                      background=background)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return None

    def _finish(self, context, task, result):
        ranking = bridge.finish_locate(task, result)
        for note in ranking["notes"]:
            self.report({"WARNING"}, note)
        if self.show_heat:
            for window in context.window_manager.windows:
                for area in window.screen.areas:
                    for space in area.spaces:
                        if space.type == "VIEW_3D" and space.shading.type == "SOLID":
                            # Shown as "Attribute"; its identifier is VERTEX in Blender 4.x and 5.0.
                            items = space.shading.bl_rna.properties["color_type"].enum_items.keys()
                            space.shading.color_type = "VERTEX" if "VERTEX" in items else "ATTRIBUTE"
        self.report({"INFO"}, f"Most likely: {bridge.ranking_summary(ranking)}")
        return {"FINISHED"}

    def execute(self, context):
        task = self._start(context, background=False)
        if task is None:
            return {"CANCELLED"}
        try:
            result = task.wait()
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return self._finish(context, task, result)

    def invoke(self, context, event):
        if not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self._run_modal(context)

    def _run_modal(self, context):
        if not _interactive(context):
            return self.execute(context)
        self._task = self._start(context, background=True)
        if self._task is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        if context.workspace is not None:
            context.workspace.status_text_set("Soundstage: locating the hit (modal analysis of each object); "
                                              "Esc to stop")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if self._task is None:  # back from the file browser
            if event.type == "TIMER":
                return {"PASS_THROUGH"}
            return self._run_modal(context)
        if event.type == "ESC" and event.value == "PRESS":
            self._task.cancel()
            return self._end(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            result = self._task.poll()
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return self._end(context, {"CANCELLED"})
        if result is None:
            return {"PASS_THROUGH"}
        return self._end(context, self._finish(context, self._task, result))

    def _end(self, context, result):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _redraw()
        return result


# --------------------------------------------------------------------------- panel
def _material_line(obj) -> str:
    name, reason = bridge.object_material(obj)
    return f"{name}: {reason}"


def _draw_impact(box, obj):
    s = obj.soundstage_impact
    box.label(text=obj.name, icon="EMPTY_SINGLE_ARROW")
    box.prop(s, "target")
    col = box.column(align=True)
    col.prop(s, "frame")
    col.prop(s, "force")
    col.prop(s, "seed")
    col.prop(s, "gain_db")
    col.prop(s, "duration")
    box.prop(s, "material")
    name, reason = bridge.impact_material(obj)
    row = box.row()
    row.alert = not name
    row.label(text=f"{name}: {reason}" if name else reason, icon="INFO" if name else "ERROR")
    if s.target is not None and splat_bridge.is_splat_object(s.target):
        box.prop(s, "patch_radius")
    if s.notes:
        box.label(text=s.notes, icon="ERROR")
    box.operator("soundstage.preview_impact", icon="PLAY_SOUND").name = obj.name


def _draw_list(layout, scene):
    impacts = bridge.impact_objects(scene)
    if not impacts:
        layout.label(text="No impact points: Add Impact, then click on an object", icon="INFO")
        return
    col = layout.column(align=True)
    for o in impacts:
        s = o.soundstage_impact
        box = col.box()
        row = box.row(align=True)
        row.operator("soundstage.select_impact", text=o.name, icon="EMPTY_SINGLE_ARROW", emboss=False).name = o.name
        row.prop(s, "frame", text="")
        row.prop(s, "force", text="N")
        name, reason = bridge.impact_material(o)
        sub = box.row()
        if s.target is None:
            sub.alert = True
            sub.label(text="no target object: pick one or delete the impact", icon="ERROR")
        else:
            frames = bridge.hit_frames(o)
            more = f", {len(frames)} hits" if len(frames) > 1 else ""
            sub.label(text=f"{s.target.name}: {name}{more}", icon="MATERIAL")


def _draw_ranking(layout, s):
    if not s.locate_result:
        return
    try:
        r = json.loads(s.locate_result)
    except ValueError:
        return
    box = layout.box()
    box.label(text=f"Located: {Path(r.get('file', '')).name}", icon="VIEWZOOM")
    for rank, o in enumerate(r.get("objects", [])[:3], 1):
        box.label(text=f"{rank}. {o['name']} ({o['material']}): {100 * o['probability']:.1f} %")
    for note in r.get("notes", []):
        box.label(text=note, icon="ERROR")


class VIEW3D_PT_soundstage_impacts(bpy.types.Panel):
    bl_label = "Impacts"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Soundstage"
    bl_parent_id = "VIEW3D_PT_soundstage"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        row = layout.row(align=True)
        row.operator("soundstage.impact_click", icon="MOUSE_LMB", text="Add Impact")
        row.operator("soundstage.locate_hit", icon="VIEWZOOM", text="Locate Hit")
        obj = getattr(context, "active_object", None)
        if bridge.is_impact(obj):
            _draw_impact(layout.box(), obj)
        elif obj is not None and obj.type == "MESH":
            box = layout.box()
            box.label(text=f"{obj.name}: impact material", icon="MATERIAL")
            box.prop(obj.soundstage_impact, "material", text="")
            box.label(text=_material_line(obj), icon="INFO")
        _draw_list(layout, scene)
        s = getattr(scene, bridge.SCENE_PROP)
        if s.last_preview:
            row = layout.row()
            row.alert = s.last_preview.startswith("Error")
            row.label(text=s.last_preview, icon="PLAY_SOUND")
        _draw_ranking(layout, s)
        col = layout.column(align=True)
        col.prop(s, "budget")
        row = col.row(align=True)
        row.prop(s, "preview_spatial")
        row.prop(s, "preview_play")


CLASSES = (SoundstageImpactSettings, SoundstageImpactSceneSettings, SOUNDSTAGE_OT_impact_click,
           SOUNDSTAGE_OT_preview_impact, SOUNDSTAGE_OT_select_impact, SOUNDSTAGE_OT_locate_hit,
           VIEW3D_PT_soundstage_impacts)

_POINTERS = (
    (bpy.types.Object, bridge.OBJECT_PROP, SoundstageImpactSettings),
    (bpy.types.Scene, bridge.SCENE_PROP, SoundstageImpactSceneSettings),
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for owner, attr, cls in _POINTERS:
        setattr(owner, attr, PointerProperty(type=cls))


def unregister():
    if bpy.app.timers.is_registered(poll_previews):
        bpy.app.timers.unregister(poll_previews)
    for task, _scene in _pending:
        task.cancel()
    _pending.clear()
    bridge.stop_servers()
    for owner, attr, _cls in reversed(_POINTERS):
        if hasattr(owner, attr):
            delattr(owner, attr)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
