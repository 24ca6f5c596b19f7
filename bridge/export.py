"""Blender scene -> job documents (one per listener camera).

Blender's own terms map onto the job (DESIGN.md, "The job") like this:

* Listeners are camera objects. Cameras with ``object.soundstage.listener``
  set are listeners; when none is set, the scene camera is. Each listener gets
  its own job and its own track.
* Sources are Speaker objects: their Sound datablock is the audio, their
  volume becomes ``gain_db``, muted speakers are left out, and the first
  sound strip of their NLA tracks (which Blender creates when a speaker is
  added) gives ``start_frame``.
* The room is every mesh object with ``object.soundstage.acoustic`` set,
  evaluated (modifiers applied), in world coordinates, triangulated; each
  Blender material maps to an acoustic material (``bridge.materials``). No
  acoustic mesh means a free field.
* Animated transforms (keyframes, parenting, constraints, drivers) are sampled
  from the evaluated depsgraph at every frame of the range. The room is
  evaluated once, at the first frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import impacts
from . import materials as acoustic
from .errors import BridgeError
from .paths import sanitize

#: Engine output formats; the UI's enum identifiers map onto these.
FORMATS = ("binaural", "stereo", "ambix", "5.1")


@dataclass
class ExportedJob:
    """One listener's job, before the output path is chosen.

    Attributes
    ----------
    listener : str
        The camera object's name.
    job : dict
        The job document (DESIGN.md), without ``output.path``.
    """

    listener: str
    job: dict


@dataclass
class Export:
    jobs: list[ExportedJob]
    warnings: list[str] = field(default_factory=list)
    frame_start: int = 1
    frame_end: int = 1
    #: Impact hits still to synthesise (``bridge.impacts.PendingSynthesis``), only with ``defer_impacts``.
    pending_impacts: object = None


# --------------------------------------------------------------------------- settings access
def _settings(idblock):
    """The add-on's property group on an ID, or None when not registered."""
    return getattr(idblock, "soundstage", None)


def scene_fps(scene) -> float:
    """Frames per second as Blender plays them (fps / fps_base)."""
    fps = scene.render.fps / scene.render.fps_base
    return int(fps) if float(fps).is_integer() else float(fps)


