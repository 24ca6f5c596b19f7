"""Gaussian splat scenes in Blender: import, room proxy, ray casts, camera paths.

The engine side lives in ``soundstage.splats`` (docs/splats.md); this module
turns its results into Blender data and back. The engine's operations run
through ``bridge.splat_engine``: in this process when the engine imports here
(the ``bpy`` module in the engine's environment), otherwise as a one-shot
process in the engine's environment (real Blender's Python has no SciPy).

A splat object is a mesh with vertices only (no edges or faces), so it works
in every Blender the add-on supports, can be edited (delete floaters in Edit
Mode) and keeps these point attributes, all set from whole NumPy arrays:

======================  ==============  ==============================================
attribute               type            meaning
======================  ==============  ==============================================
``position``            FLOAT_VECTOR    gaussian centre (the vertex), file units
``splat_color``         FLOAT_COLOR     base colour from the SH DC term (stored
                                        scene-linear as Blender expects; converted
                                        from and to sRGB with NumPy)
``opacity``             FLOAT           peak opacity in [0, 1]
``scale``               FLOAT_VECTOR    standard deviations along the local axes
``rotation``            QUATERNION      unit quaternion w, x, y, z
``radius``              FLOAT           display radius (geometric mean of ``scale``,
                                        clamped at the 95th percentile)
======================  ==============  ==============================================

and an ID property ``soundstage_splats`` (``source`` path, ``count``). It is
displayed by a Geometry Nodes modifier that turns the vertices into points of
``radius`` with an emissive material reading ``splat_color``, keeping a random
subset in the viewport (``Display Fraction``), or as its bounding box.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

import bpy
import numpy as np

from . import runner
from . import splat_engine
from .errors import BridgeError

#: ID property marking a splat object: ``{"source": path, "count": n}``.
PROP = "soundstage_splats"
#: ID property on room objects made from splats (JSON: notes, reasons).
ROOM_PROP = "soundstage_room"
#: Splat field -> (attribute name, attribute type, foreach key, components).
ATTRIBUTES = {
    "colors": ("splat_color", "FLOAT_COLOR", "color", 4),
    "opacities": ("opacity", "FLOAT", "value", 1),
    "scales": ("scale", "FLOAT_VECTOR", "vector", 3),
    "rotations": ("rotation", "QUATERNION", "value", 4),
}
RADIUS_ATTRIBUTE = "radius"
DISPLAY_GROUP = "Soundstage Splat Display"
DISPLAY_MODIFIER = "Soundstage Splat Display"
DISPLAY_MATERIAL = "Soundstage Splats"
#: AUTO display keeps at most this many points in the viewport (a random subset).
MAX_DISPLAY_POINTS = 500_000
#: Speakers placed on splats sit this far in front of the surface, metres.
SOURCE_OFFSET = 0.05


# --------------------------------------------------------------------------- engine access
_engine_cache: dict = {}


def engine_module():
    """``soundstage.splats`` if it imports in this Python, else None."""
    if "module" not in _engine_cache:
        try:
            import soundstage.splats as module
        except Exception:  # no SciPy, no engine: use the worker
            module = None
        _engine_cache["module"] = module
    return _engine_cache["module"]


def _worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    # The extension root: ``bridge.splat_engine`` and the engine shipped beside the add-on
    # (used first, as for bakes: bridge.runner).
    env["PYTHONPATH"] = str(runner.EXT_ROOT)
    return env


#: The worker's command line after the interpreter. Imported as ``bridge.splat_engine`` (not run as
#: a file, which would put ``bridge/`` itself first on the module path, where its modules could
#: shadow other top-level names).
_WORKER_ARGS = ["-c", "import sys; from bridge.splat_engine import main; sys.exit(main(sys.argv[1:]))"]


def call_engine(op: str, arrays: dict | None = None, *, mode: str = "auto", python: str = "", **kwargs) -> dict:
    """Run one ``bridge.splat_engine`` operation, in-process or in the engine's environment.

    Parameters
    ----------
    op : str
        ``read``, ``room``, ``corners``, ``cast`` or ``cameras``.
    arrays : dict of ndarray, optional
        The splat arrays (``object_arrays``) for operations that need them.
    mode : {"auto", "inprocess", "worker"}
        As for bakes: ``auto`` runs in-process when the engine imports here.
    python : str
        The Engine Python preference (worker mode).
    **kwargs
        The operation's JSON-ready arguments.

    Raises
    ------
    BridgeError
        The engine's one-line message for anything the user can fix, or why
        the worker could not run.
    """
    engine = engine_module()
    if mode == "inprocess" or (mode == "auto" and engine is not None):
        if engine is None:
            raise BridgeError("the Soundstage engine does not import in this Python; use the worker mode")
        from soundstage.errors import SoundstageError

        try:
            return splat_engine.run(engine, op, arrays, kwargs)
        except SoundstageError as e:
            raise BridgeError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    py = runner.find_engine_python(python)
    with tempfile.TemporaryDirectory(prefix="soundstage-splats-") as tmp:
        req = {"op": op, "kwargs": kwargs, "arrays": None, "out": str(Path(tmp) / "out.npz")}
        if arrays:
            req["arrays"] = str(Path(tmp) / "in.npz")
            np.savez(req["arrays"], **{k: np.asarray(v) for k, v in arrays.items()})
        req_path = Path(tmp) / "request.json"
        req_path.write_text(json.dumps(req), encoding="utf-8")
        try:
            proc = subprocess.run([str(py), *_WORKER_ARGS, str(req_path)], env=_worker_env(), cwd=tmp,
                                  capture_output=True, text=True, encoding="utf-8", errors="replace")
        except OSError as e:
            raise BridgeError(f"cannot start the engine with {py} ({e.strerror or e}); "
                              "fix Engine Python in the Soundstage add-on preferences") from None
        out = Path(req["out"])
        if proc.returncode not in (0, 2) or not out.is_file():
            tail = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
            raise BridgeError(f"the engine worker stopped (exit status {proc.returncode}) during '{op}': {tail}")
        result = splat_engine.load_result(str(out))
    if "error" in result:
        raise BridgeError(result["error"])
    return result


# --------------------------------------------------------------------------- splat objects
def is_splat_object(obj) -> bool:
    """True for a mesh made by ``create_splat_object`` (or one carrying its attributes)."""
    return obj is not None and obj.type == "MESH" and PROP in obj.keys()


def splat_objects(scene) -> list:
    """The scene's splat objects, by name."""
    return sorted((o for o in scene.objects if is_splat_object(o)), key=lambda o: o.name)


