"""Footage and stills: a tracked marker or image regions become Speakers.

Operators are thin: they gather input and call ``bridge.footage``. The sidebar
gets a "Footage" sub-panel of its own.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, \
    StringProperty

from ..bridge import footage as bridge
from ..bridge.errors import BridgeError
from . import prefs

DEPTH_ITEMS = [
    ("SCENE", "Scene", "Cast rays through the camera into the scene's meshes and splats at each frame", 0),
    ("IMAGES", "Depth Images", "An imported depth image sequence (EXR, PNG...; one file per frame)", 1),
    ("BUNDLE", "Solve Point", "The point the camera solve reconstructed for this track", 2),
]
KIND_ITEMS = [
    ("Z", "Z Depth", "Distance along the camera's viewing axis (Blender's Z pass, most depth estimators)", 0),
    ("RANGE", "Range", "Distance along the ray from the camera", 1),
]


def _select_only(context, obj) -> None:
    for o in context.selected_objects:
        o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


class _Progress:
    """``window_manager.progress_*`` around a short piece of main-thread work."""

    def __init__(self, context):
        self.wm = context.window_manager if context.window is not None else None

    def __enter__(self):
        if self.wm is not None:
            self.wm.progress_begin(0, 100)
        return self

    def __call__(self, fraction: float) -> None:
        if self.wm is not None:
            self.wm.progress_update(int(100 * fraction))

    def __exit__(self, *exc):
        if self.wm is not None:
            self.wm.progress_end()


# --------------------------------------------------------------------------- tracked footage
class SOUNDSTAGE_OT_source_from_track(bpy.types.Operator):
    """Make a Speaker follow a tracked object: its marker (or a CSV of pixels) lifted to 3-D with depth
from the scene, depth images or the solve, outliers removed and gaps filled"""

    bl_idname = "soundstage.source_from_track"
    bl_label = "Source from Track"
    bl_options = {"REGISTER", "UNDO"}

    clip: StringProperty(name="Clip", default="", description="Movie Clip (empty: the only one in the file)")
    track: StringProperty(name="Track", default="", description="Tracking marker (empty: the clip's active track)")
    csv_path: StringProperty(name="CSV Track", subtype="FILE_PATH", default="",
                             description="Instead of a marker: a CSV with columns frame,x,y (pixels from the "
                                         "top-left corner at the render resolution, scene frames)")
    camera: StringProperty(name="Camera", default="", description="Empty: the scene camera")
    depth: EnumProperty(name="Depth", items=DEPTH_ITEMS, default="SCENE")
    depth_path: StringProperty(name="Depth Images", subtype="FILE_PATH", default="",
                               description="Folder or one file of the depth sequence (the last number in a file's "
                                           "name is its frame)")
    depth_kind: EnumProperty(name="Depth Kind", items=KIND_ITEMS, default="Z")
    depth_scale: FloatProperty(name="Depth Scale", default=1.0, min=1e-9,
                               description="Metres per stored depth unit (0.001 for millimetres)")
    depth_frame_offset: IntProperty(name="Frame Offset", default=0,
                                    description="Scene frame = depth file number + this")
    depth_offset: FloatProperty(name="Surface Offset", default=0.0, min=0.0, unit="LENGTH",
                                description="Move the source this far behind the surface the marker is on "
                                            "(about the object's radius)")
    patch: IntProperty(name="Depth Patch", default=5, min=1, max=101,
                       description="Median of the valid depth pixels in this square around the marker")
    smooth: IntProperty(name="Smooth", default=0, min=0, max=99,
                        description="Smooth the cleaned path over this many frames (odd; 0: no smoothing)")
    speaker: StringProperty(name="Speaker", default="",
                            description="Move this speaker (empty: add one named after the marker)")
    sound: StringProperty(name="Sound", subtype="FILE_PATH", default="", description="Sound of the speaker")
    library: StringProperty(name="Sound Library", subtype="DIR_PATH", default="",
                            description="Folder of sounds: the one whose name matches the marker's is used")
    static_camera: BoolProperty(name="Static Camera", default=False,
                                description="The camera stands still (locked-off shot): no solve or animation "
                                            "needed")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def execute(self, context):
        if self.smooth and self.smooth % 2 == 0:
            self.report({"ERROR"}, f"Smooth is {self.smooth}: use an odd number of frames (or 0)")
            return {"CANCELLED"}
        mode, python = prefs.engine_settings(context)
        try:
            with _Progress(context) as progress:
                spk, rep = bridge.source_from_track(
                    context, clip=self.clip, track=self.track, csv_path=self.csv_path, camera=self.camera,
                    depth=self.depth, depth_path=self.depth_path, depth_kind=self.depth_kind.lower(),
                    depth_scale=self.depth_scale, depth_frame_offset=self.depth_frame_offset,
                    depth_offset=self.depth_offset, patch=self.patch, smooth=self.smooth, speaker=self.speaker,
                    sound=self.sound, library=self.library, static_camera=self.static_camera, mode=mode,
                    python=python, progress=progress)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for note in rep["notes"]:
            self.report({"WARNING"}, note)
        _select_only(context, spk)
        f = rep["figures"]
        sound = f", {rep['sound']}" if rep["sound"] else ""
        self.report({"INFO"}, f"'{spk.name}' follows the track over frames {rep['frames'][0]}-{rep['frames'][1]}"
                              f"{sound}. Before cleaning: {f['lifted']} of {f['markers']} markers lifted, "
                              f"RMS {f['raw_rms_m']:.2f} m (max {f['raw_max_m']:.2f} m) from the cleaned path. "
                              f"After: {f['outliers']} wild points removed (median {f['outlier_median_m']:.2f} m "
                              f"off), {f['filled']} frames filled, {f['path_length_m']:.2f} m travelled")
        return {"FINISHED"}


# --------------------------------------------------------------------------- stills
class SOUNDSTAGE_PG_footage_region(bpy.types.PropertyGroup):
    """One image region: a name and a box in pixels (x0, y0, x1, y1 from the top-left corner)."""

    name: StringProperty(name="Name", default="")
    box: FloatVectorProperty(name="Box", size=4, default=(0.0, 0.0, 0.0, 0.0),
                             description="x0, y0, x1, y1 in pixels of the depth map, from its top-left corner")


class SOUNDSTAGE_OT_sources_from_image(bpy.types.Operator):
    """Add one Speaker per region of a still or rendered frame (boxes, masks or a segmentation image)
