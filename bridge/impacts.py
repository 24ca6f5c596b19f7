"""Impact points in Blender: click, preview, bake as sources, and locate a recorded hit.

An **impact point** is an Empty (single arrow along the surface normal) with
``object.soundstage_impact.is_impact`` set. It stores the hit's ``target``
object, ``force`` (N), ``material`` (``AUTO``: the target's impact material;
else a name of the engine's impact material table), ``seed``, ``gain_db``,
``duration`` and, for splat targets, ``patch_radius``. **When** it is hit is
keyed: every keyframe of its custom property ``soundstage_hit`` is one hit at
that frame (the click keys it at the current frame), so hits show in the
Timeline and Dope Sheet and are re-timed by dragging the key, or with the
``frame`` field (which moves the keys). Without keys, ``frame_value`` is the frame.
Where it is hit is the Empty's world position at that frame: move it, parent it
(the click parents it to the target, so it follows the object) or duplicate it.

Mesh objects carry their own impact ``material`` in the same property group
(``AUTO``: guessed from the Blender material covering most of the surface, or
from the object's name when it has none, with the guesser's reason).

Bakes: ``export_impacts`` synthesises each hit (mono pressure at 1 m, Pa,
the engine's "level 1 at 1 m" source convention) into a WAV in the bake's
staging folder and adds it to the job as a source at the Empty's position
(sampled per frame like a speaker) starting at the hit's frame, so every hit is
rendered through the room, the HRTF and the moving listener like any source.

The engine work runs through ``bridge.impact_engine``: in this process when the
engine imports here, otherwise in the engine's environment (real Blender's
Python has no SciPy), in one long-lived worker process (``WorkerServer``) so
that a click does not pay the engine's start-up each time.

Settings are read through RNA when the add-on's property groups are registered,
and straight from the stored ID properties otherwise (``headless/render.py``
registers only ``addon.properties``), so headless bakes include impact points.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import bpy
import numpy as np

from . import impact_engine, runner
from . import splats as splat_bridge
from .errors import BridgeError
from .paths import sanitize

#: Property group names on Object and Scene (registered by ``addon.impacts``).
OBJECT_PROP = "soundstage_impact"
SCENE_PROP = "soundstage_impacts"
#: The keyed custom property whose keyframes are the hits.
HIT_KEY = "soundstage_hit"
HIT_PATH = f'["{HIT_KEY}"]'
#: Colour attribute painted by ``locate_hit``.
HEAT_ATTRIBUTE = "soundstage_heat"
#: Collection new impact Empties go into.
COLLECTION = "Soundstage Impacts"
#: ``material`` value meaning "the target's setting" (impacts) or "guess" (objects).
AUTO = "AUTO"

#: Defaults of the Object property group (``addon.impacts.SoundstageImpactSettings``); the raw
#: reader fills unset values from here, so both must agree (a test checks it).
IMPACT_DEFAULTS = {"is_impact": False, "target": None, "force": 20.0, "frame_value": 1, "material_name": AUTO,
                   "seed": 0, "gain_db": 0.0, "duration": 2.0, "patch_radius": 0.1, "notes": ""}
#: Defaults of the Scene property group (``addon.impacts.SoundstageImpactSceneSettings``).
SCENE_DEFAULTS = {"budget": 3000, "preview_spatial": True, "preview_play": True, "locate_result": "",
                  "last_preview": ""}

GUESS_PATH = runner.EXT_ROOT / "soundstage" / "impact" / "guess.py"


# --------------------------------------------------------------------------- the guesser and the table
def _load_guess():
    """``soundstage/impact/guess.py`` loaded from its file.

    It is pure Python (``re``, ``colorsys``), but importing it as
    ``soundstage.impact.guess`` would run the package's ``__init__``, which needs
    SciPy: real Blender's Python has none. So the add-on loads the file alone.
    """
    spec = importlib.util.spec_from_file_location("_soundstage_impact_guess", GUESS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_guess = _load_guess()


def material_table() -> list[tuple[str, str]]:
    """``[(name, description)]`` of the engine's impact materials, sorted by name.

    From ``soundstage.impact.materials`` when the engine imports here (with
    density, stiffness and loss factor); otherwise the names the guesser can
    return (the same set: ``tests/test_addon_impacts.py`` checks it).
    """
    try:
        from soundstage.impact.materials import MATERIALS

        return [(m.name, f"{m.name}: {m.density:.0f} kg/m^3, E {m.youngs_modulus / 1e9:g} GPa, "
                         f"loss factor {m.loss_factor:g}") for m in sorted(MATERIALS.values(), key=lambda m: m.name)]
    except Exception:  # no SciPy (real Blender): names only
        return [(n, n) for n in sorted(set(_guess.KEYWORDS.values()))]


MATERIAL_TABLE = material_table()
MATERIAL_NAMES = tuple(n for n, _ in MATERIAL_TABLE)


def guess_material(name, metallic=0.0, roughness=0.5, transmission=0.0, base_color=(0.8, 0.8, 0.8)):
    """The engine's ``guess_material`` (``(material, reason)``), usable without SciPy."""
    return _guess.guess_material(name, metallic, roughness, transmission, base_color)


# --------------------------------------------------------------------------- settings (registered or raw)
def _raw_group(idblock, attr: str) -> dict:
    """Stored values of a property group when it is not registered (unset values are absent).

    Blender 5 keeps ``bpy.props`` values apart from user custom properties
    (``bl_system_properties_get``); Blender 4 keeps them among the ID's own.
    """
    getter = getattr(idblock, "bl_system_properties_get", None)
    holder = getter() if getter is not None else idblock
    if holder is None:
        return {}
    group = holder.get(attr)
    if group is None or not hasattr(group, "keys"):
        return {}
    return {k: group[k] for k in group.keys()}