def display_radius(scales: np.ndarray) -> np.ndarray:
    """Display radius per splat, shape (N,): geometric mean of the sigmas, clamped at the 95th percentile.

    The clamp keeps a few huge floaters from covering the viewport.
    """
    s = np.maximum(np.asarray(scales, np.float64), 1e-9)
    r = np.exp(np.log(s).mean(axis=1))
    if len(r):
        r = np.minimum(r, np.percentile(r, 95))
    return r.astype(np.float32)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding, element-wise."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding, element-wise (the inverse of ``_srgb_to_linear``)."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.maximum(c, 0) ** (1 / 2.4) - 0.055)


def create_splat_object(arrays: dict, name: str, collection, *, source: str = "", display: str = "AUTO",
                        max_display_points: int = MAX_DISPLAY_POINTS, point_scale: float = 1.0):
    """A vertex-only mesh object carrying the splats as point attributes (no per-splat Python loop).

    Parameters
    ----------
    arrays : dict
        ``positions`` (N, 3), ``scales`` (N, 3), ``rotations`` (N, 4) w, x, y, z,
        ``opacities`` (N,), ``colors`` (N, 3) in [0, 1].
    name : str
    collection : bpy.types.Collection
        Where the object is linked.
    source : str
        The file it came from (kept on the object).
    display : {"AUTO", "POINTS", "BOUNDS"}
        ``AUTO``: points, at most ``max_display_points`` of them in the viewport;
        ``POINTS``: every point; ``BOUNDS``: the bounding box only.
    point_scale : float
        Multiplies the display radius.

    Returns
    -------
    bpy.types.Object
    """
    pos = np.ascontiguousarray(arrays["positions"], np.float32).reshape(-1, 3)
    n = len(pos)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(n)
    mesh.attributes["position"].data.foreach_set("vector", pos.ravel())
    for field, (attr, kind, key, width) in ATTRIBUTES.items():
        values = np.asarray(arrays[field], np.float32).reshape(n, -1)
        if field == "colors":  # splat colours are sRGB-encoded; RGBA, alpha 1 (opacity has its own attribute)
            values = np.column_stack([_srgb_to_linear(values), np.ones(n)])
        data = mesh.attributes.new(attr, kind, "POINT").data
        data.foreach_set(key, np.ascontiguousarray(values, np.float32).ravel())
    radius = mesh.attributes.new(RADIUS_ATTRIBUTE, "FLOAT", "POINT")
    radius.data.foreach_set("value", display_radius(arrays["scales"]))
    mesh.color_attributes.active_color = mesh.color_attributes[ATTRIBUTES["colors"][0]]
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj[PROP] = {"source": str(source), "count": int(n)}
    add_display(obj, display=display, max_display_points=max_display_points, point_scale=point_scale)
    return obj


