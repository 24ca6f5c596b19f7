"""Gaussian splat scenes: import (File > Import and drag-and-drop), room proxy,
the room the user draws, sources placed on the splats, camera paths.

Operators are thin: they gather input and call ``bridge.splats``. The sidebar
gets a "Gaussian Splats" sub-panel of its own.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, StringProperty)

from ..bridge import splats as bridge
from ..bridge.errors import BridgeError
from . import prefs
from .modal import ClickInViewport

DISPLAY_ITEMS = [
    ("AUTO", "Auto", f"Points; above {bridge.MAX_DISPLAY_POINTS:,} splats the viewport shows a random subset", 0),
    ("POINTS", "All Points", "Every splat as a point in the viewport (slow above a million)", 1),
    ("BOUNDS", "Bounds", "Only the bounding box in the viewport (renders still show every point)", 2),
]
UP_ITEMS = [
    ("Z", "Z Up", "The capture is already Z up (Blender's convention)", 0),
    ("-Y", "-Y Up (COLMAP)", "COLMAP / OpenCV captures: rotate the object so their -Y points up", 1),
    ("Y", "Y Up", "Rotate the object so the capture's +Y points up", 2),
]


def _engine(context):
    return prefs.engine_settings(context)


def _active_splats(context):
    obj = getattr(context, "active_object", None)
    return obj if bridge.is_splat_object(obj) else None


def _target_collection(context, obj=None):
    if obj is not None and obj.users_collection:
        return obj.users_collection[0]
    return context.collection or context.scene.collection


def _select_only(context, obj) -> None:
    for o in context.selected_objects:
        o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


# --------------------------------------------------------------------------- import
class SOUNDSTAGE_OT_import_splats(bpy.types.Operator):
    """Import a 3D Gaussian Splatting scene (.ply or .splat) as a point object"""

    bl_idname = "soundstage.import_splats"
    bl_label = "Import Gaussian Splats"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default="*.ply;*.splat", options={"HIDDEN"})
    display: EnumProperty(name="Viewport Display", items=DISPLAY_ITEMS, default="AUTO")
    max_display_points: IntProperty(name="Max Viewport Points", min=1000, default=bridge.MAX_DISPLAY_POINTS,
                                    description="Auto display keeps at most this many points in the viewport")
    point_scale: FloatProperty(name="Point Scale", min=0.0, max=100.0, default=1.0,
                               description="Multiplies each point's display radius (the splat's mean sigma)")
    up_axis: EnumProperty(name="Up Axis", items=UP_ITEMS, default="Z")
    drop_nonfinite: BoolProperty(name="Skip Broken Gaussians", default=False,
                                 description="Leave out gaussians with NaN or infinite values instead of refusing "
                                             "the file")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def _paths(self) -> list[Path]:
        if self.directory and len(self.files):
            return [Path(self.directory) / f.name for f in self.files if f.name]
        return [Path(self.filepath)] if self.filepath else []

    def invoke(self, context, event):
        if self._paths():  # dropped on the viewport (FileHandler) or given by a script
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        paths = self._paths()
        if not paths:
            self.report({"ERROR"}, "no splat file given: pick a .ply or .splat file")
            return {"CANCELLED"}
        mode, python = _engine(context)
        made = []
        for path in paths:
            try:
                obj, warnings = bridge.import_splats(
                    path, _target_collection(context), nonfinite="drop" if self.drop_nonfinite else "error",
                    display=self.display, max_display_points=self.max_display_points,
                    point_scale=self.point_scale, up_axis=self.up_axis, mode=mode, python=python)
            except BridgeError as e:
                msg = str(e)
                if "nonfinite='drop'" in msg:
                    msg += " (in Blender: tick Skip Broken Gaussians in the import options)"
                self.report({"ERROR"}, msg)
                return {"CANCELLED"}
            for w in warnings:
                self.report({"WARNING"}, f"{path.name}: {w}")
            made.append(obj)
        _select_only(context, made[-1])
        names = ", ".join(f"'{o.name}' ({len(o.data.vertices):,} splats)" for o in made)
        self.report({"INFO"}, f"Imported {names}")
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "up_axis")
        layout.prop(self, "display")
        if self.display == "AUTO":
            layout.prop(self, "max_display_points")
        layout.prop(self, "point_scale")
        layout.prop(self, "drop_nonfinite")


def menu_import(self, context):
    self.layout.operator(SOUNDSTAGE_OT_import_splats.bl_idname, text="Gaussian Splats (.ply, .splat)")


_FILE_HANDLERS = []
if hasattr(bpy.types, "FileHandler"):  # Blender 4.1+: drag and drop onto the 3D viewport
    class SOUNDSTAGE_FH_splats(bpy.types.FileHandler):
        bl_idname = "SOUNDSTAGE_FH_splats"
        bl_label = "Gaussian Splats (Soundstage)"
        bl_import_operator = "soundstage.import_splats"
        bl_file_extensions = ".ply;.splat"

        @classmethod
        def poll_drop(cls, context):
            return context.area is not None and context.area.type == "VIEW_3D"

    _FILE_HANDLERS.append(SOUNDSTAGE_FH_splats)


# --------------------------------------------------------------------------- rooms
class SOUNDSTAGE_OT_splat_room(bpy.types.Operator):
    """Fit a box room (floor, ceiling, walls) to the active splat object and add it as acoustic geometry,