at the region's 3-D centre, from a depth map"""

    bl_idname = "soundstage.sources_from_image"
    bl_label = "Sources from Image"
    bl_options = {"REGISTER", "UNDO"}

    depth: StringProperty(name="Depth Map", default="", subtype="FILE_PATH",
                          description="Image datablock name or file (EXR, PNG, .npy) holding the depth per pixel")
    depth_kind: EnumProperty(name="Depth Kind", items=KIND_ITEMS, default="Z")
    depth_scale: FloatProperty(name="Depth Scale", default=1.0, min=1e-9, description="Metres per stored unit")
    regions: CollectionProperty(type=SOUNDSTAGE_PG_footage_region, options={"SKIP_SAVE"})
    regions_json: StringProperty(name="Regions", default="", subtype="FILE_PATH",
                                 description="JSON file or text: a list of {\"name\", \"box\": [x0, y0, x1, y1]} "
                                             "or {\"name\", \"mask\": image file}")
    segmentation: StringProperty(name="Segmentation", default="", subtype="FILE_PATH",
                                 description="Label image (datablock or file): one region per label, 0 = background")
    label_names: StringProperty(name="Label Names", default="",
                                description="JSON {label: name} for the segmentation's labels")
    camera: StringProperty(name="Camera", default="", description="Empty: the scene camera")
    frame: IntProperty(name="Frame", default=-1, description="Frame the image shows (-1: the current frame)")
    library: StringProperty(name="Sound Library", subtype="DIR_PATH", default="",
                            description="Folder of sounds matched to the regions' names")

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.mode == "OBJECT"

    def execute(self, context):
        mode, python = prefs.engine_settings(context)
        boxes = [{"name": r.name, "box": list(r.box)} for r in self.regions]
        frame = context.scene.frame_current if self.frame < 0 else self.frame
        try:
            made, rep = bridge.sources_from_image(
                context, depth=self.depth, depth_kind=self.depth_kind.lower(), depth_scale=self.depth_scale,
                regions=boxes, regions_json=self.regions_json, segmentation=self.segmentation,
                label_names=self.label_names, camera=self.camera, frame=frame, library=self.library, mode=mode,
                python=python)
        except BridgeError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for note in rep["notes"]:
            self.report({"WARNING"}, note)
        for o in context.selected_objects:
            o.select_set(False)
        for o in made:
            o.select_set(True)
        context.view_layer.objects.active = made[-1]
        names = ", ".join(f"'{o.name}' ({d:.2f} m)" for o, d in zip(made, rep["depths"]))
        self.report({"INFO"}, f"{len(made)} sources from the image at frame {frame}: {names}")
        return {"FINISHED"}