def object_arrays(obj, fields=None) -> dict:
    """The splat arrays of a splat object (object space), read with ``foreach_get``.

    Parameters
    ----------
    obj : bpy.types.Object
    fields : iterable of str, optional
        A subset of ``positions``, ``scales``, ``rotations``, ``opacities``,
        ``colors`` (default: all).

    Returns
    -------
    dict
        ``positions`` (N, 3), ``scales`` (N, 3), ``rotations`` (N, 4),
        ``opacities`` (N,), ``colors`` (N, 3) sRGB in [0, 1], float32.

    Raises
    ------
    BridgeError
        The object is not a mesh, or lacks a splat attribute.
    """
    if obj is None or obj.type != "MESH":
        raise BridgeError(f"object '{getattr(obj, 'name', None)}' is not a splat object: "
                          "import splats with File > Import > Gaussian Splats")
    fields = list(splat_engine.SPLAT_FIELDS) if fields is None else list(fields)
    mesh = obj.data
    n = len(mesh.vertices)
    out = {}
    if "positions" in fields:
        pos = np.empty(n * 3, np.float32)
        mesh.attributes["position"].data.foreach_get("vector", pos)
        out["positions"] = pos.reshape(n, 3)
    for field, (attr, kind, key, width) in ATTRIBUTES.items():
        if field not in fields:
            continue
        a = mesh.attributes.get(attr)
        if a is None or a.domain != "POINT" or a.data_type != kind:
            raise BridgeError(f"object '{obj.name}' has no '{attr}' point attribute ({kind}), so it is not a splat "
                              "object: import splats with File > Import > Gaussian Splats")
        buf = np.empty(n * width, np.float32)
        a.data.foreach_get(key, buf)
        buf = buf.reshape(n, width) if width > 1 else buf
        if field == "colors":
            buf = np.clip(_linear_to_srgb(buf[:, :3]), 0, 1).astype(np.float32)
        out[field] = buf
    return out


def arrays_digest(arrays: dict) -> str:
    """A content hash of the given splat arrays (changes when the user edits the splats)."""
    h = hashlib.sha1(usedforsecurity=False)  # a cache key, not security: the fastest stdlib hash here
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.shape}{a.dtype}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# --------------------------------------------------------------------------- display
def _socket(sockets, name: str, kind: str | None = None):
    for s in sockets:
        if s.name == name and (kind is None or s.type == kind) and getattr(s, "enabled", True):
            return s
    raise KeyError(name)


