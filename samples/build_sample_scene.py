"""Build the sample scene: a furnished room, a camera walk and two speakers.

    python samples/build_sample_scene.py --out samples/build/sample_room.blend

Run with the project's Python (the bpy module). Everything is made here, so
nothing is downloaded and every sound has a known origin:

* ``audio/radio.wav``: a static "radio" on the bookshelf, a synthesized melody
  of harmonic tones (fundamentals 196-392 Hz, harmonics below 2 kHz).
* ``audio/drone.wav``: a small "drone" flying across the room in front of the
  camera from its left to its right, synthesized as noise band-limited to
  3-9 kHz with a 30 Hz wing-beat flutter.

The room is 6 x 5 x 3 m: plastered walls, an oak floor, a ceiling of
fissured acoustic tiles, a carpet, a sofa, a wooden bookshelf and table, a
window and curtains. Every mesh is a closed box marked acoustic; the ceiling
uses a chosen library material, every other material is left on Auto so the
name-based guess shows in the Material tab. The camera walks 1.5 m forward,
looking along +Y; the drone keeps about 1 m ahead of it. Render settings are Cycles on
the CPU at 640 x 360 so ``--render-video`` works without a GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 48000


# --------------------------------------------------------------------------- audio
def radio(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A simple melody: G3 C4 E4 G4 ... notes of 0.25 s with four harmonics and an envelope.

    Returns
    -------
    ndarray, shape (n,), float32, peak 0.5
    """
    notes = [196.0, 261.63, 329.63, 392.0, 329.63, 261.63, 293.66, 246.94]
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    note_len = 0.25
    idx = (t // note_len).astype(int) % len(notes)
    f0 = np.asarray(notes)[idx]
    phase = 2 * np.pi * np.cumsum(f0) / rate
    local = t % note_len
    env = np.minimum(1.0, local / 0.01) * np.exp(-local / 0.12)  # pluck: 10 ms attack, decay
    x = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4)) * env
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def drone(seconds: float, rate: int = RATE, seed: int = 1) -> np.ndarray:
    """Noise band-limited to 3-9 kHz (FFT mask) with a 30 Hz flutter.

    Returns
    -------
    ndarray, shape (n,), float32, peak 0.5
    """
    n = int(round(seconds * rate))
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[(f < 3000) | (f > 9000)] = 0.0
    x = np.fft.irfft(spec, n)
    x *= 0.75 + 0.25 * np.sin(2 * np.pi * 30 * np.arange(n) / rate)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def write_audio(folder: Path, seconds: float) -> dict[str, Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fn in (("radio", radio), ("drone", drone)):
        path = folder / f"{name}.wav"
        sf.write(str(path), fn(seconds), RATE, subtype="PCM_16")
        out[name] = path
    return out


# --------------------------------------------------------------------------- scene
def _box(bpy, name, center, size, material):
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=center)
    obj = bpy.context.object
    obj.name = obj.data.name = name
    obj.scale = size
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    obj.data.materials.append(material)
    obj.soundstage.acoustic = True
    return obj


