"""Panels: the "Soundstage" sidebar tab in the 3D viewport, and Speaker,
Camera, Object (meshes) and Material property panels."""

from __future__ import annotations

import bpy

from ..bridge import export as exporter
from ..bridge import materials as acoustic
from ..bridge import paths, timeline
from ..bridge.errors import BridgeError
from . import operators

STATUS_ICONS = {"OK": "CHECKMARK", "MUTED": "HIDE_ON", "ERROR": "ERROR"}


def _listeners_or_none(scene):
    try:
        return exporter.find_listeners(scene)
    except BridgeError:
        return []


def draw_material(layout, mat):
    """The acoustic settings of one material (shared by the sidebar and the Material tab)."""
    s = mat.soundstage
    layout.prop(s, "mode", expand=True)
    if s.mode == "LIBRARY":
        layout.prop(s, "library", text="")
    elif s.mode == "CUSTOM":
        col = layout.column(align=True)
        for i, band in enumerate(acoustic.BANDS):
            label = f"{band} Hz" if band < 1000 else f"{band // 1000} kHz"
            col.prop(s, "absorption", index=i, text=label, slider=True)
        layout.prop(s, "scattering", slider=True)
    layout.label(text=exporter.material_summary(mat), icon="INFO")


class SoundstageSidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Soundstage"


class VIEW3D_PT_soundstage(SoundstageSidebar, bpy.types.Panel):
    bl_label = "Soundstage"

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.soundstage_bake
        session = operators.active_session()
        if session is not None:
            layout.label(text=session.message or "baking...", icon="SOUND")
            if hasattr(layout, "progress"):  # Blender 4.0+
                layout.progress(factor=session.fraction, type="BAR", text=f"{session.fraction * 100:.0f} %")
            layout.operator("soundstage.cancel_bake", icon="CANCEL", text="Cancel (Esc)")
        else:
            row = layout.row()
            row.scale_y = 1.4
            row.operator("soundstage.bake", icon="RENDER_ANIMATION", text="Bake")
            layout.operator("soundstage.play_preview", icon="PLAY")
        if state.last_result:
            layout.label(text=state.last_result, icon="INFO")