def display_material():
    """The shared emissive material that shows ``splat_color`` (Material Preview and renders)."""
    mat = bpy.data.materials.get(DISPLAY_MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(DISPLAY_MATERIAL)
    if mat.node_tree is None:  # Blender 4.x: materials start without nodes
        mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    attr = tree.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = ATTRIBUTES["colors"][0]
    # Emission: a capture's colours are already lit, so lighting them again would darken them.
    emit = tree.nodes.new("ShaderNodeEmission")
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(_socket(attr.outputs, "Color"), _socket(emit.inputs, "Color"))
    tree.links.new(_socket(emit.outputs, "Emission"), _socket(out.inputs, "Surface"))
    attr.location, emit.location, out.location = (-400, 0), (-150, 0), (100, 0)
    mat.diffuse_color = (0.6, 0.6, 0.6, 1.0)
    return mat


def display_group():
    """The Geometry Nodes group that draws splat vertices as points (built once per file).

    Inputs: Geometry, Point Scale (radius multiplier), Display Fraction (random
    subset kept in the viewport), Material. Nodes: Random Value (boolean) ->
    Delete Geometry (points not kept) -> Mesh to Points (radius attribute x
    scale) -> Set Material.
    """
    ng = bpy.data.node_groups.get(DISPLAY_GROUP)
    if ng is not None and ng.bl_idname == "GeometryNodeTree":
        return ng
    ng = bpy.data.node_groups.new(DISPLAY_GROUP, "GeometryNodeTree")
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    scale = iface.new_socket("Point Scale", in_out="INPUT", socket_type="NodeSocketFloat")
    scale.default_value, scale.min_value, scale.max_value = 1.0, 0.0, 100.0
    frac = iface.new_socket("Display Fraction", in_out="INPUT", socket_type="NodeSocketFloat")
    frac.default_value, frac.min_value, frac.max_value = 1.0, 0.0, 1.0
    frac.subtype = "FACTOR"
    iface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = ng.nodes, ng.links
    gin, gout = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    rnd = nodes.new("FunctionNodeRandomValue")
    rnd.data_type = "BOOLEAN"
    inv = nodes.new("FunctionNodeBooleanMath")
    inv.operation = "NOT"
    delete = nodes.new("GeometryNodeDeleteGeometry")
    delete.domain = "POINT"
    radius = nodes.new("GeometryNodeInputNamedAttribute")
    radius.data_type = "FLOAT"
    _socket(radius.inputs, "Name").default_value = RADIUS_ATTRIBUTE
    mul = nodes.new("ShaderNodeMath")
    mul.operation = "MULTIPLY"
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.mode = "VERTICES"
    set_mat = nodes.new("GeometryNodeSetMaterial")
    links.new(_socket(gin.outputs, "Display Fraction"), _socket(rnd.inputs, "Probability"))
    links.new(_socket(rnd.outputs, "Value", "BOOLEAN"), inv.inputs[0])
    links.new(_socket(gin.outputs, "Geometry"), _socket(delete.inputs, "Geometry"))
    links.new(inv.outputs[0], _socket(delete.inputs, "Selection"))
    links.new(_socket(radius.outputs, "Attribute"), mul.inputs[0])
    links.new(_socket(gin.outputs, "Point Scale"), mul.inputs[1])
    links.new(_socket(delete.outputs, "Geometry"), _socket(to_points.inputs, "Mesh"))
    links.new(mul.outputs[0], _socket(to_points.inputs, "Radius"))
    links.new(_socket(to_points.outputs, "Points"), _socket(set_mat.inputs, "Geometry"))
    links.new(_socket(gin.outputs, "Material"), _socket(set_mat.inputs, "Material"))
    links.new(_socket(set_mat.outputs, "Geometry"), _socket(gout.inputs, "Geometry"))
    for i, node in enumerate((gin, rnd, inv, delete, radius, mul, to_points, set_mat, gout)):
        node.location = (i * 200 - 800, 0)
    return ng


def display_inputs(mod) -> dict:
    """``{input name: modifier key}`` of a display modifier (keys like ``Socket_2``)."""
    group = mod.node_group
    if group is None:
        return {}
    return {item.name: item.identifier for item in group.interface.items_tree
            if getattr(item, "item_type", "SOCKET") == "SOCKET" and item.in_out == "INPUT"}


def display_modifier(obj):
    """The object's splat display modifier, or None."""
    mod = obj.modifiers.get(DISPLAY_MODIFIER)
    return mod if mod is not None and mod.type == "NODES" else None


def add_display(obj, *, display: str = "AUTO", max_display_points: int = MAX_DISPLAY_POINTS,
                point_scale: float = 1.0):
    """Set up (or update) how a splat object is drawn; see ``create_splat_object``."""
    if display not in ("AUTO", "POINTS", "BOUNDS"):
        raise BridgeError(f"unknown splat display '{display}' (AUTO, POINTS or BOUNDS)")
    mod = display_modifier(obj) or obj.modifiers.new(DISPLAY_MODIFIER, "NODES")
    mod.node_group = display_group()
    keys = display_inputs(mod)
    n = max(1, len(obj.data.vertices))
    fraction = 1.0 if display == "POINTS" else min(1.0, max(1, int(max_display_points)) / n)
    mod[keys["Point Scale"]] = float(point_scale)
    mod[keys["Display Fraction"]] = float(fraction)
    mod[keys["Material"]] = display_material()
    if not obj.data.materials:
        obj.data.materials.append(display_material())
    # The full set is always rendered; the viewport shows the subset or the box.
    mod.show_render = True
    mod.show_viewport = display != "BOUNDS"
    obj.display_type = "BOUNDS" if display == "BOUNDS" else "TEXTURED"
    obj.data.update()
    return mod


# --------------------------------------------------------------------------- import
def import_splats(filepath, collection, *, nonfinite: str = "error", display: str = "AUTO",
                  max_display_points: int = MAX_DISPLAY_POINTS, point_scale: float = 1.0,
                  up_axis: str = "Z", mode: str = "auto", python: str = "") -> tuple:
    """Read a ``.ply`` / ``.splat`` file and make its splat object.

    Parameters
    ----------
    filepath : str or Path
    collection : bpy.types.Collection
    nonfinite : {"error", "drop"}
        What to do with gaussians holding NaN or infinite values.
    up_axis : {"Z", "-Y", "Y"}
        The capture's up axis; ``-Y`` (COLMAP / OpenCV captures) and ``Y`` rotate
        the object (not the data) so that axis points along Blender's +Z.
    display, max_display_points, point_scale
        See ``create_splat_object``.
    mode, python
        How to run the engine (``call_engine``).

    Returns
    -------
    (object, warnings)
    """
    path = Path(bpy.path.abspath(str(filepath)))
    if not path.is_file():
        raise BridgeError(f"splat file '{path}' not found")
    result = call_engine("read", None, mode=mode, python=python, path=str(path), nonfinite=nonfinite)
    warnings = list(result.get("warnings", []))
    if int(result["count"]) == 0:
        raise BridgeError(f"{path}: the file holds no gaussians")
    obj = create_splat_object(result, path.stem or "Splats", collection, source=str(path), display=display,
                              max_display_points=max_display_points, point_scale=point_scale)
    rotations = {"Z": (0.0, 0.0, 0.0), "-Y": (-math.pi / 2, 0.0, 0.0), "Y": (math.pi / 2, 0.0, 0.0)}
    if up_axis not in rotations:
        raise BridgeError(f"unknown up axis '{up_axis}' (Z, -Y or Y)")
    obj.rotation_euler = rotations[up_axis]
    return obj, warnings


# --------------------------------------------------------------------------- ray casting
#: Object name -> (arrays digest, SplatRaycaster). Built on the first cast, reused until the data change.
_RAYCASTERS: dict = {}
_RAYCASTER_LIMIT = 4


def clear_raycast_cache() -> None:
    _RAYCASTERS.clear()


def _matrix(obj) -> np.ndarray:
    return np.array(obj.matrix_world, dtype=np.float64)


def _cached_raycaster(obj, arrays: dict):
    engine = engine_module()
    digest = arrays_digest(arrays)
    hit = _RAYCASTERS.get(obj.name)
    if hit is not None and hit[0] == digest:
        return hit[1]
    for name in [k for k in _RAYCASTERS if k not in bpy.data.objects]:
        del _RAYCASTERS[name]
    while len(_RAYCASTERS) >= _RAYCASTER_LIMIT:
        del _RAYCASTERS[next(iter(_RAYCASTERS))]
    from soundstage.errors import SoundstageError

    try:
        caster = engine.SplatRaycaster(splat_engine._splats(engine, arrays, obj.name))
    except SoundstageError as e:
        raise BridgeError(f"object '{obj.name}': {str(e).splitlines()[0]}") from None
    _RAYCASTERS[obj.name] = (digest, caster)
    return caster


def raycast_splats(obj, origin_world, direction_world, *, mode: str = "auto", python: str = "") -> dict | None:
    """Cast one world-space ray against a splat object.

    The ray is moved into the object's frame (its world matrix inverted), cast
    with a ``SplatRaycaster`` that is cached per object (keyed by the object's
    name and a hash of its splat data, so edits rebuild it), and the hit is
    moved back to world space.

    Parameters
    ----------
    obj : bpy.types.Object
        A splat object.
    origin_world, direction_world : sequence of 3 floats
        The ray in world space (the direction need not be unit length).
    mode, python
        ``worker`` mode casts in a one-shot process (no cache: about 2 s per
        million splats to index).

    Returns
    -------
    dict or None
        ``point`` (3,) and ``normal`` (3,) (unit, facing the ray origin) in world
        space, ``distance`` in world units from the origin, ``index`` of the
        gaussian, ``object`` name; None when the ray misses.
    """
    o = np.asarray(origin_world, np.float64).reshape(3)
    d = np.asarray(direction_world, np.float64).reshape(3)
    if not (np.all(np.isfinite(o)) and np.all(np.isfinite(d)) and np.linalg.norm(d) > 0):
        raise BridgeError("the ray needs a finite origin and a non-zero direction")
    m = _matrix(obj)
    lin = m[:3, :3]
    if abs(np.linalg.det(lin)) < 1e-12:
        raise BridgeError(f"object '{obj.name}' has a zero scale: it cannot be hit")
    inv = np.linalg.inv(m)
    o_local = inv[:3, :3] @ o + inv[:3, 3]
    d_local = inv[:3, :3] @ d
    d_local /= np.linalg.norm(d_local)
    # Colours play no part in ray casts: leave them out of the read and the hash.
    arrays = object_arrays(obj, ("positions", "scales", "rotations", "opacities"))
    engine = engine_module()
    if mode == "inprocess" and engine is None:
        raise BridgeError("the Soundstage engine does not import in this Python; use the worker mode")
    if mode == "worker" or engine is None:
        r = call_engine("cast", arrays, mode="worker", python=python, origins=o_local.tolist(),
                        directions=d_local.tolist(), source=obj.name)
        hit, point, normal, index = bool(r["hit"][0]), r["point"][0], r["normal"][0], int(r["index"][0])
    else:
        first = _cached_raycaster(obj, arrays).pick(o_local, d_local)
        hit = first is not None
        if hit:
            point, normal, index = first["point"], first["normal"], int(first["index"])
    if not hit:
        return None
    p_world = lin @ np.asarray(point, np.float64) + m[:3, 3]
    # Normals transform with the inverse transpose; the side facing the origin is kept
    # (n.d is unchanged by that transform).
    n_world = inv[:3, :3].T @ np.asarray(normal, np.float64)
    n_world /= np.linalg.norm(n_world)
    return {"point": p_world, "normal": n_world, "distance": float(np.linalg.norm(p_world - o)),
            "index": index, "object": obj.name}


def raycast_scene(objects, origin_world, direction_world, **kw) -> dict | None:
    """The nearest hit of a world ray over several splat objects, or None."""
    best = None
    for obj in objects:
        hit = raycast_splats(obj, origin_world, direction_world, **kw)
        if hit is not None and (best is None or hit["distance"] < best["distance"]):
            best = hit
    return best


# --------------------------------------------------------------------------- rooms
def _surface_of(normal: np.ndarray) -> str:
    """``floor``, ``ceiling`` or ``walls`` from an outward face normal (world, Z up)."""
    if normal[2] < -0.7:
        return "floor"
    if normal[2] > 0.7:
        return "ceiling"
    return "walls"


def _spec_label(spec) -> str:
    if isinstance(spec, dict):
        return str(spec.get("name") or "custom")
    return str(spec)


def room_geometry(room: dict) -> tuple[np.ndarray, list, list]:
    """A job room (``shoebox`` or ``mesh``) as polygons.

    Returns
    -------
    vertices : ndarray, shape (V, 3)
    faces : list of vertex index lists, counter-clockwise seen from outside
    specs : list
        The job material of each face.
    """
    kind = room.get("type")
    if kind == "shoebox":
        lo, hi = np.asarray(room["min"], float), np.asarray(room["max"], float)
        mats = room.get("materials") or {}
        one = room.get("material")
        spec = {k: mats.get(k, one) for k in ("floor", "ceiling", "walls")}
        v = np.array([[x, y, z] for z in (lo[2], hi[2]) for y in (lo[1], hi[1]) for x in (lo[0], hi[0])])
        # Corner index = i + 2j + 4k for (x, y, z) bits; quads counter-clockwise from outside.
        quads = [((0, 2, 3, 1), "floor"), ((4, 5, 7, 6), "ceiling"), ((0, 4, 6, 2), "walls"),
                 ((1, 3, 7, 5), "walls"), ((0, 1, 5, 4), "walls"), ((2, 6, 7, 3), "walls")]
        return v, [list(q) for q, _ in quads], [spec[s] for _, s in quads]
    if kind == "mesh":
        mats = room["materials"]
        fm = room.get("face_materials") or [0] * len(room["faces"])
        return (np.asarray(room["vertices"], float), [list(f) for f in room["faces"]],
                [mats[i] for i in fm])
    raise BridgeError(f"cannot build a room object from a '{kind}' room")


def _room_material(name: str, spec, rgb=None):
    mat = bpy.data.materials.new(name)
    s = getattr(mat, "soundstage", None)
    if s is not None:
        if isinstance(spec, dict):
            s.mode = "CUSTOM"
            a = spec.get("absorption", {})
            s.absorption = [float(a.get(str(b), a.get(b, 0.1))) for b in (125, 250, 500, 1000, 2000, 4000, 8000)]
            s.scattering = float(spec.get("scattering", 0.1) or 0.0)
        else:
            s.mode, s.library_name = "LIBRARY", str(spec)
    if rgb is not None:
        lin = _srgb_to_linear(np.clip(np.asarray(rgb, float), 0, 1))
        mat.diffuse_color = (*lin.tolist(), 1.0)
    return mat


def create_room_object(room: dict, name: str, collection, *, colors: dict | None = None, info: dict | None = None):
    """A closed acoustic mesh object for a job room, materials mapped to the library.

    Triangles sharing a plane and a material are joined into polygons (a box
    becomes six quads). Each face gets a Blender material per surface
    (``<name> Floor``, ``<name> Ceiling``, ``<name> Walls``; a wall with its
    own acoustic material gets ``<name> Walls (<material>)``) whose Soundstage
    setting is that library material (or custom bands), so it is edited in the
    usual Material panel. The object is marked Acoustic and drawn as a wire
    so the splats stay visible.

    Parameters
    ----------
    room : dict
        The job room (``shoebox`` or ``mesh``), world space.
    colors : dict, optional
        ``floor``, ``ceiling``, ``walls`` RGB in [0, 1] for the viewport colour.
    info : dict, optional
        Stored on the object as JSON (notes, reasons).
    """
    import bmesh

    verts, faces, specs = room_geometry(room)
    bm = bmesh.new()
    try:
        bv = [bm.verts.new(tuple(v)) for v in verts]
        keys, slots = [], {}
        for f, spec in zip(faces, specs):
            face = bm.faces.new([bv[i] for i in f])
            k = json.dumps(spec, sort_keys=True)
            if k not in slots:
                slots[k] = len(keys)
                keys.append(spec)
            face.material_index = slots[k]
        bm.normal_update()  # join_triangles compares face normals: without them it joins nothing
        bmesh.ops.join_triangles(bm, faces=list(bm.faces), cmp_materials=True,
                                 angle_face_threshold=math.radians(1.0), angle_shape_threshold=math.radians(180.0))
        bm.normal_update()
        # Final slots: one per (surface, acoustic material).
        final, index = [], {}
        for face in bm.faces:
            surface = _surface_of(np.array(face.normal))
            spec = keys[face.material_index]
            k = (surface, json.dumps(spec, sort_keys=True))
            if k not in index:
                index[k] = len(final)
                final.append((surface, spec))
            face.material_index = index[k]
        mesh = bpy.data.meshes.new(name)
        bm.to_mesh(mesh)
    finally:
        bm.free()
    per_surface = {}
    for surface, spec in final:
        per_surface.setdefault(surface, []).append(spec)
    for surface, spec in final:
        label = surface.capitalize()
        if len(per_surface[surface]) > 1:
            label += f" ({_spec_label(spec)})"
        rgb = (colors or {}).get(surface)
        mesh.materials.append(_room_material(f"{name} {label}", spec, rgb))
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    if getattr(obj, "soundstage", None) is not None:
        obj.soundstage.acoustic = True
    obj.display_type = "WIRE"
    obj.show_in_front = True
    if info:
        obj[ROOM_PROP] = json.dumps(info)
    return obj


def surface_colors(details: dict) -> dict:
    """``floor``, ``ceiling``, ``walls`` mean RGB from ``RoomProxy.to_dict()`` (inlier-weighted walls)."""
    faces = details.get("faces") or {}
    out = {}
    for surface in ("floor", "ceiling"):
        if faces.get(surface):
            out[surface] = faces[surface]["color"]
    walls = [p for k, p in faces.items() if k.startswith("wall") and p]
    if walls:
        w = np.array([p["inliers"] for p in walls], float)
        out["walls"] = (np.array([p["color"] for p in walls]) * w[:, None]).sum(0) / w.sum()
    return out


def estimate_room_object(obj, collection, *, min_opacity: float = 0.5, name: str | None = None,
                         mode: str = "auto", python: str = "") -> tuple:
    """Fit the room proxy to a splat object in world space and make the acoustic room object.

    Returns
    -------
    (room object, details)
        ``details`` is ``RoomProxy.to_dict()`` (size, yaw, planes, materials,
        reasons, notes).
    """
    arrays = object_arrays(obj)
    r = call_engine("room", arrays, mode=mode, python=python, matrix=_matrix(obj).tolist(),
                    source=f"object '{obj.name}'", min_opacity=float(min_opacity))
    details = r["details"]
    info = {"from": obj.name, "size": details.get("size"), "yaw_deg": details.get("yaw_deg"),
            "materials": details.get("materials"), "reasons": details.get("reasons"), "notes": details.get("notes")}
    room_obj = create_room_object(r["room"], name or f"{obj.name} Room", collection,
                                  colors=surface_colors(details), info=info)
    return room_obj, details


def outline_from_mesh(obj) -> tuple[np.ndarray, float | None]:
    """The floor outline the user drew, from a mesh object (world space).

    * A mesh with faces: its floor face (the lowest face pointing down, else
      the lowest horizontal face), corners in the face's order. If the mesh
      rises above that face (a box or an extruded outline), its top is the
      ceiling.
    * A mesh with edges only: the closed edge loop, walked in order.

    Returns
    -------
    corners : ndarray, shape (K, 3)
    ceiling : float or None
        None when the mesh is flat (the caller gives a height).

    Raises
    ------
    BridgeError
        No horizontal face, an open or branching edge loop, too few vertices.
    """
    if obj is None or obj.type != "MESH":
        raise BridgeError("select a mesh that outlines the room's floor (a plane, a box, or a closed edge loop)")
    mesh = obj.data
    n = len(mesh.vertices)
    if n < 3:
        raise BridgeError(f"mesh '{obj.name}' has {n} vertices; the outline needs at least 3 corners")
    if n > 10_000:
        raise BridgeError(f"mesh '{obj.name}' has {n} vertices; draw the outline as a simple polygon or box")
    co = np.empty(n * 3)
    mesh.vertices.foreach_get("co", co)
    m = _matrix(obj)
    world = co.reshape(n, 3) @ m[:3, :3].T + m[:3, 3]
    if len(mesh.polygons):
        best = None
        for poly in mesh.polygons:  # a drawn outline has a handful of faces
            idx = list(poly.vertices)
            p = world[idx]
            # Newell's normal: right for any simple polygon, convex or not.
            nrm = np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)
            length = np.linalg.norm(nrm)
            if length == 0:
                continue
            nz = nrm[2] / length
            if abs(nz) < 0.9:
                continue
            key = (0 if nz < 0 else 1, float(p[:, 2].mean()))
            if best is None or key < best[0]:
                best = (key, idx)
        if best is None:
            raise BridgeError(f"mesh '{obj.name}' has no horizontal face to use as the floor outline")
        corners = world[best[1]]
        floor_z = float(corners[:, 2].mean())
        top = float(world[:, 2].max())
        return corners, (top if top - floor_z > 0.05 else None)
    ne = len(mesh.edges)
    if ne < 3:
        raise BridgeError(f"mesh '{obj.name}' has no faces and no closed edge loop to use as the floor outline")
    edges = np.empty(ne * 2, np.int64)
    mesh.edges.foreach_get("vertices", edges)
    edges = edges.reshape(ne, 2)
    used = np.unique(edges)
    degree = np.bincount(edges.ravel(), minlength=n)[used]
    if np.any(degree != 2) or len(used) != ne:
        raise BridgeError(f"mesh '{obj.name}': the edges do not form one closed loop; "
                          "draw the outline as a single loop or fill it with a face")
    nbrs = {int(v): [] for v in used}
    for a, b in edges.tolist():
        nbrs[a].append(b)
        nbrs[b].append(a)
    order = [int(used[0])]
    prev = None
    while True:
        cur = order[-1]
        nxt = nbrs[cur][0] if nbrs[cur][0] != prev else nbrs[cur][1]
        if nxt == order[0]:
            break
        prev = cur
        order.append(nxt)
        if len(order) > ne:
            break
    if len(order) != ne:
        raise BridgeError(f"mesh '{obj.name}': the edges form more than one loop; keep one outline")
    return world[order], None