def read_settings(idblock, attr: str, defaults: dict) -> dict:
    """All of ``defaults``' keys read from the property group ``attr`` of ``idblock``."""
    rna = getattr(idblock, attr, None)
    if rna is not None and hasattr(rna, "bl_rna"):
        return {k: getattr(rna, k) for k in defaults}
    raw = _raw_group(idblock, attr)
    out = dict(defaults)
    for k in defaults:
        if k in raw:
            v = raw[k]
            out[k] = bool(v) if isinstance(defaults[k], bool) else v
    return out


def impact_settings(obj) -> dict:
    return read_settings(obj, OBJECT_PROP, IMPACT_DEFAULTS)


def scene_settings(scene) -> dict:
    return read_settings(scene, SCENE_PROP, SCENE_DEFAULTS)


def is_impact(obj) -> bool:
    return obj is not None and obj.type == "EMPTY" and bool(impact_settings(obj)["is_impact"])


def impact_objects(scene) -> list:
    """The scene's impact Empties, by name."""
    return sorted((o for o in scene.objects if is_impact(o)), key=lambda o: o.name)


# --------------------------------------------------------------------------- timing (keys)
def _fcurves(obj):
    """The F-curves of an object's own action (Blender 4.4+ layered actions or the older list)."""
    ad = obj.animation_data
    if ad is None or ad.action is None:
        return []
    slot = getattr(ad, "action_slot", None)
    if slot is not None:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(ad.action, slot)
        return list(bag.fcurves) if bag is not None else []
    return list(ad.action.fcurves)


def _hit_curve(obj):
    for fc in _fcurves(obj):
        if fc.data_path == HIT_PATH:
            return fc
    return None


def hit_frames(obj) -> list[int]:
    """The frames ``obj`` is hit at: one per key of ``soundstage_hit``, else ``[frame_value]``."""
    fc = _hit_curve(obj)
    if fc is not None and len(fc.keyframe_points):
        return sorted({int(round(k.co[0])) for k in fc.keyframe_points})
    return [int(impact_settings(obj)["frame_value"])]


def key_hit(obj, frame: int) -> None:
    """Key a hit of ``obj`` at ``frame``."""
    obj[HIT_KEY] = 1.0
    obj.keyframe_insert(HIT_PATH, frame=float(frame))
    fc = _hit_curve(obj)
    if fc is not None:
        for k in fc.keyframe_points:  # a hit is an instant, not a ramp
            k.interpolation = "CONSTANT"


def set_hit_frame(obj, frame: int) -> None:
    """Re-time: move the hit keys so that the first is at ``frame`` (key it there if it has none)."""
    frame = int(frame)
    fc = _hit_curve(obj)
    if fc is None or not len(fc.keyframe_points):
        key_hit(obj, frame)
        return
    delta = frame - min(k.co[0] for k in fc.keyframe_points)
    if delta:
        # Last first when moving right (and first first when moving left) so keys never cross.
        for k in sorted(fc.keyframe_points, key=lambda k: k.co[0], reverse=delta > 0):
            k.co[0] += delta
            k.handle_left[0] += delta
            k.handle_right[0] += delta
        fc.update()


# --------------------------------------------------------------------------- materials
def _principled(mat):
    tree = getattr(mat, "node_tree", None)
    if tree is not None:
        for node in tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                return node
    return None


def material_appearance(mat) -> dict:
    """Guesser inputs of a Blender material: name, metallic, roughness, transmission, linear base colour."""
    from .export import pbr_values

    out = {"name": mat.name, **pbr_values(mat), "base_color": tuple(mat.diffuse_color)[:3]}
    node = _principled(mat)
    if node is not None:
        sock = node.inputs.get("Base Color")
        if sock is not None and not sock.is_linked:
            out["base_color"] = tuple(sock.default_value)[:3]
    return out


def dominant_material(obj):
    """The Blender material covering most of a mesh's surface (None when it has none)."""
    slots = [s.material for s in obj.material_slots]
    if not any(m is not None for m in slots):
        return None
    if len(slots) == 1 or obj.type != "MESH" or not len(obj.data.polygons):
        return next(m for m in slots if m is not None)
    n = len(obj.data.polygons)
    area, index = np.empty(n), np.empty(n, np.int64)
    obj.data.polygons.foreach_get("area", area)
    obj.data.polygons.foreach_get("material_index", index)
    per_slot = np.bincount(np.clip(index, 0, len(slots) - 1), weights=area, minlength=len(slots))
    for i in np.argsort(-per_slot):
        if slots[i] is not None:
            return slots[i]
    return None


def _splat_mean_color(obj):
    a = obj.data.attributes.get("splat_color")
    n = len(obj.data.vertices)
    if a is None or n == 0:
        return None
    buf = np.empty(n * 4, np.float32)
    a.data.foreach_get("color", buf)
    return tuple(float(c) for c in buf.reshape(n, 4)[:, :3].mean(axis=0))


def object_appearance(obj) -> tuple[dict, str]:
    """Guesser inputs for an object and what they come from (for the reason shown to the user)."""
    if splat_bridge.is_splat_object(obj):
        color = _splat_mean_color(obj) or (0.8, 0.8, 0.8)
        return ({"name": obj.name, "metallic": 0.0, "roughness": 0.5, "transmission": 0.0, "base_color": color},
                "splats: from the object name and the mean splat colour")
    mat = dominant_material(obj) if obj.type == "MESH" else None
    if mat is None:
        return ({"name": obj.name, "metallic": 0.0, "roughness": 0.5, "transmission": 0.0,
                 "base_color": (0.8, 0.8, 0.8)}, f"no material: from the object name '{obj.name}'")
    return material_appearance(mat), f"material '{mat.name}'"