def find_listeners(scene, name: str | None = None) -> list:
    """Listener cameras of ``scene``, in a stable (name) order.

    Raises
    ------
    BridgeError
        No camera at all, or no camera called ``name``.
    """
    cams = sorted((o for o in scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
    if name is not None:
        for o in cams:
            if o.name == name:
                return [o]
        known = ", ".join(f"'{o.name}'" for o in cams) or "none"
        raise BridgeError(f"no camera called '{name}' in scene '{scene.name}' (cameras: {known})")
    marked = [o for o in cams if getattr(_settings(o), "listener", False)]
    if marked:
        return marked
    if scene.camera is not None and scene.camera.type == "CAMERA":
        return [scene.camera]
    if cams:
        raise BridgeError(f"scene '{scene.name}' has cameras but no scene camera and none marked as listener: "
                          "set the scene camera or tick Listener on a camera")
    raise BridgeError(f"scene '{scene.name}' has no camera to listen from: "
                      "add one with Soundstage > Add Listener (the scene camera is the default listener)")


def speaker_start_frame(obj, default: int) -> int:
    """Frame where a speaker's sound starts: its first NLA sound strip, else ``default``."""
    ad = obj.animation_data
    starts = []
    if ad is not None:
        for track in ad.nla_tracks:
            if track.mute:
                continue
            for strip in track.strips:
                if strip.type == "SOUND" and not strip.mute:
                    starts.append(strip.frame_start)
    return int(round(min(starts))) if starts else int(default)


def sound_file(obj, staging_dir: Path | None) -> str:
    """Absolute path of a speaker's audio file (packed sounds are written out).

    Raises
    ------
    BridgeError
        No sound, or its file does not exist.
    """
    snd = obj.data.sound
    if snd is None:
        raise BridgeError(f"speaker '{obj.name}' has no sound: pick one in its Speaker properties "
                          "(or mute the speaker to leave it out)")
    if snd.packed_file is not None:
        if staging_dir is None:
            raise BridgeError(f"speaker '{obj.name}': sound '{snd.name}' is packed in the .blend; unpack it "
                              "(File > External Data > Unpack Resources) to export the job on its own")
        suffix = Path(snd.filepath).suffix or ".wav"
        out = Path(staging_dir) / "audio" / f"{sanitize(snd.name)}{suffix}"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(bytes(snd.packed_file.data))
        return str(out)
    path = Path(bpy.path.abspath(snd.filepath, library=snd.library))
    if not snd.filepath or not path.is_file():
        raise BridgeError(f"speaker '{obj.name}': sound file '{path}' not found (sound '{snd.name}'); "
                          "relink it in the Speaker properties")
    return str(path.resolve())


def find_sources(scene) -> tuple[list, list[str]]:
    """Speakers that will sound, and notes about those left out."""
    notes, out = [], []
    for o in sorted((o for o in scene.objects if o.type == "SPEAKER"), key=lambda o: o.name):
        if o.data.muted:
            notes.append(f"speaker '{o.name}' is muted and left out")
        elif o.data.volume <= 0.0:
            notes.append(f"speaker '{o.name}' has volume 0 and is left out")
        else:
            out.append(o)
    return out, notes


# --------------------------------------------------------------------------- transforms
def _pose(matrix) -> list[float]:
    """Row-major 16 numbers of a world matrix with scale and shear removed.

    The listener is a pose (where the head is, where it looks); a scaled
    camera must not shrink the head, so only location and rotation are kept.
    """
    from mathutils import Matrix

    loc, rot, _scale = matrix.decompose()
    m = Matrix.Translation(loc) @ rot.to_matrix().to_4x4()
    return [float(v) for row in m for v in row]


def _compact(per_frame: list[list[float]], tol: float = 1e-7):
    """One value when it never changes, else the per-frame list."""
    a = np.asarray(per_frame, dtype=float)
    if np.all(np.abs(a - a[0]) <= tol):
        return per_frame[0]
    return per_frame


def sample_transforms(scene, objects, frames: range) -> dict[str, dict]:
    """Evaluate the scene at every frame and record world matrices.

    Parameters
    ----------
    scene : bpy.types.Scene
        Must be the context scene (its depsgraph is the one evaluated).
    objects : list of bpy.types.Object
    frames : range
        Inclusive frame range as a ``range``.

    Returns
    -------
    dict
        ``{object name: {"pose": [[16 floats] per frame], "position": [[x, y, z] per frame]}}``
        in the depsgraph's evaluated state (parenting, constraints, drivers).
    """
    out = {o.name: {"pose": [], "position": []} for o in objects}
    original = (scene.frame_current, scene.frame_subframe)
    try:
        for f in frames:
            scene.frame_set(f)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for o in objects:
                mw = o.evaluated_get(depsgraph).matrix_world
                out[o.name]["pose"].append(_pose(mw))
                out[o.name]["position"].append([float(v) for v in mw.translation])
    finally:
        scene.frame_set(original[0], subframe=original[1])
    return out


# --------------------------------------------------------------------------- room
def material_spec(mat) -> tuple[object, str]:
    """The job material for a Blender material, and how it was chosen.

    Returns
    -------
    (spec, reason)
        ``spec`` is a library name or a custom ``{"absorption": ..., "scattering": ...}``.
    """
    lib = acoustic.load_library()
    if mat is None:
        return acoustic.FALLBACK, "no material"
    s = _settings(mat)
    mode = getattr(s, "mode", "AUTO")
    if mode == "CUSTOM":
        return acoustic.custom_spec(s.absorption, s.scattering, mat.name), "custom bands"
    if mode == "LIBRARY" and s.library_name:
        if lib and s.library_name not in lib:
            raise BridgeError(f"material '{mat.name}': acoustic material '{s.library_name}' is not in the "
                              "library; pick another in its Material > Soundstage panel")
        return s.library_name, "chosen"
    name, reason = acoustic.guess(mat.name, **pbr_values(mat))
    return name, f"auto: {reason}"


def pbr_values(mat) -> dict:
    """Metallic, roughness and transmission of a material's Principled BSDF (or viewport values)."""
    vals = {"metallic": float(getattr(mat, "metallic", 0.0)),
            "roughness": float(getattr(mat, "roughness", 0.5)),
            "transmission": 0.0}
    tree = getattr(mat, "node_tree", None)
    if tree is not None:
        for node in tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                for key, names in (("metallic", ("Metallic",)), ("roughness", ("Roughness",)),
                                   ("transmission", ("Transmission Weight", "Transmission"))):
                    for n in names:
                        sock = node.inputs.get(n)
                        if sock is not None and not sock.is_linked:
                            vals[key] = float(sock.default_value)
                            break
                break
    return vals


def open_edge_count(tris: np.ndarray) -> int:
    """Edges not shared by exactly two triangles (0 for a closed, manifold mesh).

    Parameters
    ----------
    tris : ndarray of int, shape (T, 3)
    """
    if len(tris) == 0:
        return 0
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    e.sort(axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return int(np.count_nonzero(counts != 2))


def export_room(scene, warnings: list[str]) -> dict:
    """The room object of the job from the acoustic meshes (at the current frame)."""
    settings = _settings(scene)
    objs = sorted((o for o in scene.objects if o.type == "MESH" and getattr(_settings(o), "acoustic", False)),
                  key=lambda o: o.name)
    if settings is not None and not settings.use_room:
        return {"type": "free_field"}
    if not objs:
        return {"type": "free_field"}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts, faces, face_mats = [], [], []
    specs, spec_index = [], {}
    offset = 0
    for o in objs:
        ev = o.evaluated_get(depsgraph)
        mesh = ev.to_mesh()
        try:
            mesh.calc_loop_triangles()
            nv, nt = len(mesh.vertices), len(mesh.loop_triangles)
            if nt == 0:
                warnings.append(f"room mesh '{o.name}' has no faces and was skipped")
                continue
            co = np.empty(nv * 3, dtype=np.float64)
            mesh.vertices.foreach_get("co", co)
            co = co.reshape(nv, 3)
            mw = np.array(ev.matrix_world, dtype=np.float64)
            world = co @ mw[:3, :3].T + mw[:3, 3]
            tri = np.empty(nt * 3, dtype=np.int64)
            mesh.loop_triangles.foreach_get("vertices", tri)
            tri = tri.reshape(nt, 3)
            mi = np.empty(nt, dtype=np.int64)
            mesh.loop_triangles.foreach_get("material_index", mi)
            if np.linalg.det(mw[:3, :3]) < 0:  # mirrored object: keep outward normals outward
                tri = tri[:, ::-1]
            n_open = open_edge_count(tri)
            if n_open:
                warnings.append(
                    f"room mesh '{o.name}' is not closed ({n_open} open edges): baked as it is, so sound "
                    "escapes through the gaps; close it (Merge by Distance, Fill Holes) for a sealed room")
            # One acoustic material per Blender material slot used by this object.
            slot_mats = [s.material for s in o.material_slots] or [None]
            local = np.empty(len(slot_mats), dtype=np.int64)
            for i, mat in enumerate(slot_mats):
                key = mat.name if mat is not None else None
                if key not in spec_index:
                    spec, _why = material_spec(mat)
                    spec_index[key] = len(specs)
                    specs.append(spec)
                local[i] = spec_index[key]
            mi = np.clip(mi, 0, len(slot_mats) - 1)
            verts.append(world)
            faces.append(tri + offset)
            face_mats.append(local[mi])
            offset += nv
        finally:
            ev.to_mesh_clear()
    if not faces:
        return {"type": "free_field"}
    return {
        "type": "mesh",
        "vertices": np.round(np.concatenate(verts), 6).tolist(),
        "faces": np.concatenate(faces).tolist(),
        "face_materials": np.concatenate(face_mats).tolist(),
        "materials": specs,
    }


# --------------------------------------------------------------------------- jobs
def scene_format(scene) -> str:
    s = _settings(scene)
    return FORMAT_FROM_ENUM.get(getattr(s, "format", "BINAURAL"), "binaural")


FORMAT_FROM_ENUM = {"BINAURAL": "binaural", "STEREO": "stereo", "AMBIX": "ambix", "SURROUND_51": "5.1"}
ENUM_FROM_FORMAT = {v: k for k, v in FORMAT_FROM_ENUM.items()}


def frame_range(scene, frames: tuple[int, int] | None) -> tuple[int, int]:
    a, b = frames if frames is not None else (scene.frame_start, scene.frame_end)
    if b < a:
        raise BridgeError(f"frame range {a}-{b} is empty: the end comes before the start")
    return int(a), int(b)


def export_scene(scene, *, fmt: str | None = None, frames: tuple[int, int] | None = None,
                 listener: str | None = None, staging_dir: Path | None = None,
                 engine: tuple[str, str] | None = None, defer_impacts: bool = False) -> Export:
    """Build one job per listener camera of ``scene``.

    Parameters
    ----------
    scene : bpy.types.Scene
        Must be the context scene.
    fmt : str, optional
        Output format (default: the scene's Soundstage setting).
    frames : (int, int), optional
        Inclusive frame range (default: the scene's).
    listener : str, optional
        Only the camera with this name.
    staging_dir : Path, optional
        Where packed sounds and synthesised impact hits are written out.
    engine : (mode, python), optional
        How impact hits are synthesised (``bridge.impacts``; default: the add-on preferences).
    defer_impacts : bool
        Gather impact hits but leave their synthesis to the caller
        (``Export.pending_impacts``), so a bake can run it off the main thread.

    Returns
    -------
    Export
        Jobs without ``output.path`` (the pipeline chooses it) and warnings.

    Raises
    ------
    BridgeError
        Anything the user has to fix first (no camera, a speaker without a
        sound, a missing sound file, no sources...).
    """
    fmt = fmt or scene_format(scene)
    if fmt not in FORMATS:
        raise BridgeError(f"unknown output format '{fmt}'; use one of {', '.join(FORMATS)}")
    a, b = frame_range(scene, frames)
    settings = _settings(scene)
    warnings: list[str] = []
    cams = find_listeners(scene, listener)
    speakers, notes = find_sources(scene)
    warnings.extend(notes)
    hits = impacts.impact_objects(scene)
    if not speakers and not hits:
        raise BridgeError(f"scene '{scene.name}' has no sound source: add a Speaker with a sound "
                          "(Soundstage > Add Source) or an impact point (Soundstage > Impacts)")
    audio = {o.name: sound_file(o, staging_dir) for o in speakers}
    hrtfs = {}
    for c in cams:
        h = getattr(_settings(c), "hrtf", "") or ""
        if h:
            p = Path(bpy.path.abspath(h))
            if not p.is_file():
                raise BridgeError(f"camera '{c.name}': HRTF file '{p}' not found; fix it in the camera's "
                                  "Soundstage panel or clear it to use the default")
            hrtfs[c.name] = str(p.resolve())
        else:
            hrtfs[c.name] = "default"

    track = sample_transforms(scene, cams + speakers + hits, range(a, b + 1))
    original = scene.frame_current
    try:
        scene.frame_set(a)
        room = export_room(scene, warnings)
    finally:
        scene.frame_set(original)

    sources = []
    for o in speakers:
        gain_db = 20.0 * math.log10(o.data.volume)
        sources.append({
            "name": o.name,
            "audio": audio[o.name],
            "position": _compact(track[o.name]["position"]),
            "gain_db": round(gain_db, 4),
            "start_frame": speaker_start_frame(o, scene.frame_start),
        })
    # Impact points: each hit is synthesised (bridge.impacts) and baked like a speaker.
    hit_sources = impacts.export_impacts(
        scene, (a, b), track, staging_dir, warnings, sample_rate=int(getattr(settings, "sample_rate", 48000)),
        fps=scene_fps(scene), mode=engine[0] if engine else None, python=engine[1] if engine else None,
        defer=defer_impacts)
    pending = None
    if defer_impacts:
        hit_sources, pending = hit_sources
    sources.extend(hit_sources)
    if not sources:
        raise BridgeError(f"scene '{scene.name}': nothing sounds in frames {a}-{b} (every impact point is "
                          "outside the range); move the hits into the range or widen it")
    jobs = []
    for c in cams:
        job = {
            "version": 1,
            "name": f"{scene.name}/{c.name}",
            "sample_rate": int(getattr(settings, "sample_rate", 48000)),
            "fps": scene_fps(scene),
            "frame_start": a,
            "frame_end": b,
            "speed_of_sound": float(getattr(settings, "speed_of_sound", 343.0)),
            "room": room,
            "listener": {"name": c.name, "matrix_world": _compact(track[c.name]["pose"]), "hrtf": hrtfs[c.name]},
            "sources": sources,
            "output": {"format": fmt, "ambisonic_order": int(getattr(settings, "ambisonic_order", 1))},
        }
        if settings is not None:
            job["render"] = {"reflection_order": int(settings.reflection_order)}
        jobs.append(ExportedJob(c.name, job))
    return Export(jobs, warnings, a, b, pending_impacts=pending)


# --------------------------------------------------------------------------- UI helpers
def source_status(obj) -> tuple[str, str]:
    """A speaker's state for the UI: ``(level, text)``, level one of OK, MUTED, ERROR."""
    spk = obj.data
    if spk.muted:
        return "MUTED", "muted: left out of the bake"
    if spk.volume <= 0.0:
        return "MUTED", "volume 0: left out of the bake"
    snd = spk.sound
    if snd is None:
        return "ERROR", "no sound: pick one"
    if snd.packed_file is None:
        path = Path(bpy.path.abspath(snd.filepath, library=snd.library))
        if not snd.filepath or not path.is_file():
            return "ERROR", f"file not found: {path.name or snd.name}"
    start = speaker_start_frame(obj, bpy.context.scene.frame_start if bpy.context.scene else 1)
    return "OK", f"{snd.name}, from frame {start}, {20 * math.log10(spk.volume):+.1f} dB"


def material_summary(mat) -> str:
    """One line saying which acoustic material a Blender material maps to and why."""
    try:
        spec, why = material_spec(mat)
    except BridgeError as e:
        return str(e)
    if isinstance(spec, dict):
        a = spec["absorption"]
        return f"custom: absorption {a['125']:.2f} at 125 Hz .. {a['8000']:.2f} at 8 kHz"
    return f"{spec} ({why})"