def outline_room_object(obj, collection, *, height: float = 2.5, name: str | None = None,
                        mode: str = "auto", python: str = ""):
    """The room the user draws: ``room_from_corners`` on a mesh outline (``outline_from_mesh``)."""
    corners, ceiling = outline_from_mesh(obj)
    kw = {"ceiling": ceiling} if ceiling is not None else {"height": float(height)}
    r = call_engine("corners", None, mode=mode, python=python, corners=corners.tolist(), **kw)
    return create_room_object(r["room"], name or f"{obj.name} Room", collection,
                              info={"from": obj.name, "outline": corners.tolist()})


# --------------------------------------------------------------------------- camera paths
def _object_fcurves(obj):
    action = obj.animation_data.action
    slot = getattr(obj.animation_data, "action_slot", None)
    if slot is not None:  # Blender 4.4+: layered actions (5.0 has no Action.fcurves)
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(action, slot)
        if bag is not None:
            return bag.fcurves
    return action.fcurves


def key_property(obj, data_path: str, frames: np.ndarray, values: np.ndarray) -> None:
    """Key ``obj.<data_path>`` at ``frames`` (F,) with ``values`` (F, K), F-curve points set in bulk."""
    values = np.asarray(values, np.float64).reshape(len(frames), -1)
    obj.keyframe_insert(data_path, frame=float(frames[0]))  # creates the action and its F-curves
    curves = {fc.array_index: fc for fc in _object_fcurves(obj) if fc.data_path == data_path}
    for i in range(values.shape[1]):
        fc = curves[i]
        points = fc.keyframe_points
        points.clear()
        points.add(len(frames))
        points.foreach_set("co", np.column_stack([frames, values[:, i]]).astype(np.float32).ravel())
        fc.update()