def object_material(obj) -> tuple[str, str]:
    """An object's impact material and why: ``(name, reason)``.

    The object's ``material`` setting when it names a table entry, else the
    guess from its appearance (``object_appearance``) with the guesser's reason.
    """
    chosen = impact_settings(obj)["material_name"]
    if chosen in MATERIAL_NAMES:
        return chosen, "chosen"
    appearance, source = object_appearance(obj)
    name, reason = guess_material(**appearance)
    return name, f"auto ({source}): {reason}"


def impact_material(empty) -> tuple[str, str]:
    """The material an impact point uses: its own choice, else its target's (``object_material``)."""
    s = impact_settings(empty)
    if s["material_name"] in MATERIAL_NAMES:
        return s["material_name"], "chosen for this impact"
    target = s["target"]
    if target is None:
        return "", "no target object"
    name, reason = object_material(target)
    return name, f"from '{target.name}': {reason}"


# --------------------------------------------------------------------------- ray casts
def raycast(scene, origin, direction, *, depsgraph=None, mode: str = "auto", python: str = "") -> dict | None:
    """The nearest surface a world ray meets: meshes (``Scene.ray_cast``) and visible splat objects.

    Returns
    -------
    dict or None
        ``point`` (3,), ``normal`` (3,) unit, facing the ray's origin, ``distance``,
        ``object`` (the original object), ``kind`` ("mesh" or "splats"); None for a miss.
    """
    from mathutils import Vector

    o = np.asarray(origin, np.float64).reshape(3)
    d = np.asarray(direction, np.float64).reshape(3)
    if not (np.all(np.isfinite(o)) and np.all(np.isfinite(d)) and np.linalg.norm(d) > 0):
        raise BridgeError("the ray needs a finite origin and a non-zero direction")
    d = d / np.linalg.norm(d)
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    best = None
    start = o.copy()
    for _ in range(16):
        ok, loc, nrm, _index, obj, _m = scene.ray_cast(depsgraph, Vector(start.tolist()), Vector(d.tolist()))
        if not ok or obj is None or not _is_room_proxy(getattr(obj, "original", obj)):
            break
        # A room fitted to splats stands in for walls the splats already show: look through it.
        start = np.array(loc, np.float64) + 1e-4 * d
    if ok and obj is not None:
        p, n = np.array(loc, np.float64), np.array(nrm, np.float64)
        n /= max(np.linalg.norm(n), 1e-12)
        if n @ d > 0:  # hit from behind (inside a room, a back face): the side facing the ray
            n = -n
        best = {"point": p, "normal": n, "distance": float(np.linalg.norm(p - o)),
                "object": getattr(obj, "original", obj), "kind": "mesh"}
    splat_objs = [s for s in splat_bridge.splat_objects(scene) if s.visible_get()]
    if splat_objs:
        hit = splat_bridge.raycast_scene(splat_objs, o, d, mode=mode, python=python)
        if hit is not None and (best is None or hit["distance"] < best["distance"]):
            best = {"point": np.asarray(hit["point"]), "normal": np.asarray(hit["normal"]),
                    "distance": hit["distance"], "object": scene.objects[hit["object"]], "kind": "splats"}
    return best


def _is_room_proxy(obj) -> bool:
    """A room made by the splat tools (``Room from Splats`` / ``Room from Outline``): not a thing to hit."""
    return splat_bridge.ROOM_PROP in obj.keys()


# --------------------------------------------------------------------------- impact points
def _impacts_collection(scene):
    coll = bpy.data.collections.get(COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION)
    if coll.name not in {c.name for c in scene.collection.children_recursive}:
        scene.collection.children.link(coll)
    return coll


def _object_size(obj) -> float:
    dims = np.asarray(obj.dimensions, np.float64)
    return float(np.linalg.norm(dims)) if np.all(np.isfinite(dims)) else 1.0


def create_impact(scene, hit: dict, *, frame: int, force: float = 20.0, seed: int | None = None,
                  parent: bool = True):
    """An impact Empty at a ray-cast hit, its arrow along the normal, keyed at ``frame``.

    Parameters
    ----------
    scene : bpy.types.Scene
    hit : dict
        ``raycast``'s result.
    frame : int
        The hit's frame (keyed).
    force : float
        Peak contact force, N.
    seed : int, optional
        Variation seed (default: the number of impacts already in the file, so
        hits differ slightly, as real ones do).
    parent : bool
        Parent the Empty to the target (keeping its place), so it follows the object.

    Returns
    -------
    bpy.types.Object
    """
    from mathutils import Matrix, Vector

    if not hasattr(bpy.types.Object, OBJECT_PROP):
        raise BridgeError("the Soundstage add-on is not registered: enable it to add impact points")
    target = hit["object"]
    empty = bpy.data.objects.new(f"Impact.{target.name}", None)
    empty.empty_display_type = "SINGLE_ARROW"
    empty.empty_display_size = float(np.clip(0.15 * _object_size(target), 0.02, 0.5))
    empty.show_in_front = True
    _impacts_collection(scene).objects.link(empty)
    rot = Vector((0.0, 0.0, 1.0)).rotation_difference(Vector(np.asarray(hit["normal"], float).tolist()))
    world = Matrix.Translation(Vector(np.asarray(hit["point"], float).tolist())) @ rot.to_matrix().to_4x4()
    if parent and abs(target.matrix_world.determinant()) > 1e-12:
        empty.parent = target
        empty.matrix_parent_inverse = target.matrix_world.inverted()
    empty.matrix_world = world
    s = getattr(empty, OBJECT_PROP)
    s.is_impact = True
    s.target = target
    s.force = float(force)
    s.frame_value = int(frame)
    s.seed = len(impact_objects(scene)) if seed is None else int(seed)
    key_hit(empty, frame)
    return empty