# --------------------------------------------------------------------------- panel
class SOUNDSTAGE_PG_footage(bpy.types.PropertyGroup):
    """``Scene.soundstage_footage``: the Footage panel's choices (the operators take them as properties)."""

    clip: bpy.props.PointerProperty(name="Clip", type=bpy.types.MovieClip)
    track: StringProperty(name="Track", default="")
    depth: EnumProperty(name="Depth", items=DEPTH_ITEMS, default="SCENE")
    depth_path: StringProperty(name="Depth Images", subtype="FILE_PATH", default="")
    depth_kind: EnumProperty(name="Depth Kind", items=KIND_ITEMS, default="Z")
    depth_offset: FloatProperty(name="Surface Offset", default=0.0, min=0.0, unit="LENGTH")
    sound: StringProperty(name="Sound", subtype="FILE_PATH", default="")
    library: StringProperty(name="Sound Library", subtype="DIR_PATH", default="")
    static_camera: BoolProperty(name="Static Camera", default=False)
    image_depth: StringProperty(name="Depth Map", subtype="FILE_PATH", default="")
    regions_json: StringProperty(name="Regions", subtype="FILE_PATH", default="")
    segmentation: StringProperty(name="Segmentation", subtype="FILE_PATH", default="")


class VIEW3D_PT_soundstage_footage(bpy.types.Panel):
    bl_label = "Footage"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Soundstage"
    bl_parent_id = "VIEW3D_PT_soundstage"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.soundstage_footage
        box = layout.box()
        box.label(text="Tracked footage", icon="TRACKER")
        box.prop(s, "clip")
        if s.clip is not None:
            box.prop_search(s, "track", s.clip.tracking, "tracks", icon="TRACKER")
            if not s.clip.tracking.reconstruction.is_valid:
                box.label(text="No camera solve: animate the camera or tick Static Camera", icon="INFO")
        box.prop(s, "depth")
        if s.depth == "IMAGES":
            box.prop(s, "depth_path")
            box.prop(s, "depth_kind")
        box.prop(s, "depth_offset")
        box.prop(s, "sound")
        box.prop(s, "library")
        box.prop(s, "static_camera")
        op = box.operator("soundstage.source_from_track", icon="OUTLINER_OB_SPEAKER")
        op.clip = s.clip.name if s.clip is not None else ""
        op.track, op.depth, op.depth_path, op.depth_kind = s.track, s.depth, s.depth_path, s.depth_kind
        op.depth_offset, op.sound, op.library, op.static_camera = s.depth_offset, s.sound, s.library, s.static_camera
        box = layout.box()
        box.label(text="Still or rendered frame", icon="IMAGE_DATA")
        box.prop(s, "image_depth")
        box.prop(s, "regions_json")
        box.prop(s, "segmentation")
        op = box.operator("soundstage.sources_from_image", icon="OUTLINER_OB_SPEAKER")
        op.depth, op.regions_json, op.segmentation, op.library = (s.image_depth, s.regions_json, s.segmentation,
                                                                  s.library)
        obj = getattr(context, "active_object", None)
        if obj is not None and obj.type == "SPEAKER" and bridge.PROP in obj.keys():
            import json

            info = json.loads(obj[bridge.PROP])
            col = layout.column(align=True)
            col.label(text=f"{obj.name}: from '{info.get('track') or info.get('region', '')}'", icon="INFO")
            if "outliers" in info:
                col.label(text=f"{info['outliers']} outliers removed, {info['filled']} frames filled")


CLASSES = (SOUNDSTAGE_OT_source_from_track, SOUNDSTAGE_PG_footage_region, SOUNDSTAGE_OT_sources_from_image,
           SOUNDSTAGE_PG_footage, VIEW3D_PT_soundstage_footage)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.soundstage_footage = bpy.props.PointerProperty(type=SOUNDSTAGE_PG_footage)


def unregister():
    del bpy.types.Scene.soundstage_footage
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