def create_camera_from_path(result: dict, name: str, collection, *, parent=None, listener: bool = True):
    """An animated camera following a read camera path.

    Parameters
    ----------
    result : dict
        ``bridge.splat_engine.op_cameras`` output: ``matrices`` (F, 4, 4)
        camera-to-world in Blender's convention, ``frames`` (F,), ``lens`` (F,).
    parent : bpy.types.Object, optional
        The splat object the capture belongs to: the camera is parented to it,
        so the poses (in the capture's frame) follow the object's transform.
    listener : bool
        Tick the camera's Soundstage Listener.

    Returns
    -------
    (object, notes)
        Keys are at ``frames`` (the first pose of any frame that two poses
        share); location and rotation (quaternion, signs made continuous so
        interpolation takes the short way) are keyed in bulk.
    """
    from mathutils import Matrix

    mats = np.asarray(result["matrices"], np.float64)
    frames = np.asarray(result["frames"], np.int64)
    notes = []
    frames, first = np.unique(frames, return_index=True)
    if len(first) < len(mats):
        notes.append(f"{len(mats) - len(first)} poses share a frame with another; the first of each was kept")
    mats = mats[first]
    loc = mats[:, :3, 3]
    quat = np.array([list(Matrix(m.tolist()).to_quaternion()) for m in mats])  # per pose, not per splat
    # Continuity: q and -q are the same rotation; flip so neighbours agree.
    if len(quat) > 1:
        flips = np.sign(np.einsum("ij,ij->i", quat[1:], quat[:-1]))
        flips[flips == 0] = 1
        quat[1:] *= np.cumprod(flips)[:, None]
    cam = bpy.data.cameras.new(name)
    lens = np.asarray(result["lens"], np.float64)[first]
    finite = lens[np.isfinite(lens)]
    if len(finite):
        cam.sensor_fit = "HORIZONTAL"
        cam.sensor_width = 36.0
        cam.lens = float(np.median(finite))
        if np.ptp(finite) > 0.01 * cam.lens:
            notes.append(f"the focal length varies ({finite.min():.1f}-{finite.max():.1f} mm); "
                         f"the median {cam.lens:.1f} mm was used")
    obj = bpy.data.objects.new(name, cam)
    collection.objects.link(obj)
    if parent is not None:
        obj.parent = parent
        obj.matrix_parent_inverse.identity()
    obj.rotation_mode = "QUATERNION"
    obj.location = loc[0].tolist()
    obj.rotation_quaternion = quat[0].tolist()
    key_property(obj, "location", frames, loc)
    key_property(obj, "rotation_quaternion", frames, quat)
    if listener and getattr(obj, "soundstage", None) is not None:
        obj.soundstage.listener = True
    obj["soundstage_camera_path"] = {"poses": int(len(frames)), "first_frame": int(frames[0]),
                                     "last_frame": int(frames[-1])}
    return obj, notes


def import_camera_path(path, collection, *, fps: float, frame_start: int = 1, parent=None, listener: bool = True,
                       undo_applied_transform: bool = False, name: str | None = None, mode: str = "auto",
                       python: str = ""):
    """Read a COLMAP model folder or a ``transforms.json`` and make the animated camera.

    Returns
    -------
    (object, notes)
    """
    p = Path(bpy.path.abspath(str(path)))
    if not p.exists():
        raise BridgeError(f"camera path '{p}' not found (a COLMAP model folder, images.txt/.bin or transforms.json)")
    r = call_engine("cameras", None, mode=mode, python=python, path=str(p), fps=float(fps),
                    frame_start=int(frame_start), undo_applied_transform=bool(undo_applied_transform))
    stem = p.stem if p.is_file() else p.name
    return create_camera_from_path(r, name or f"{stem} Camera", collection, parent=parent, listener=listener)