def _evaluated_pose(obj, depsgraph) -> np.ndarray:
    return np.array(obj.evaluated_get(depsgraph).matrix_world, dtype=np.float64)


def mesh_arrays(obj, depsgraph) -> dict:
    """An object's evaluated geometry, triangulated, in its own frame.

    Returns
    -------
    dict
        ``vertices`` (V, 3) float64 and ``faces`` (F, 3) int64.
    """
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    try:
        mesh.calc_loop_triangles()
        nv, nt = len(mesh.vertices), len(mesh.loop_triangles)
        co = np.empty(nv * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
        tri = np.empty(nt * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tri)
    finally:
        ev.to_mesh_clear()
    return {"vertices": co.reshape(nv, 3), "faces": tri.reshape(nt, 3)}


def _target_of(empty, scene):
    s = impact_settings(empty)
    target = s["target"]
    if target is None:
        raise BridgeError(f"impact '{empty.name}' has no target object (deleted?): pick one in Soundstage > "
                          "Impacts or delete the impact")
    if scene.objects.get(target.name) is not target:
        raise BridgeError(f"impact '{empty.name}': its target '{target.name}' is not in scene '{scene.name}'; "
                          "link it to the scene or pick another target")
    if not (target.type == "MESH" or splat_bridge.is_splat_object(target)):
        raise BridgeError(f"impact '{empty.name}': target '{target.name}' is a {target.type.lower()}, not a mesh; "
                          "pick a mesh object")
    return target, s


def hit_request(empty, scene, depsgraph, index: int, arrays: dict, *, frame: int | None = None,
                duration: float | None = None, sample_rate: int = 48000, out: str | None = None,
                seed_offset: int = 0) -> dict:
    """The engine's description of one hit of ``empty`` as the scene is evaluated now.

    Adds the target's geometry to ``arrays`` under ``v{index}``/``f{index}``
    (meshes) or ``p{index}``/``o{index}`` (splats).

    Raises
    ------
    BridgeError
        No target, a target outside the scene or not a mesh.
    """
    target, s = _target_of(empty, scene)
    m_empty = _evaluated_pose(empty, depsgraph)
    normal = m_empty[:3, 2] / max(np.linalg.norm(m_empty[:3, 2]), 1e-12)
    material, reason = impact_material(empty)
    req = {"name": f"impact '{empty.name}' on '{target.name}'",
           "matrix": _evaluated_pose(target, depsgraph).ravel().tolist(), "point": m_empty[:3, 3].tolist(), "normal": normal.tolist(), "material": material,
           "material_reason": reason, "force": float(s["force"]),
           "duration": float(s["duration"] if duration is None else duration),
           "seed": int(s["seed"]) + seed_offset, "out": out, "frame": frame}
    if splat_bridge.is_splat_object(target):
        a = splat_bridge.object_arrays(target, ("positions", "opacities"))
        arrays[f"p{index}"], arrays[f"o{index}"] = a["positions"], a["opacities"]
        req.update(geometry="splats", patch_radius=float(s["patch_radius"]))
    else:
        geo = mesh_arrays(target, depsgraph)
        arrays[f"v{index}"], arrays[f"f{index}"] = geo["vertices"], geo["faces"]
        req["geometry"] = "mesh"
    return req


# --------------------------------------------------------------------------- engine calls
_engine_cache: dict = {}


def engine_importable() -> bool:
    """True when ``soundstage.impact`` (SciPy, trimesh) imports in this Python."""
    if "ok" not in _engine_cache:
        try:
            import soundstage.impact  # noqa: F401

            _engine_cache["ok"] = True
        except Exception:
            _engine_cache["ok"] = False
    return _engine_cache["ok"]


def engine_settings() -> tuple[str, str]:
    """``(mode, python)`` from the enabled add-on's preferences, else ``("auto", "")``."""
    addon = bpy.context.preferences.addons.get(__package__.rpartition(".")[0])
    p = getattr(addon, "preferences", None) if addon is not None else None
    if p is None:
        return "auto", ""
    return ({"AUTO": "auto", "WORKER": "worker", "INPROCESS": "inprocess"}.get(getattr(p, "engine_mode", "AUTO"),
                                                                              "auto"),
            getattr(p, "engine_python", ""))


def _worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(runner.EXT_ROOT)  # bridge.impact_engine and the add-on's own engine first
    return env


_SERVE_ARGS = ["-c", "import sys; from bridge.impact_engine import serve; sys.exit(serve())"]


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class WorkerServer:
    """A long-lived ``bridge.impact_engine.serve`` process in the engine's environment.

    Requests run one after the other; each gets an id, and its reply line
    (``{"id", "status", "message"}``) is picked up by a reader thread. One
    server per engine Python is kept (``server``) and stopped by ``stop_servers``
    (add-on unregister) or when Blender quits (its stdin closes).
    """

    def __init__(self, python: Path):
        self.python = python
        self._lock = threading.Lock()
        self._replies: dict = {}
        self._next = 0
        self._stderr: list[str] = []
        try:
            self.proc = subprocess.Popen([str(python), *_SERVE_ARGS], env=_worker_env(), cwd=tempfile.gettempdir(),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, encoding="utf-8", errors="replace", bufsize=1)
        except OSError as e:
            raise BridgeError(f"cannot start the engine with {python} ({e.strerror or e}); "
                              "fix Engine Python in the Soundstage add-on preferences") from None
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self._replies[str(reply.get("id"))] = reply

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line.rstrip()])[-20:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, request_path: Path) -> str:
        with self._lock:
            self._next += 1
            rid = str(self._next)
        try:
            self.proc.stdin.write(f"{rid} {request_path}\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            raise BridgeError(f"the engine worker ({self.python}) has stopped: {self.stderr_tail()}") from None
        return rid

    def reply(self, rid: str):
        """The reply for ``rid``, or None while it runs (``BridgeError`` if the worker died)."""
        with self._lock:
            r = self._replies.pop(rid, None)
        if r is None and not self.alive():
            with self._lock:  # the reader may have just stored it
                r = self._replies.pop(rid, None)
            if r is None:
                raise BridgeError(f"the engine worker stopped (exit status {self.proc.returncode}): "
                                  f"{self.stderr_tail()}")
        return r

    def stderr_tail(self) -> str:
        return next((ln for ln in reversed(self._stderr) if ln.strip()), "")

    def stop(self) -> None:
        if self.alive():
            try:
                self.proc.stdin.close()  # the server ends at the end of its input
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


_servers: dict = {}


def server(python: str = "") -> WorkerServer:
    """The running engine worker for the engine Python ``python`` resolves to (started when needed)."""
    py = runner.find_engine_python(python)
    s = _servers.get(str(py))
    if s is None or not s.alive():
        s = _servers[str(py)] = WorkerServer(py)
    return s


def stop_servers() -> None:
    for s in _servers.values():
        s.stop()
    _servers.clear()


class EngineTask:
    """One ``bridge.impact_engine`` operation, in a thread of this process or in the engine worker.

    ``poll()`` never blocks: None while running, else the result (or raises
    ``BridgeError``). ``wait()`` blocks. Used blocking by bakes and scripts, and
    polled from a timer by the click operator so Blender stays responsive while
    a first click on an object computes its modes.
    """

    def __init__(self, op: str, arrays: dict | None, kwargs: dict, *, mode: str = "auto", python: str = "",
                 background: bool = False):
        self.op, self.kwargs = op, kwargs
        self._result = None
        self._error: str | None = None
        self._done = threading.Event()
        self._server = None
        self._tmp = None
        inprocess = mode == "inprocess" or (mode == "auto" and engine_importable())
        if inprocess:
            if not engine_importable():
                raise BridgeError("the Soundstage engine does not import in this Python; use the worker mode")
            self.kind = "in-process"
            if background:
                threading.Thread(target=self._run_here, args=(arrays,), daemon=True).start()
            else:
                self._run_here(arrays)
        else:
            self.kind = "worker"
            self._start_worker(arrays, python)
            if not background:
                self.wait()

    def _run_here(self, arrays) -> None:
        from soundstage.errors import SoundstageError

        try:
            self._result = impact_engine.run(self.op, arrays, self.kwargs)
        except SoundstageError as e:
            self._error = _one_line(e)
        except Exception as e:  # a bug: one line for the user, the traceback on stderr
            import traceback

            traceback.print_exc()
            self._error = f"the impact engine failed during '{self.op}': {_one_line(e)}"
        self._done.set()

    def _start_worker(self, arrays, python: str) -> None:
        self._server = server(python)
        self._tmp = tempfile.TemporaryDirectory(prefix="soundstage-impact-")
        tmp = Path(self._tmp.name)
        req = {"op": self.op, "kwargs": self.kwargs, "arrays": None, "out": str(tmp / "out.npz")}
        if arrays:
            req["arrays"] = str(tmp / "in.npz")
            np.savez(req["arrays"], **{k: np.asarray(v) for k, v in arrays.items()})
        (tmp / "request.json").write_text(json.dumps(req), encoding="utf-8")
        try:
            self._rid = self._server.submit(tmp / "request.json")
        except BridgeError:
            self._tmp.cleanup()
            raise

    def _check_worker(self) -> None:
        try:
            reply = self._server.reply(self._rid)
        except BridgeError as e:
            self._error = f"{e} (during '{self.op}')"
            reply = {}
        if reply is None:
            return
        try:
            if self._error is None:
                out = Path(self._tmp.name) / "out.npz"
                if reply.get("status") == 1 or not out.is_file():
                    self._error = (f"the impact engine failed during '{self.op}': "
                                   f"{reply.get('message') or self._server.stderr_tail()}")
                else:
                    result = impact_engine.load_result(str(out))
                    if "error" in result:
                        self._error = str(result["error"])
                    else:
                        self._result = result
        finally:
            self._tmp.cleanup()
            self._done.set()

    def poll(self):
        """None while running; the result when done (``BridgeError`` when it failed)."""
        if self._server is not None and not self._done.is_set():
            self._check_worker()
        if not self._done.is_set():
            return None
        if self._error is not None:
            raise BridgeError(self._error)
        return self._result

    def wait(self):
        import time

        while self._server is not None and not self._done.is_set():
            self._check_worker()
            if not self._done.is_set():
                time.sleep(0.01)
        self._done.wait()
        return self.poll()

    def cancel(self) -> None:
        """Stop a worker computation (the worker is restarted for the next request)."""
        if self._server is not None and not self._done.is_set():
            self._server.proc.kill()
            self._server.proc.wait()  # reaped, so the next request starts a new worker
            self._error = "cancelled"
            self._tmp.cleanup()
            self._done.set()


def call_engine(op: str, arrays: dict | None = None, *, mode: str = "auto", python: str = "", **kwargs) -> dict:
    """Run one ``bridge.impact_engine`` operation and wait for it (``EngineTask``)."""
    return EngineTask(op, arrays, kwargs, mode=mode, python=python).wait()


# --------------------------------------------------------------------------- preview
PREVIEW_DIR = Path(tempfile.gettempdir()) / "soundstage-preview"
_playing: dict = {}


def listener_pose(scene):
    """The first listener camera's pose (16 numbers, scale removed), or None when the scene has none."""
    from . import export

    try:
        cams = export.find_listeners(scene)
    except BridgeError:
        return None
    return export._pose(cams[0].matrix_world), cams[0].name


def preview_task(empty, scene, *, mode: str = "auto", python: str = "", background: bool = False,
                 spatial: bool | None = None, out_dir: Path | None = None) -> EngineTask:
    """Start synthesising a preview of ``empty``'s hit (as the scene is now).

    Writes ``<out_dir>/<empty>.wav`` (mono pressure at 1 m) and, when
    ``spatial`` and the scene has a listener, ``<empty>_binaural.wav`` rendered
    in free field from that camera. ``finish_preview`` then plays it.
    """
    settings = scene_settings(scene)
    spatial = settings["preview_spatial"] if spatial is None else spatial
    out_dir = Path(out_dir or PREVIEW_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict = {}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    stem = sanitize(empty.name)
    rate = int(getattr(getattr(scene, "soundstage", None), "sample_rate", 48000))
    req = hit_request(empty, scene, depsgraph, 0, arrays, sample_rate=rate, out=str(out_dir / f"{stem}.wav"))
    req["duration"] = min(req["duration"], 3.0)  # a preview: the ring-out, not the whole tail
    pose = listener_pose(scene) if spatial else None
    if pose is not None:
        req["listener"], req["listener_name"] = pose[0], pose[1]
        req["preview_out"] = str(out_dir / f"{stem}_binaural.wav")
        req["speed_of_sound"] = float(getattr(getattr(scene, "soundstage", None), "speed_of_sound", 343.0))
    task = EngineTask("synth", arrays, {"hits": [req], "sample_rate": rate, "budget": int(settings["budget"])},
                      mode=mode, python=python, background=background)
    task.empty_name = empty.name
    return task


def play(path) -> bool:
    """Play a WAV with Blender's audio (Audaspace); False when this Blender has none (the bpy 4.2 module)."""
    try:
        import aud
    except ImportError:
        return False
    try:
        device = _playing.get("device") or aud.Device()
        _playing["device"] = device
        old = _playing.get("handle")
        if old is not None and old.status:
            old.stop()
        # Cached in memory, so the file may change while it plays.
        _playing["handle"] = device.play(aud.Sound(str(path)).cache())
        return True
    except Exception:  # no output device: the file is still there
        return False


def finish_preview(result: dict, empty=None, *, play_sound: bool = True) -> dict:
    """Store a finished preview's notes on the impact and play it; returns a summary.

    Returns
    -------
    dict
        ``message`` (one line for the status bar), ``notes`` (warnings to show),
        ``path`` (what was played or written), ``played``, and the engine's hit entry.
    """
    hit = result["hits"][0]
    notes = list(hit.get("notes", []))
    if empty is not None and hasattr(empty, OBJECT_PROP):
        getattr(empty, OBJECT_PROP).notes = "; ".join(notes)
    preview = hit.get("preview")
    path = preview["path"] if preview else hit["out"]
    played = play(path) if play_sound else False
    spl_1m = 20 * math.log10(max(hit["peak_pa"], 1e-12) / 2e-5)
    where = (f"binaural from the listener, {preview['distance']:.2f} m away" if preview else "mono, at 1 m")
    msg = (f"{hit['name']}: {hit['material']}, {hit['modes']} modes from {hit['f1_hz']:.0f} Hz, peak "
           f"{spl_1m:.0f} dB SPL at 1 m ({where}); "
           + ("playing " if played else "written to ") + str(path)
           + ("" if played else " (no audio playback in this Blender)" if play_sound else ""))
    return {"message": msg, "notes": notes, "path": path, "played": played, "hit": hit}


# --------------------------------------------------------------------------- bakes
class PendingSynthesis:
    """The impact hits a bake still has to synthesise, gathered on the main thread.

    Gathering (sampling meshes at each hit's frame) needs bpy and is quick;
    synthesis (modal analysis of each new object) can take seconds, so a bake
    runs it off Blender's main thread: ``start()`` then ``poll()`` from a timer,
    ``cancel()`` on Esc. ``run()`` does it blocking (scripts, tests).

    Attributes
    ----------
    count : int
        Number of hits.
    notes : list of str
        Engine notes per hit (repairs, guesses), filled when finished.
    """

    def __init__(self, arrays: dict, hits: list[dict], kwargs: dict, mode: str, python: str):
        self._arrays, self._hits, self._kwargs = arrays, hits, kwargs
        self._mode, self._python = mode, python
        self._task: EngineTask | None = None
        self.count = len(hits)
        self.notes: list[str] = []

    def start(self) -> None:
        self._task = EngineTask("synth", self._arrays, dict(self._kwargs, hits=self._hits), mode=self._mode,
                                python=self._python, background=True)

    def _collect(self, result: dict) -> None:
        for req, done in zip(self._hits, result["hits"]):
            for note in done.get("notes", []):
                self.notes.append(f"impact '{req['empty']}': {note}")

    def poll(self) -> bool:
        """True when finished (``BridgeError`` when synthesis failed or was cancelled)."""
        if self._task is None:
            self.start()
        result = self._task.poll()
        if result is None:
            return False
        if not self.notes:
            self._collect(result)
        return True

    def run(self) -> None:
        if self._task is None:
            self.start()
        self._collect(self._task.wait())

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def export_impacts(scene, frames: tuple[int, int], track: dict, staging_dir, warnings: list, *,
                   sample_rate: int = 48000, fps: float = 24.0, mode: str | None = None,
                   python: str | None = None, defer: bool = False):
    """Gather every hit of the scene's impact points, synthesise them, and return them as job sources.

    Parameters
    ----------
    scene : bpy.types.Scene
        The context scene.
    frames : (int, int)
        The bake's inclusive frame range.
    track : dict
        ``bridge.export.sample_transforms`` output including the impact Empties
        (their per-frame world positions).
    staging_dir : path or None
        Where the hit WAVs are written (``impacts/`` inside it); None: a new
        temporary folder.
    warnings : list of str
        Notes are appended (hits outside the range, engine repairs).
    mode, python : str, optional
        Engine settings (default: the add-on preferences).
    defer : bool
        Do not synthesise here: return the work as a ``PendingSynthesis`` that
        the caller runs (a bake does it off the main thread) before the job's
        audio files exist.

    Returns
    -------
    list of dict
        Job sources: ``name``, ``audio``, ``position`` (per frame, or one when
        still), ``gain_db``, ``start_frame``.
    PendingSynthesis or None
        Only with ``defer=True`` (None when nothing is to be synthesised).

    Raises
    ------
    BridgeError
        A problem naming the impact (no target, a target without faces, a point
        off the object...).
    """
    from .export import _compact

    empties = impact_objects(scene)
    if not empties:
        return ([], None) if defer else []
    if mode is None or python is None:
        m, p = engine_settings()
        mode, python = mode or m, p if python is None else python
    a, b = frames
    folder = Path(staging_dir) / "impacts" if staging_dir is not None else \
        Path(tempfile.mkdtemp(prefix="soundstage-impacts-"))
    folder.mkdir(parents=True, exist_ok=True)
    plan = []  # (empty, frame, k)
    for e in empties:
        dur = float(impact_settings(e)["duration"])
        for k, f in enumerate(hit_frames(e)):
            if f > b:
                warnings.append(f"impact '{e.name}' at frame {f} is after the range's end ({b}): left out")
                continue
            if (f + dur * fps) < a:
                warnings.append(f"impact '{e.name}' at frame {f} has died away before the range starts ({a}): "
                                "left out")
                continue
            plan.append((e, f, k))
    if not plan:
        return ([], None) if defer else []
    arrays: dict = {}
    hits = []
    original = (scene.frame_current, scene.frame_subframe)
    try:
        # Each hit sees the scene as it is at its own frame (a moving or deforming target).
        for i, (e, f, k) in enumerate(sorted(plan, key=lambda p: p[1])):
            scene.frame_set(f)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            dur = float(impact_settings(e)["duration"])
            # Nothing after the range's end is heard: do not synthesise it.
            dur = max(min(dur, (b + 1 - f) / fps + 0.05), 1.0 / fps)
            label = e.name if k == 0 else f"{e.name}@{f}"
            req = hit_request(e, scene, depsgraph, i, arrays, frame=f, duration=dur, sample_rate=sample_rate,
                              out=str(folder / f"{sanitize(label)}.wav"), seed_offset=k)
            req["label"] = label
            req["empty"] = e.name
            hits.append(req)
    finally:
        scene.frame_set(original[0], subframe=original[1])
    pending = PendingSynthesis(arrays, hits, {"sample_rate": int(sample_rate),
                                              "budget": int(scene_settings(scene)["budget"])}, mode, python)
    # The engine writes each hit to the path asked for ("out"), so the job can name it now.
    sources = []
    for req in hits:
        e = scene.objects[req["empty"]]
        sources.append({"name": req["label"], "audio": req["out"],
                        "position": _compact(track[e.name]["position"]),
                        "gain_db": round(float(impact_settings(e)["gain_db"]), 4),
                        "start_frame": int(req["frame"])})
    if defer:
        return sources, pending
    pending.run()
    warnings.extend(pending.notes)
    return sources


# --------------------------------------------------------------------------- locate
def locate_candidates(scene, selected_only: bool = False) -> list:
    """Meshes a hit may have come from: visible mesh objects with faces (not splats or their room proxies), by name."""
    objs = []
    for o in scene.objects:
        if o.type != "MESH" or splat_bridge.is_splat_object(o) or _is_room_proxy(o) or not o.visible_get():
            continue
        if selected_only and not o.select_get():
            continue
        if not len(o.data.polygons):
            continue
        objs.append(o)
    return sorted(objs, key=lambda o: o.name)


#: Heat colour ramp stops (value, linear RGB): dark blue, purple, red, orange, pale yellow.
HEAT_STOPS = np.array([[0.0, 0.01, 0.01, 0.12], [0.25, 0.18, 0.02, 0.35], [0.5, 0.7, 0.05, 0.1],
                       [0.75, 0.95, 0.35, 0.02], [1.0, 1.0, 0.95, 0.55]])


def heat_colors(values) -> np.ndarray:
    """RGBA (N, 4) float32 for heat values (N,) in [0, 1]; alpha is the value itself."""
    v = np.clip(np.asarray(values, np.float64).reshape(-1), 0.0, 1.0)
    rgb = np.column_stack([np.interp(v, HEAT_STOPS[:, 0], HEAT_STOPS[:, c]) for c in (1, 2, 3)])
    return np.column_stack([rgb, v]).astype(np.float32)


def paint_heat(obj, values) -> None:
    """Write heat values (one per vertex of ``obj.data``) as the colour attribute ``soundstage_heat``."""
    mesh = obj.data
    values = np.asarray(values, np.float32).reshape(-1)
    if len(values) != len(mesh.vertices):
        raise BridgeError(f"object '{obj.name}': {len(values)} heat values for {len(mesh.vertices)} vertices")
    attr = mesh.color_attributes.get(HEAT_ATTRIBUTE)
    if attr is not None and (attr.domain != "POINT" or attr.data_type != "FLOAT_COLOR"):
        mesh.color_attributes.remove(attr)
        attr = None
    if attr is None:
        attr = mesh.color_attributes.new(HEAT_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", heat_colors(values).ravel())
    mesh.color_attributes.active_color = attr
    mesh.update()


def locate_task(scene, wav, *, objects=None, mode: str | None = None, python: str | None = None,
                background: bool = False) -> EngineTask:
    """Start ranking ``objects`` (default: ``locate_candidates``) for a recorded hit; see ``finish_locate``.

    Raises
    ------
    BridgeError
        No candidates, a candidate without faces, no engine.
    """
    wav = str(Path(bpy.path.abspath(str(wav))).resolve())
    objs = list(objects) if objects is not None else locate_candidates(scene)
    if not objs:
        raise BridgeError(f"scene '{scene.name}' has no visible mesh object to locate the hit on")
    if mode is None or python is None:
        m, p = engine_settings()
        mode, python = mode or m, p if python is None else python
    depsgraph = bpy.context.evaluated_depsgraph_get()
    arrays, described = {}, []
    for i, o in enumerate(objs):
        geo = mesh_arrays(o, depsgraph)
        if not len(geo["faces"]):
            raise BridgeError(f"object '{o.name}' has no faces to be hit; hide it or leave it unselected")
        arrays[f"v{i}"], arrays[f"f{i}"] = geo["vertices"], geo["faces"]
        if len(geo["vertices"]) != len(o.data.vertices):  # modifiers: paint the base mesh's vertices
            co = np.empty(len(o.data.vertices) * 3, np.float64)
            o.data.vertices.foreach_get("co", co)
            arrays[f"pv{i}"] = co.reshape(-1, 3)
        name, reason = object_material(o)
        described.append({"name": o.name, "matrix": _evaluated_pose(o, depsgraph).ravel().tolist(),
                          "material": name, "reason": reason})
    task = EngineTask("locate", arrays,
                      {"objects": [{k: d[k] for k in ("name", "matrix", "material")} for d in described],
                       "audio": wav, "budget": int(scene_settings(scene)["budget"])},
                      mode=mode, python=python, background=background)
    task.described, task.wav, task.scene_name = described, wav, scene.name
    return task


def finish_locate(task: EngineTask, result: dict, *, paint: bool = True) -> dict:
    """Paint the heat maps and store the ranking on the scene (main thread).

    Returns
    -------
    dict
        ``objects``: most likely first, each with ``name``, ``probability``,
        ``material``, ``material_reason``, ``best_point``, ``regions``;
        ``peaks_hz``; ``file``; ``notes``; ``max_heat``: ``{object name: highest vertex heat}``.
    """
    ranking = result["ranking"]
    reasons = {d["name"]: d["reason"] for d in task.described}
    for entry in ranking["objects"]:
        entry["material_reason"] = reasons.get(entry["name"], entry.get("material_reason", ""))
    ranking["file"] = task.wav
    ranking["notes"] = list(result.get("notes", []))
    if len(ranking.get("peaks_hz", [])) == 0:
        ranking["notes"].append("no modal peak found in the recording: every object is equally likely")
    ranking["max_heat"] = {}
    for i, d in enumerate(task.described):
        heat = np.asarray(result[f"heat{i}"])
        ranking["max_heat"][d["name"]] = float(heat.max()) if heat.size else 0.0
        obj = bpy.data.objects.get(d["name"])
        if paint and obj is not None and obj.type == "MESH":
            paint_heat(obj, heat)
    scene = bpy.data.scenes.get(task.scene_name)
    if scene is not None and hasattr(scene, SCENE_PROP):
        getattr(scene, SCENE_PROP).locate_result = json.dumps(
            {k: ranking[k] for k in ("objects", "peaks_hz", "file", "max_heat", "notes")})
    return ranking


def locate_hit(scene, wav, *, objects=None, mode: str | None = None, python: str | None = None,
               paint: bool = True) -> dict:
    """Rank objects for a recorded hit and paint their heat maps, blocking (``locate_task`` + ``finish_locate``)."""
    task = locate_task(scene, wav, objects=objects, mode=mode, python=python)
    return finish_locate(task, task.wait(), paint=paint)


def ranking_summary(ranking: dict, top: int = 3) -> str:
    """``1. Cube (steel) 91 %, 2. ...``: the most likely objects on one line."""
    parts = [f"{r}. {o['name']} ({o['material']}) {100 * o['probability']:.0f} %"
             for r, o in enumerate(ranking["objects"][:top], 1)]
    return ", ".join(parts)