def _material(bpy, name, color, roughness=0.6, metallic=0.0):
    m = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    m.diffuse_color = (*color, 1.0)
    m.roughness, m.metallic = roughness, metallic
    if m.node_tree is None:  # Blender 4.x; 5.x always has nodes
        m.use_nodes = True
    bsdf = next(n for n in m.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    return m


def build(out: Path, seconds: float = 6.0, fps: int = 24) -> Path:
    sys.path.insert(0, str(ROOT / "headless"))
    import bpy
    import render  # headless/render.py: loads the add-on's properties outside Blender's UI

    bpy.ops.wm.read_homefile(app_template="", use_empty=True)
    render.ensure_properties(render.load_extension())
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Save first so every path below can be stored relative to the .blend.
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    audio = write_audio(out.parent / "audio", seconds)

    scene = bpy.context.scene
    scene.name = "SampleRoom"
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.frame_start, scene.frame_end = 1, int(round(seconds * fps))
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 16
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = 640, 360

    # Room shell (inside: x -3..3, y -2.5..2.5, z 0..3) as one closed box; walls 10 cm thick would add
    # nothing acoustically, so the shell is the inner surface.
    plaster = _material(bpy, "Plaster Walls", (0.85, 0.83, 0.78), roughness=0.8)
    shell = _box(bpy, "Room", (0.0, 0.0, 1.5), (6.0, 5.0, 3.0), plaster)
    oak = _material(bpy, "Oak Floor", (0.45, 0.30, 0.18), roughness=0.4)
    ceiling = _material(bpy, "Ceiling", (0.95, 0.95, 0.95), roughness=0.9)
    # A chosen library material rather than the Auto guess (which would say plasterboard).
    ceiling.soundstage.mode = "LIBRARY"
    ceiling.soundstage.library = "ceiling_fissured_tile"
    shell.data.materials.append(oak)
    shell.data.materials.append(ceiling)
    for poly in shell.data.polygons:
        poly.material_index = 1 if poly.normal.z < -0.5 else 2 if poly.normal.z > 0.5 else 0
    # Furniture: closed boxes, each on the floor or against a wall.
    _box(bpy, "Carpet", (0.0, 0.3, 0.01), (3.0, 2.0, 0.02), _material(bpy, "Carpet", (0.5, 0.1, 0.1), 1.0))
    _box(bpy, "Sofa", (-2.1, 1.0, 0.4), (0.9, 2.0, 0.8), _material(bpy, "Sofa Fabric", (0.2, 0.3, 0.5), 1.0))
    wood = _material(bpy, "Walnut Wood", (0.35, 0.22, 0.12), roughness=0.5)
    _box(bpy, "Bookshelf", (2.6, 2.0, 1.0), (0.6, 0.8, 2.0), wood)
    _box(bpy, "Table", (0.4, 1.2, 0.375), (1.2, 0.7, 0.75), wood)
    _box(bpy, "Window", (0.0, 2.48, 1.6), (1.6, 0.02, 1.2), _material(bpy, "Window Glass", (0.8, 0.9, 1.0), 0.05))
    _box(bpy, "Curtains", (0.0, -2.44, 1.4), (5.0, 0.08, 2.6), _material(bpy, "Curtains", (0.6, 0.55, 0.4), 1.0))

    # Light, so a rendered video is not black.
    light = bpy.data.objects.new("Lamp", bpy.data.lights.new("Lamp", "AREA"))
    light.data.energy, light.data.size = 400.0, 2.0
    light.location = (0.0, 0.0, 2.9)
    scene.collection.objects.link(light)

    # Camera walk: 1.5 m forward along +Y at eye height, looking along +Y.
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.data.lens = 24
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
    cam.location = (0.0, -2.0, 1.6)
    cam.keyframe_insert("location", frame=scene.frame_start)
    cam.location = (0.0, -0.5, 1.6)
    cam.keyframe_insert("location", frame=scene.frame_end)
    scene.camera = cam

    # Speakers (native Blender speakers with sounds stored relative to the .blend).
    def speaker(name, path, location):
        data = bpy.data.speakers.new(name)
        sound = bpy.data.sounds.load(str(path))
        sound.filepath = bpy.path.relpath(str(path))
        data.sound = sound
        obj = bpy.data.objects.new(name, data)
        scene.collection.objects.link(obj)
        obj.location = location
        return obj

    speaker("Radio", audio["radio"], (2.6, 2.0, 2.1))
    # The drone keeps 1 m ahead of the walking camera while crossing from its left to its right.
    flyer = speaker("Drone", audio["drone"], (-2.4, -1.0, 1.6))
    flyer.keyframe_insert("location", frame=scene.frame_start)
    flyer.location = (2.4, 0.5, 1.6)
    flyer.keyframe_insert("location", frame=scene.frame_end)

    scene.frame_set(scene.frame_start)
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "samples" / "build" / "sample_room.blend"))
    p.add_argument("--seconds", type=float, default=6.0, help="length of the animation (default 6 s)")
    p.add_argument("--fps", type=int, default=24)
    args = p.parse_args(argv)
    path = build(Path(args.out), args.seconds, args.fps)
    print(f"sample scene written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
