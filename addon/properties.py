"""Soundstage's data on Blender datablocks.

* ``Scene.soundstage``: output folder, format, quality, timeline channel.
* ``Object.soundstage``: ``acoustic`` (a mesh is room geometry), ``listener``,
  ``hrtf``, ``acoustics`` and ``field_model`` (cameras: simulator or learned field).
* ``Material.soundstage``: how the material sounds (auto guess, library
  material, or custom octave bands).
* ``WindowManager.soundstage_bake``: the running bake's progress (not saved).

Everything is stored as ordinary ID properties, so a .blend keeps its settings
when opened without the add-on, and ``headless/render.py`` reads them back
after registering this module alone.
"""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, IntProperty,
                       PointerProperty, StringProperty)

from ..bridge import materials as acoustic

FORMAT_ITEMS = [
    ("BINAURAL", "Binaural", "Two channels for headphones, rendered with HRTFs", 0),
    ("STEREO", "Stereo", "Two channels, amplitude panned for loudspeakers", 1),
    ("AMBIX", "AmbiX", "Ambisonics, ACN order and SN3D normalisation (VR and 360 video)", 2),
    ("SURROUND_51", "5.1", "L R C LFE Ls Rs at ITU-R BS.775 angles", 3),
]

ACOUSTICS_ITEMS = [
    ("SIMULATOR", "Simulator", "Bake with the room simulator (geometry, materials, HRTF)", 0),
    ("FIELD", "Learned Field", "Bake with an acoustic field trained on a recording walk (binaural only)", 1),
]

MODE_ITEMS = [
    ("AUTO", "Auto", "Guess from the material's name and shading (shown below)", 0),
    ("LIBRARY", "Library", "A measured material from the library", 1),
    ("CUSTOM", "Custom", "Your own absorption per octave band", 2),
]


def _library_items():
    lib = acoustic.load_library()
    if not lib:
        return [("NONE", "No library", "soundstage/data/materials.json is missing", 0)]
    items = []
    for i, m in enumerate(sorted(lib.values(), key=lambda m: (m.category, m.name))):
        a = ", ".join(f"{x:.2f}" for x in m.absorption)
        desc = f"{m.category}: {m.description} (absorption 125 Hz-8 kHz: {a})".strip(": ")
        items.append((m.name, m.name.replace("_", " "), desc, i))
    return items


# Built once: Blender keeps references to these strings, so they must live as
# long as the class (a fresh list per call can crash the UI).
_LIBRARY_ITEMS = _library_items()
_LIBRARY_INDEX = {item[0]: item[3] for item in _LIBRARY_ITEMS}


def _get_library(self):
    # The choice is stored by name (library_name), not by enum index, so a
    # library that grows or reorders never changes what a saved file means.
    return _LIBRARY_INDEX.get(self.library_name, 0)


def _set_library(self, value):
    for ident, _label, _desc, number in _LIBRARY_ITEMS:
        if number == value:
            self.library_name = "" if ident == "NONE" else ident
            return


class SoundstageMaterialSettings(bpy.types.PropertyGroup):
    mode: EnumProperty(name="Acoustic Material", items=MODE_ITEMS, default="AUTO",
                       description="How this material absorbs and scatters sound")
    library_name: StringProperty(name="Library Material", default="",
                                 description="Name of the chosen library material")
    library: EnumProperty(name="Library Material", items=_LIBRARY_ITEMS, get=_get_library, set=_set_library,
                          description="Measured absorption from the material library")
    absorption: FloatVectorProperty(name="Absorption", size=7, min=0.0, max=1.0, default=(0.1,) * 7,
                                    precision=3, subtype="NONE",
                                    description="Energy absorption per octave band: 125, 250, 500, 1k, 2k, 4k, 8k Hz")
    scattering: FloatProperty(name="Scattering", min=0.0, max=1.0, default=0.1,
                              description="Fraction of reflected energy scattered diffusely")


class SoundstageObjectSettings(bpy.types.PropertyGroup):
    acoustic: BoolProperty(name="Acoustic", default=False,
                           description="This mesh is room geometry: walls, floor, furniture reflect sound")
    listener: BoolProperty(name="Listener", default=False,
                           description="Bake a track heard from this camera (when no camera is ticked, "
                                       "the scene camera is the listener)")
    hrtf: StringProperty(name="HRTF", subtype="FILE_PATH", default="",
                         description="SOFA file with head-related impulse responses (empty: the built-in MIT KEMAR)")
    # Here rather than in addon/fields.py: headless/render.py registers this module alone and must honour it.
    acoustics: EnumProperty(name="Acoustics", items=ACOUSTICS_ITEMS, default="SIMULATOR",
                            description="What this listener's bake hears: the room simulator or a learned field")
    field_model: StringProperty(name="Field Model", subtype="FILE_PATH", default="",
                                description="Model file (.pt) of a field trained with Soundstage > Learned Field "
                                            "or `soundstage field train`")


class SoundstageSceneSettings(bpy.types.PropertyGroup):
    output_dir: StringProperty(name="Output Folder", subtype="DIR_PATH", default="//soundstage/",
                               description="Folder for baked tracks; // means beside the .blend file")
    format: EnumProperty(name="Format", items=FORMAT_ITEMS, default="BINAURAL",
                         description="Channel layout of the baked track")
    ambisonic_order: IntProperty(name="Ambisonic Order", min=1, max=3, default=1,
                                 description="AmbiX order (4, 9 or 16 channels)")
    sample_rate: IntProperty(name="Sample Rate", min=8000, max=192000, default=48000,
                             description="Sample rate of the baked track, Hz")
    speed_of_sound: FloatProperty(name="Speed of Sound", min=1.0, max=10000.0, default=343.0, unit="VELOCITY",
                                  description="Metres per second (343 m/s is air at 20 degrees C)")
    reflection_order: IntProperty(name="Reflection Order", min=0, max=3, default=2,
                                  description="Wall reflections rendered one by one; later sound is the reverb tail")
    use_room: BoolProperty(name="Room Acoustics", default=True,
                           description="Use the acoustic meshes as the room (off: free field, direct sound only)")
    channel_base: IntProperty(name="First Channel", min=1, max=128, default=30,
                              description="Soundstage's strips go on free Sequencer channels from this one up")


class SoundstageBakeState(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    fraction: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    last_result: StringProperty(default="")


CLASSES = (SoundstageMaterialSettings, SoundstageObjectSettings, SoundstageSceneSettings, SoundstageBakeState)

_POINTERS = (
    (bpy.types.Material, "soundstage", SoundstageMaterialSettings),
    (bpy.types.Object, "soundstage", SoundstageObjectSettings),
    (bpy.types.Scene, "soundstage", SoundstageSceneSettings),
    (bpy.types.WindowManager, "soundstage_bake", SoundstageBakeState),
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    for owner, attr, cls in _POINTERS:
        setattr(owner, attr, PointerProperty(type=cls))


def unregister():
    for owner, attr, _cls in reversed(_POINTERS):
        if hasattr(owner, attr):
            delattr(owner, attr)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