with materials guessed from the splats' colours"""

    bl_idname = "soundstage.splat_room"
    bl_label = "Room from Splats"
    bl_options = {"REGISTER", "UNDO"}

    min_opacity: FloatProperty(name="Min Opacity", min=0.0, max=1.0, default=0.5,
                               description="Fainter splats (floaters, haze) are ignored")
    target: StringProperty(name="Splat Object", default="", description="Empty: the active object")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def execute(self, context):
        obj = context.scene.objects.get(self.target) if self.target else _active_splats(context)
        if not bridge.is_splat_object(obj):
            self.report({"ERROR"}, "select a splat object first (File > Import > Gaussian Splats)")
            return {"CANCELLED"}
        context.view_layer.update()  # world matrices of objects moved by a script
        mode, python = _engine(context)
        try:
            room, details = bridge.estimate_room_object(obj, _target_collection(context, obj),
                                                        min_opacity=self.min_opacity, mode=mode, python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for note in details.get("notes", []):
            self.report({"WARNING"}, note)
        _select_only(context, room)
        size = " x ".join(f"{v:.2f}" for v in details["size"])
        mats = details["materials"]
        self.report({"INFO"}, f"Room '{room.name}': {size} m, floor {mats['floor']}, walls {mats['walls']}, "
                              f"ceiling {mats['ceiling']} (edit them in its materials)")
        return {"FINISHED"}


class SOUNDSTAGE_OT_room_from_outline(bpy.types.Operator):
    """Make a closed acoustic room from the active mesh: a floor outline (plane, polygon or closed edge loop)
extruded to the ceiling height, or a box / extruded outline as it is"""

    bl_idname = "soundstage.room_from_outline"
    bl_label = "Room from Outline"
    bl_options = {"REGISTER", "UNDO"}

    height: FloatProperty(name="Height", min=0.1, default=2.5, unit="LENGTH",
                          description="Room height above the outline (used when the mesh is flat)")
    hide_outline: BoolProperty(name="Hide Outline", default=True, description="Hide the drawn mesh afterwards")

    @classmethod
    def poll(cls, context):
        obj = getattr(context, "active_object", None)
        return (context.mode == "OBJECT" and obj is not None and obj.type == "MESH"
                and not bridge.is_splat_object(obj))

    def execute(self, context):
        obj = context.active_object
        context.view_layer.update()
        mode, python = _engine(context)
        try:
            room = bridge.outline_room_object(obj, _target_collection(context, obj), height=self.height,
                                              mode=mode, python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if self.hide_outline:
            obj.hide_set(True)
        _select_only(context, room)
        self.report({"INFO"}, f"Room '{room.name}' made from '{obj.name}' and marked acoustic")
        return {"FINISHED"}


# --------------------------------------------------------------------------- sources on splats
class SOUNDSTAGE_OT_place_source_on_splats(ClickInViewport, bpy.types.Operator):
    """Click on the splats to put a Speaker there (5 cm in front of the surface); Esc or right-click cancels"""

    bl_idname = "soundstage.place_source_on_splats"
    bl_label = "Place Source on Splats"
    bl_options = {"REGISTER", "UNDO"}
    click_prompt = ("Soundstage: click on the splats to place the source; "
                    "Esc or right-click to cancel")

    origin: FloatVectorProperty(name="Ray Origin", size=3, subtype="XYZ", unit="LENGTH", options={"SKIP_SAVE"})
    direction: FloatVectorProperty(name="Ray Direction", size=3, subtype="XYZ", options={"SKIP_SAVE"},
                                   description="World-space ray to cast (set by the click; zero: ask for a click)")
    offset: FloatProperty(name="Offset", min=0.0, default=bridge.SOURCE_OFFSET, unit="LENGTH",
                          description="Distance in front of the surface, along its normal")
    filepath: StringProperty(name="Sound File", subtype="FILE_PATH", default="",
                             description="Sound for a new speaker (optional)")
    move_active: BoolProperty(name="Move Active Speaker", default=False,
                              description="Move the active speaker there instead of adding one")
    target: StringProperty(name="Splat Object", default="", description="Empty: every visible splat object")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def _targets(self, context):
        if self.target:
            obj = context.scene.objects.get(self.target)
            return [obj] if bridge.is_splat_object(obj) else []
        return [o for o in bridge.splat_objects(context.scene) if o.visible_get()]

    def execute(self, context):
        if not any(self.direction):
            self.report({"ERROR"}, "no ray to cast: click on the splats in the 3D viewport")
            return {"CANCELLED"}
        targets = self._targets(context)
        if not targets:
            self.report({"ERROR"}, "no visible splat object to place the source on "
                                   "(File > Import > Gaussian Splats)")
            return {"CANCELLED"}
        context.view_layer.update()
        mode, python = _engine(context)
        try:
            hit = bridge.raycast_scene(targets, self.origin, self.direction, mode=mode, python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if hit is None:
            self.report({"ERROR"}, "the ray hit no splat: click on the captured surfaces")
            return {"CANCELLED"}
        where = hit["point"] + self.offset * hit["normal"]
        active = context.active_object
        if self.move_active and active is not None and active.type == "SPEAKER":
            spk = active
            spk.matrix_world.translation = where.tolist()
        else:
            sound = None
            if self.filepath:
                path = Path(bpy.path.abspath(self.filepath))
                if not path.is_file():
                    self.report({"ERROR"}, f"sound file '{path}' not found")
                    return {"CANCELLED"}
                sound = bpy.data.sounds.load(str(path), check_existing=True)
            # The stock operator also makes the NLA sound strip that says when the sound starts.
            bpy.ops.object.speaker_add(location=where.tolist())
            spk = context.active_object
            if sound is not None:
                spk.data.sound = sound
        spk["soundstage_surface"] = {"object": hit["object"], "point": hit["point"].tolist(),
                                     "normal": hit["normal"].tolist()}
        _select_only(context, spk)
        self.report({"INFO"}, f"'{spk.name}' placed on '{hit['object']}' at "
                              f"({where[0]:.2f}, {where[1]:.2f}, {where[2]:.2f}), {hit['distance']:.2f} m away")
        return {"FINISHED"}


# --------------------------------------------------------------------------- camera paths
class SOUNDSTAGE_OT_import_camera_path(bpy.types.Operator):
    """Import a capture's camera walk (COLMAP model folder, images.txt/.bin, or nerfstudio transforms.json)
as an animated camera that can be a listener"""

    bl_idname = "soundstage.import_camera_path"
    bl_label = "Import Camera Path"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Path", subtype="FILE_PATH", default="", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default="*.json;*.txt;*.bin", options={"HIDDEN"})
    parent: StringProperty(name="Splat Object", default="",
                           description="Parent the camera to this splat object, so it follows the capture's "
                                       "transform (empty: the active splat object, if any)")
    listener: BoolProperty(name="Listener", default=True, description="Tick Listener on the new camera")
    undo_applied_transform: BoolProperty(
        name="Undo nerfstudio Transform", default=False,
        description="transforms.json from ns-process-data: map the poses back into the COLMAP frame of an "
                    "Inria-trained .ply")
    set_frame_range: BoolProperty(name="Fit Frame Range", default=True,
                                  description="Make the scene's frame range end at the path's last frame")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def invoke(self, context, event):
        if self.filepath:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "no camera path given: pick a COLMAP model folder or a transforms.json")
            return {"CANCELLED"}
        scene = context.scene
        parent = scene.objects.get(self.parent) if self.parent else _active_splats(context)
        if self.parent and parent is None:
            self.report({"ERROR"}, f"no object called '{self.parent}' to parent the camera to")
            return {"CANCELLED"}
        path = self.filepath
        mode, python = _engine(context)
        fps = scene.render.fps / scene.render.fps_base
        try:
            cam, notes = bridge.import_camera_path(path, _target_collection(context, parent), fps=fps,
                                                   frame_start=scene.frame_start, parent=parent,
                                                   listener=self.listener,
                                                   undo_applied_transform=self.undo_applied_transform,
                                                   mode=mode, python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for n in notes:
            self.report({"WARNING"}, n)
        info = cam["soundstage_camera_path"]
        if self.set_frame_range:
            scene.frame_end = max(info["last_frame"], scene.frame_start)
        if scene.camera is None:
            scene.camera = cam
        _select_only(context, cam)
        self.report({"INFO"}, f"Camera '{cam.name}': {info['poses']} poses, frames {info['first_frame']}-"
                              f"{info['last_frame']}")
        return {"FINISHED"}


# --------------------------------------------------------------------------- panel
class VIEW3D_PT_soundstage_splats(bpy.types.Panel):
    bl_label = "Gaussian Splats"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Soundstage"
    bl_parent_id = "VIEW3D_PT_soundstage"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.operator("soundstage.import_splats", icon="IMPORT")
        obj = getattr(context, "active_object", None)
        if bridge.is_splat_object(obj):
            box = layout.box()
            info = obj[bridge.PROP]
            box.label(text=f"{obj.name}: {len(obj.data.vertices):,} splats", icon="POINTCLOUD_DATA")
            source = Path(str(info.get("source", ""))).name
            if source:
                box.label(text=source, icon="FILE")
            mod = bridge.display_modifier(obj)
            if mod is not None:
                keys = bridge.display_inputs(mod)
                col = box.column(align=True)
                for name in ("Point Scale", "Display Fraction"):
                    if name in keys:
                        col.prop(mod, f'["{keys[name]}"]', text=name)
                box.prop(mod, "show_viewport", text="Show Points")
            layout.operator("soundstage.splat_room", icon="MESH_CUBE")
            layout.operator("soundstage.place_source_on_splats", icon="OUTLINER_OB_SPEAKER")
            layout.operator("soundstage.import_camera_path", icon="OUTLINER_OB_CAMERA").parent = obj.name
        elif obj is not None and obj.type == "MESH":
            layout.operator("soundstage.room_from_outline", icon="MOD_BUILD")
        else:
            layout.label(text="Select a splat object, or a mesh outline", icon="INFO")
        if obj is not None and bridge.ROOM_PROP in obj.keys():
            import json

            info = json.loads(obj[bridge.ROOM_PROP])
            for note in info.get("notes") or []:
                layout.label(text=note, icon="ERROR")


CLASSES = (SOUNDSTAGE_OT_import_splats, *_FILE_HANDLERS, SOUNDSTAGE_OT_splat_room, SOUNDSTAGE_OT_room_from_outline,
           SOUNDSTAGE_OT_place_source_on_splats, SOUNDSTAGE_OT_import_camera_path, VIEW3D_PT_soundstage_splats)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