class VIEW3D_PT_soundstage_listeners(SoundstageSidebar, bpy.types.Panel):
    bl_label = "Listeners"
    bl_parent_id = "VIEW3D_PT_soundstage"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        fmt = exporter.scene_format(scene)
        listeners = {o.name for o in _listeners_or_none(scene)}
        cams = sorted((o for o in scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
        if not cams:
            layout.label(text="No camera: add a listener", icon="ERROR")
        for o in cams:
            row = layout.row(align=True)
            row.prop(o.soundstage, "listener", text="")
            icon = "OUTLINER_OB_CAMERA" if o.name in listeners else "CAMERA_DATA"
            label = o.name + ("  (scene camera)" if o == scene.camera else "")
            row.label(text=label, icon=icon)
            if o.name in listeners:
                has = bool(timeline.own_strips(scene, o.name, fmt))
                row.label(text="", icon="SEQUENCE" if has else "DOT")
        layout.operator("soundstage.add_listener", icon="ADD")


class VIEW3D_PT_soundstage_sources(SoundstageSidebar, bpy.types.Panel):
    bl_label = "Sources"
    bl_parent_id = "VIEW3D_PT_soundstage"

    def draw(self, context):
        layout = self.layout
        speakers = sorted((o for o in context.scene.objects if o.type == "SPEAKER"), key=lambda o: o.name)
        if not speakers:
            layout.label(text="No speakers yet", icon="INFO")
        for o in speakers:
            level, text = exporter.source_status(o)
            box = layout.box()
            row = box.row(align=True)
            row.label(text=o.name, icon="OUTLINER_OB_SPEAKER")
            row.prop(o.data, "muted", text="", icon="MUTE_IPO_ON" if o.data.muted else "MUTE_IPO_OFF",
                     emboss=False)
            sub = box.row()
            sub.alert = level == "ERROR"
            sub.label(text=text, icon=STATUS_ICONS[level])
        layout.operator("soundstage.add_source", icon="ADD")


class VIEW3D_PT_soundstage_room(SoundstageSidebar, bpy.types.Panel):
    bl_label = "Room and Materials"
    bl_parent_id = "VIEW3D_PT_soundstage"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        layout.prop(scene.soundstage, "use_room")
        meshes = [o for o in scene.objects if o.type == "MESH" and o.soundstage.acoustic]
        if not meshes:
            layout.label(text="No acoustic meshes: free field", icon="INFO")
        else:
            layout.label(text=f"{len(meshes)} acoustic mesh(es)", icon="MESH_CUBE")
        row = layout.row(align=True)
        row.operator("soundstage.mark_acoustic", text="Mark Selected").acoustic = True
        row.operator("soundstage.mark_acoustic", text="Unmark").acoustic = False
        seen = []
        for o in meshes:
            for slot in o.material_slots:
                if slot.material is not None and slot.material not in seen:
                    seen.append(slot.material)
        for mat in seen:
            box = layout.box()
            box.label(text=mat.name, icon="MATERIAL")
            draw_material(box, mat)


class VIEW3D_PT_soundstage_output(SoundstageSidebar, bpy.types.Panel):
    bl_label = "Output"
    bl_parent_id = "VIEW3D_PT_soundstage"

    def draw(self, context):
        layout = self.layout
        s = context.scene.soundstage
        layout.prop(s, "format")
        if s.format == "AMBIX":
            layout.prop(s, "ambisonic_order")
        layout.prop(s, "output_dir")
        col = layout.column(align=True)
        col.prop(s, "sample_rate")
        col.prop(s, "reflection_order")
        col.prop(s, "speed_of_sound")
        layout.prop(s, "channel_base")
        if s.format in ("AMBIX", "SURROUND_51"):
            layout.label(text="Written as files only (no Sequencer strip)", icon="INFO")


# ------------------------------------------------------------------ Properties editor
class DATA_PT_soundstage_speaker(bpy.types.Panel):
    bl_label = "Soundstage"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "data"

    @classmethod
    def poll(cls, context):
        return context.object is not None and context.object.type == "SPEAKER"

    def draw(self, context):
        layout = self.layout
        level, text = exporter.source_status(context.object)
        row = layout.row()
        row.alert = level == "ERROR"
        row.label(text=text, icon=STATUS_ICONS[level])
        layout.prop(context.object.data, "volume")
        layout.prop(context.object.data, "muted")
        layout.label(text="The sound starts at the speaker's NLA sound strip", icon="INFO")


class DATA_PT_soundstage_camera(bpy.types.Panel):
    bl_label = "Soundstage Listener"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "data"

    @classmethod
    def poll(cls, context):
        return context.object is not None and context.object.type == "CAMERA"

    def draw(self, context):
        layout = self.layout
        obj, scene = context.object, context.scene
        layout.prop(obj.soundstage, "listener")
        layout.prop(obj.soundstage, "hrtf")
        is_listener = obj.name in {o.name for o in _listeners_or_none(scene)}
        name = paths.output_name(scene.name, obj.name, exporter.scene_format(scene))
        layout.label(text=f"Track: {name}" if is_listener else "Not a listener",
                     icon="SOUND" if is_listener else "DOT")


class OBJECT_PT_soundstage_acoustic(bpy.types.Panel):
    bl_label = "Soundstage"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"

    @classmethod
    def poll(cls, context):
        return context.object is not None and context.object.type == "MESH"

    def draw(self, context):
        self.layout.prop(context.object.soundstage, "acoustic", text="Acoustic (room geometry)")


class MATERIAL_PT_soundstage(bpy.types.Panel):
    bl_label = "Soundstage Acoustics"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "material"

    @classmethod
    def poll(cls, context):
        return getattr(context, "material", None) is not None

    def draw(self, context):
        draw_material(self.layout, context.material)


CLASSES = (VIEW3D_PT_soundstage, VIEW3D_PT_soundstage_listeners, VIEW3D_PT_soundstage_sources,
           VIEW3D_PT_soundstage_room, VIEW3D_PT_soundstage_output, DATA_PT_soundstage_speaker,
           DATA_PT_soundstage_camera, OBJECT_PT_soundstage_acoustic, MATERIAL_PT_soundstage)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
