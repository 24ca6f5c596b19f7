"""Footage and stills in Blender: tracked markers and image regions -> Speakers.

The Blender side of ``soundstage.footage`` (docs/footage.md). This module
gathers what the engine needs from Blender data, and puts the engine's answer
back as Speakers; the operators in ``addon/footage.py`` only call it.

What it reads
-------------
* a Movie Clip tracking marker (or a CSV of pixel positions per frame);
* the camera, evaluated at every frame of the track (``matrix_world`` and the
  view frame Blender itself draws, so sensor fit, shift and lens are Blender's);
* depth at the marker: rays cast through the camera into the scene's meshes
  (``Scene.ray_cast``, the new or chosen speaker skipped) and splat objects, an
  imported depth image sequence, or the point the camera solve reconstructed
  for the track (``track.bundle``).

Conventions handed to the engine (its brief fixes them): pixels x right, y
down, origin at the top-left corner, pixel centres at +0.5. Blender's markers
are normalised (0..1) with the origin at the clip frame's bottom-left corner;
``marker_pixels`` converts. Marker frames are clip frames: the scene frame is
``marker.frame + clip.frame_start - 1`` (``frame_offset`` only says which file
is loaded for a frame and changes no tracking data).

Where the engine runs: in this process when ``soundstage.footage`` imports
(the ``bpy`` module in the engine's environment), else as a one-shot process
in the engine's environment (real Blender's Python has no SciPy). That process
imports this module for ``worker_main`` only, so ``bpy`` is optional here.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import BridgeError

try:  # the engine worker imports this module without Blender (see worker_main)
    import bpy
except ImportError:  # pragma: no cover - only in an engine environment without the bpy module
    bpy = None

#: ID property on speakers made from footage (JSON): where the path came from and its figures.
PROP = "soundstage_footage"
#: Depth choices of ``source_from_track``.
DEPTH_SOURCES = ("SCENE", "IMAGES", "BUNDLE")
#: Blender's Z pass writes this (1e10) where no surface was hit: not a depth.
NO_HIT_DEPTH = 1e9
#: Image formats ``bpy.data.images`` reads for depth sequences.
DEPTH_IMAGE_SUFFIXES = (".exr", ".png", ".tif", ".tiff", ".hdr")


# --------------------------------------------------------------------------- engine access
_engine_cache: dict = {}


def engine_module():
    """``soundstage.footage`` if it imports in this Python, else None."""
    if "module" not in _engine_cache:
        try:
            import soundstage.footage as module
        except Exception:  # no SciPy / scikit-learn here: use the worker
            module = None
        _engine_cache["module"] = module
    return _engine_cache["module"]


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _api(engine, name: str):
    """``engine.<name>``, or from the engine's submodules while its package exports are not there."""
    if hasattr(engine, name):
        return getattr(engine, name)
    import importlib

    for sub in ("camera", "track", "depth", "lift", "clean", "regions", "library"):
        try:
            mod = importlib.import_module(f"{engine.__name__}.{sub}")
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"soundstage.footage has no {name}")


def _engine_run(engine, op: str, request: dict) -> dict:
    """Run one footage operation with the engine package ``engine``; JSON-ready in and out.

    The same function runs in-process and in the worker, so both give the same answer.

    Parameters
    ----------
    engine : module
        ``soundstage.footage``.
    op : {"track", "image", "match"}
    request : dict
        ``track``: ``camera`` (camera JSON), ``frames`` (N,), ``uv`` (N, 2) px,
        ``name``, and ``depth`` (N,) metres (one per row, NaN = none) or
        ``depth_maps`` {frame: ``.npy`` path}; ``kind`` ("z" or "range"),
        ``patch``, ``depth_offset`` (metres), ``smooth``.
        ``image``: ``camera``, ``frame``, ``depth_map`` (``.npy`` path),
        ``regions`` (list of {"name", "box"} or {"name", "mask": ``.npy`` path}; a
        segmentation image arrives as one mask per label), ``kind``.
        ``match``: ``names``, ``folder``.
    """
    if op == "match":
        found = _api(engine, "match_library")(list(request["names"]), request["folder"])
        matches = found.get("matches", found) if isinstance(found, dict) else found
        return {"matches": {str(k): str(v) for k, v in matches.items() if v}}
    camera = _api(engine, "Camera").from_json(request["camera"], where=f"camera '{request['camera'].get('name')}'")
    kind = request.get("kind", "z")
    if op == "track":
        track = _api(engine, "Track")(np.asarray(request["frames"], np.int64),
                                      np.asarray(request["uv"], np.float64).reshape(-1, 2),
                                      name=request.get("name", ""))
        if request.get("depth_maps"):
            depth = _api(engine, "DepthSequence")({int(f): p for f, p in request["depth_maps"].items()})
        else:
            depth = np.asarray(request["depth"], np.float64)
        lift = _api(engine, "lift_track")(camera, track, depth, patch=int(request.get("patch", 5)), kind=kind,
                                          depth_offset=float(request.get("depth_offset", 0.0)))
        ok = np.asarray(lift.valid, bool)
        clean = _api(engine, "clean_path")(np.asarray(lift.frames)[ok], np.asarray(lift.positions)[ok],
                                           smooth=int(request.get("smooth", 0)))
        return {"lift": {"frames": np.asarray(lift.frames).tolist(),
                         "positions": np.asarray(lift.positions, float).tolist(),
                         "valid": ok.tolist(), "reasons": {str(int(k)): str(v) for k, v in lift.reasons.items()},
                         "messages": [str(m) for m in lift.messages]},
                "clean": {"frames": np.asarray(clean.frames).tolist(),
                          "positions": np.asarray(clean.positions, float).tolist(),
                          "inlier": np.asarray(clean.inlier, bool).tolist(),
                          "filled": np.asarray(clean.filled, bool).tolist(),
                          "outlier_frames": [int(f) for f in clean.outlier_frames],
                          "gap_frames": [int(f) for f in clean.gap_frames]}}
    if op == "image":
        import inspect

        depth_map = np.load(request["depth_map"])
        regions = [np.load(r["mask"]) if r.get("mask") else tuple(float(v) for v in r["box"])
                   for r in request["regions"]]
        fn = _api(engine, "sources_from_image")
        kw = {"kind": kind} if "kind" in inspect.signature(fn).parameters else {}
        found = fn(camera, int(request["frame"]), depth_map, regions, **kw)
        # One result per region, in order: the names are the bridge's (the user's region names).
        return {"sources": [{"name": r["name"], "position": np.asarray(s["position"], float).tolist(),
                             "pixel": np.asarray(s["pixel"], float).tolist(), "depth": float(s["depth"]),
                             "n_pixels": int(s["n_pixels"])} for r, s in zip(request["regions"], found)]}
    raise ValueError(f"unknown footage operation {op!r}")


def worker_main(argv=None) -> int:
    """Engine-side entry point: ``REQUEST.json`` -> ``OUT.json``; exit 2 with ``{"error"}`` for user errors."""
    argv = sys.argv[1:] if argv is None else argv
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import soundstage.footage as engine
    from soundstage.errors import SoundstageError

    try:
        out, status = _engine_run(engine, req["op"], req["request"]), 0
    except SoundstageError as e:
        out, status = {"error": _one_line(e)}, 2
    Path(req["out"]).write_text(json.dumps(out), encoding="utf-8")
    return status


_WORKER_ARGS = ["-c", "import sys; from bridge.footage import worker_main; sys.exit(worker_main(sys.argv[1:]))"]


def call_engine(op: str, request: dict, *, mode: str = "auto", python: str = "") -> dict:
    """Run a footage operation in-process or in the engine's environment (like ``bridge.splats``).

    Raises
    ------
    BridgeError
        The engine's one-line message, or why the worker could not run.
    """
    engine = engine_module()
    if mode == "inprocess" or (mode == "auto" and engine is not None):
        if engine is None:
            raise BridgeError("the Soundstage engine does not import in this Python; use the worker mode")
        from soundstage.errors import SoundstageError

        try:
            return json.loads(json.dumps(_engine_run(engine, op, request)))  # same plain values as the worker
        except SoundstageError as e:
            raise BridgeError(_one_line(e)) from None
    from . import runner

    py = runner.find_engine_python(python)
    with tempfile.TemporaryDirectory(prefix="soundstage-footage-") as tmp:
        req_path = Path(tmp) / "request.json"
        out = Path(tmp) / "out.json"
        req_path.write_text(json.dumps({"op": op, "request": request, "out": str(out)}), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        env["PYTHONPATH"] = str(runner.EXT_ROOT)  # this module and the add-on's own engine first
        try:
            proc = subprocess.run([str(py), *_WORKER_ARGS, str(req_path)], env=env, cwd=tmp,
                                  capture_output=True, text=True, encoding="utf-8", errors="replace")
        except OSError as e:
            raise BridgeError(f"cannot start the engine with {py} ({e.strerror or e}); "
                              "fix Engine Python in the Soundstage add-on preferences") from None
        if proc.returncode not in (0, 2) or not out.is_file():
            tail = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
            raise BridgeError(f"the engine worker stopped (exit status {proc.returncode}) during footage "
                              f"'{op}': {tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
    if "error" in result:
        raise BridgeError(result["error"])
    return result


# --------------------------------------------------------------------------- the 2-D track
def find_clip(name: str = ""):
    """The Movie Clip called ``name``, or the only one in the file.

    Raises
    ------
    BridgeError
        None by that name, none at all, or several and no name.
    """
    if name:
        clip = bpy.data.movieclips.get(name)
        if clip is None:
            raise BridgeError(f"no Movie Clip called '{name}': open the footage in the Movie Clip Editor "
                              "or pick a clip that exists")
        return clip
    clips = list(bpy.data.movieclips)
    if len(clips) == 1:
        return clips[0]
    if not clips:
        raise BridgeError("no Movie Clip in this file: open the footage in the Movie Clip Editor and track "
                          "the sounding object, or give a CSV of marker positions")
    raise BridgeError(f"{len(clips)} Movie Clips in this file: choose one in Clip")


def find_track(clip, name: str = ""):
    """The tracking track ``name`` of the clip's camera tracks (or of an object's), else the active one."""
    tracking = clip.tracking
    if name:
        for obj in tracking.objects:
            track = obj.tracks.get(name)
            if track is not None:
                return track
        raise BridgeError(f"Movie Clip '{clip.name}' has no track called '{name}': pick one of its tracking "
                          "markers (Movie Clip Editor, Track panel)")
    if tracking.tracks.active is not None:
        return tracking.tracks.active
    if len(tracking.tracks) == 1:
        return tracking.tracks[0]
    raise BridgeError(f"Movie Clip '{clip.name}': choose a track (no active track among its "
                      f"{len(tracking.tracks)})")


def marker_pixels(co, offset, size) -> tuple[float, float]:
    """A marker position in engine pixels.

    Parameters
    ----------
    co, offset : sequence of 2 floats
        ``marker.co`` and ``track.offset``: normalised 0..1 of the clip frame,
        origin bottom-left (Blender's convention).
    size : (W, H)
        Clip size in pixels.

    Returns
    -------
    (x, y)
        Pixels, x right, y down, origin top-left (0 and W are the frame's edges).
    """
    w, h = size
    return (float(co[0] + offset[0]) * w, (1.0 - float(co[1] + offset[1])) * h)


def clip_track(clip, track) -> dict:
    """The track's markers as scene frames and engine pixels.

    Returns
    -------
    dict
        ``frames`` (N,) scene frames of enabled markers, ``uv`` (N, 2) pixels,
        ``size`` (W, H), ``first``/``last`` scene frames, ``gaps`` list of scene
        frames inside that span without an enabled marker (a disabled marker or
        none), ``name``.

    Raises
    ------
    BridgeError
        The clip has no size (its file is missing) or the track no enabled marker.
    """
    size = (int(clip.size[0]), int(clip.size[1]))
    if size[0] <= 0 or size[1] <= 0:
        raise BridgeError(f"Movie Clip '{clip.name}': footage '{clip.filepath}' cannot be read (size 0): "
                          "relink the clip's file")
    shift = int(clip.frame_start) - 1  # clip frame 1 plays at scene frame clip.frame_start
    rows = sorted((m.frame + shift, marker_pixels(m.co, track.offset, size)) for m in track.markers if not m.mute)
    if not rows:
        raise BridgeError(f"track '{track.name}' of Movie Clip '{clip.name}' has no enabled marker: "
                          "track the object in the Movie Clip Editor first")
    frames = np.array([r[0] for r in rows], np.int64)
    uv = np.array([r[1] for r in rows], np.float64)
    span = np.arange(frames[0], frames[-1] + 1)
    gaps = np.setdiff1d(span, frames)
    return {"frames": frames, "uv": uv, "size": size, "first": int(frames[0]), "last": int(frames[-1]),
            "gaps": gaps.tolist(), "name": track.name}


def csv_track(path, size, *, mode: str = "auto", python: str = "") -> dict:
    """A CSV of pixel positions (``frame,x,y``; engine ``read_track_csv`` rules) as ``clip_track`` gives it.

    The CSV's frames are scene frames and its pixels are the engine's (top-left origin).
    """
    p = Path(bpy.path.abspath(str(path)))
    if not p.is_file():
        raise BridgeError(f"track file '{p}' not found: give a CSV with columns frame,x,y")
    engine = engine_module()
    if engine is None:  # the same rules as the engine's reader would need SciPy-free parsing here; use it anyway
        raise BridgeError("reading a CSV track needs the engine in this Python; use a Movie Clip marker or "
                          "run Blender with the bpy module in the engine's environment")
    from soundstage.errors import SoundstageError

    try:
        t = engine.read_track_csv(p)
    except SoundstageError as e:
        raise BridgeError(_one_line(e)) from None
    frames = np.asarray(t.frames, np.int64)
    uv = np.asarray(t.uv, np.float64).reshape(-1, 2)
    ok = np.all(np.isfinite(uv), axis=1)
    if not ok.any():
        raise BridgeError(f"track file '{p}' has no row with a position")
    frames, uv = frames[ok], uv[ok]
    gaps = np.setdiff1d(np.arange(frames.min(), frames.max() + 1), frames)
    return {"frames": frames, "uv": uv, "size": tuple(int(v) for v in size), "first": int(frames.min()),
            "last": int(frames.max()), "gaps": gaps.tolist(), "name": getattr(t, "name", "") or p.stem}


# --------------------------------------------------------------------------- the camera
def _chain(obj):
    while obj is not None:
        yield obj
        obj = obj.parent


def camera_moves(cam, scene=None) -> bool:
    """True when the camera (or a parent) is animated, driven or constrained.

    A Camera Solver constraint counts only when its clip has a valid solve
    (otherwise it leaves the camera where it is).
    """
    for o in _chain(cam):
        ad = o.animation_data
        if ad is not None and (ad.action is not None or len(ad.drivers) or len(ad.nla_tracks)):
            return True
        for c in o.constraints:
            if c.mute:
                continue
            if c.type == "CAMERA_SOLVER":
                clip = scene.active_clip if (c.use_active_clip and scene is not None) else c.clip
                if clip is None or not clip.tracking.reconstruction.is_valid:
                    continue
            return True
    return False


def check_camera(clip, cam, *, static_camera: bool = False, scene=None) -> None:
    """Refuse a shot whose camera follows neither a solve nor an animation (unless it is said to stand still).

    Raises
    ------
    BridgeError
        Naming the clip and the camera, saying what to do.
    """
    if cam is None or cam.type != "CAMERA":
        raise BridgeError("no camera: set the scene camera (Scene properties) or choose one in Camera")
    if static_camera or camera_moves(cam, scene):
        return
    solved = clip is not None and clip.tracking.reconstruction.is_valid
    if not solved:
        what = f"Movie Clip '{clip.name}' has no camera solve" if clip is not None else "the track has no solve"
        raise BridgeError(f"{what} and camera '{cam.name}' does not move: Solve Camera Motion in the Movie Clip "
                          "Editor (then Setup Tracking Scene), or animate the camera, or tick Static Camera for "
                          "a locked-off shot")
    raise BridgeError(f"Movie Clip '{clip.name}' is solved but camera '{cam.name}' does not follow the solve: "
                      "add a Camera Solver constraint (Movie Clip Editor > Setup Tracking Scene)")


def view_frame(cam_data, scene) -> tuple[float, float, float, float]:
    """Blender's own camera frame at unit distance: (x_left, x_right, y_bottom, y_top), camera space.

    Taken from ``Camera.view_frame`` (the frame the viewport draws), so the
    sensor fit, shift and aspect are exactly Blender's.
    """
    corners = np.array([list(v) for v in cam_data.view_frame(scene=scene)], np.float64)
    if cam_data.type != "PERSP":
        raise BridgeError(f"camera '{cam_data.name}' is {cam_data.type.lower()}: footage tools need a "
                          "perspective camera")
    xy = corners[:, :2] / -corners[:, 2:3]
    return float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())


def intrinsics(frame_box, size) -> dict:
    """Pinhole intrinsics in engine pixels from a view frame box and the image size.

    Returns
    -------
    dict
        ``fx``, ``fy`` focal lengths in px, ``cx``, ``cy`` principal point in px
        (top-left origin), ``shift`` (shift_x, shift_y) in Blender units
        (fraction of the larger image dimension) and ``sensor_per_lens`` =
        sensor / lens for the larger dimension.
    """
    xl, xr, yb, yt = frame_box
    w, h = size
    fx, fy = w / (xr - xl), h / (yt - yb)
    big = max(w, h)
    # The frame's centre in focal units is the shift, in units of the larger dimension.
    return {"fx": fx, "fy": fy, "cx": w * (-xl) / (xr - xl), "cy": h * yt / (yt - yb),
            "shift": (fx * (xl + xr) / 2 / big, fy * (yb + yt) / 2 / big), "sensor_per_lens": big / fx}


def pixel_rays(matrix_world, frame_box, uv, size) -> tuple[np.ndarray, np.ndarray]:
    """World rays through pixels (Blender's camera: looks along local -Z, +Y up).

    Parameters
    ----------
    matrix_world : (4, 4)
    frame_box : (x_left, x_right, y_bottom, y_top)
        ``view_frame`` at unit distance.
    uv : (N, 2) pixels, top-left origin.
    size : (W, H)

    Returns
    -------
    origins (N, 3), directions (N, 3) unit, world space.
    """
    m = np.asarray(matrix_world, np.float64)
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    xl, xr, yb, yt = frame_box
    x = xl + (xr - xl) * uv[:, 0] / size[0]
    y = yt - (yt - yb) * uv[:, 1] / size[1]
    d_cam = np.column_stack([x, y, -np.ones(len(uv))])
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)  # drop the object's scale
    d = d_cam @ rot.T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.repeat(m[None, :3, 3], len(uv), axis=0), d


def sample_camera(scene, cam, frames, size, *, rays_uv: dict | None = None, cast: bool = False,
                  ignore=(), progress=None) -> dict:
    """Evaluate the camera (and optionally cast marker rays into the scene's meshes) at each frame.

    Parameters
    ----------
    scene : bpy.types.Scene
        The context scene.
    cam : bpy.types.Object
    frames : (F,) int
        Scene frames.
    size : (W, H)
        Image size in pixels (the clip's).
    rays_uv : dict, optional
        ``{frame: (x, y)}`` pixels to cast a ray through at that frame.
    cast : bool
        Cast those rays into the scene's visible meshes at that frame (moving
        objects are where they are on that frame).
    ignore : iterable of objects
        Objects a ray passes through (the speaker being made, room proxies).
    progress : callable, optional
        ``progress(fraction)``.

    Returns
    -------
    dict
        ``matrices`` (F, 4, 4), ``boxes`` (F, 4) view frames, ``lens`` (F,) mm,
        and for rays: ``origins``/``directions`` {frame: (3,)}, ``hits`` {frame:
        (distance, point (3,), object name)} for the meshes hit.
    """
    from mathutils import Vector

    ignore_names = {o.name for o in ignore if o is not None}
    original = (scene.frame_current, scene.frame_subframe)
    mats, boxes, lens, origins, dirs, hits = [], [], [], {}, {}, {}
    frames = [int(f) for f in frames]
    try:
        for i, f in enumerate(frames):
            scene.frame_set(f)
            dg = bpy.context.evaluated_depsgraph_get()
            ev = cam.evaluated_get(dg)
            m = np.array(ev.matrix_world, np.float64)
            box = view_frame(ev.data, scene)
            mats.append(m)
            boxes.append(box)
            lens.append(float(ev.data.lens))
            if rays_uv is not None and f in rays_uv:
                o, d = pixel_rays(m, box, [rays_uv[f]], size)
                origins[f], dirs[f] = o[0], d[0]
                if cast:
                    hit = _cast_meshes(scene, dg, o[0], d[0], ignore_names)
                    if hit is not None:
                        hits[f] = hit
            if progress is not None and i % 16 == 0:
                progress(i / max(len(frames), 1))
    finally:
        scene.frame_set(original[0], subframe=original[1])
    return {"matrices": np.array(mats), "boxes": np.array(boxes), "lens": np.array(lens),
            "origins": origins, "directions": dirs, "hits": hits}


def _is_room_proxy(obj) -> bool:
    """A room made by the splat tools stands in for walls the splats already show: look through it."""
    return "soundstage_room" in obj.keys()


def _cast_meshes(scene, depsgraph, origin, direction, ignore_names) -> tuple | None:
    """Nearest mesh hit of a world ray, passing through ignored objects and room proxies."""
    from mathutils import Vector

    start = np.asarray(origin, np.float64)
    d = np.asarray(direction, np.float64)
    for _ in range(32):
        ok, loc, _n, _i, obj, _m = scene.ray_cast(depsgraph, Vector(start.tolist()), Vector(d.tolist()))
        if not ok or obj is None:
            return None
        orig = getattr(obj, "original", obj)
        p = np.array(loc, np.float64)
        if orig.name in ignore_names or _is_room_proxy(orig) or any(a.name in ignore_names for a in _chain(orig)):
            start = p + 1e-4 * d
            continue
        return float(np.linalg.norm(p - origin)), p, orig.name
    return None


def cast_splats(scene, origins: dict, directions: dict, *, mode: str = "auto", python: str = "") -> dict:
    """Nearest splat hit of each ray, over the scene's visible splat objects (splats do not move).

    All rays of a splat object are cast in one engine call (``bridge.splats``'s
    ``cast`` operation, in-process or in one worker run).

    Returns
    -------
    dict
        ``{frame: (distance, point (3,), object name)}``.
    """
    from . import splats as splat_bridge

    objs = [o for o in splat_bridge.splat_objects(scene) if o.visible_get()]
    if not objs or not origins:
        return {}
    keys = sorted(origins)
    o_w = np.array([origins[k] for k in keys], np.float64)
    d_w = np.array([directions[k] for k in keys], np.float64)
    best: dict = {}
    for obj in objs:
        m = np.array(obj.matrix_world, np.float64)
        if abs(np.linalg.det(m[:3, :3])) < 1e-12:
            continue
        inv = np.linalg.inv(m)
        o_l = o_w @ inv[:3, :3].T + inv[:3, 3]
        d_l = d_w @ inv[:3, :3].T
        d_l /= np.linalg.norm(d_l, axis=1, keepdims=True)
        arrays = splat_bridge.object_arrays(obj, ("positions", "scales", "rotations", "opacities"))
        r = splat_bridge.call_engine("cast", arrays, mode=mode, python=python, origins=o_l.tolist(),
                                     directions=d_l.tolist(), source=obj.name)
        for i, k in enumerate(keys):
            if not bool(np.asarray(r["hit"])[i]):
                continue
            p = m[:3, :3] @ np.asarray(r["point"][i], np.float64) + m[:3, 3]
            dist = float(np.linalg.norm(p - o_w[i]))
            if k not in best or dist < best[k][0]:
                best[k] = (dist, p, obj.name)
    return best


def camera_json(cam, frames, sampled: dict, size) -> dict:
    """The engine's camera path JSON (``soundstage.footage.Camera.from_json``) for the sampled frames.

    The sensor is derived from Blender's own view frame (so sensor fit, shift
    and the clip's aspect are accounted for) and given for the larger image
    dimension (the engine's AUTO fit); the focal length is per frame (zooms).

    Raises
    ------
    BridgeError
        The clip and the render resolution have different shapes (non-square pixels).
    """
    boxes = np.asarray(sampled["boxes"], np.float64)
    intr = [intrinsics(b, size) for b in boxes]
    k = intr[0]
    if abs(k["fx"] - k["fy"]) > 0.01 * k["fx"]:
        raise BridgeError(f"camera '{cam.name}': the image ({size[0]} x {size[1]} px) and the scene's render "
                          "resolution have different shapes: set the render resolution to the clip's size")
    lens = np.asarray(sampled["lens"], np.float64)
    return {"version": 1, "name": cam.name, "frames": [int(f) for f in frames],
            "matrix_world": [np.asarray(m, float).reshape(-1).tolist() for m in sampled["matrices"]],
            "lens_mm": lens.tolist(), "sensor_mm": float(lens[0] * k["sensor_per_lens"]), "sensor_fit": "AUTO",
            "resolution": [int(size[0]), int(size[1])], "shift": [float(k["shift"][0]), float(k["shift"][1])]}


# --------------------------------------------------------------------------- depth
def image_pixels(img) -> np.ndarray:
    """An image datablock's first channel as (H, W) float64, row 0 at the TOP (Blender stores bottom-up)."""
    w, h = int(img.size[0]), int(img.size[1])
    if w <= 0 or h <= 0:
        raise BridgeError(f"image '{img.name}' ('{img.filepath}') cannot be read: relink or reload it")
    buf = np.empty(w * h * img.channels, np.float32)
    img.pixels.foreach_get(buf)
    return buf.reshape(h, w, img.channels)[::-1, :, 0].astype(np.float64)


def load_image_array(path, *, data: bool = True) -> np.ndarray:
    """Read an image file with Blender (EXR, PNG...) as (H, W), top row first; the datablock is removed again.

    ``data``: read the numbers as they are (Non-Color), as depth and labels need.
    """
    p = Path(bpy.path.abspath(str(path)))
    if not p.is_file():
        raise BridgeError(f"image file '{p}' not found")
    try:
        img = bpy.data.images.load(str(p), check_existing=False)
    except RuntimeError as e:
        raise BridgeError(f"cannot read image '{p}': {_one_line(e)}") from None
    try:
        # Non-Color: the numbers as stored in the file. Otherwise Blender converts from the colour
        # space it guesses (bpy 5 takes an EXR's own tag, 4.5 assumes linear; 16-bit PNG/TIFF: sRGB).
        if data:
            img.colorspace_settings.is_data = True
        return image_pixels(img)
    finally:
        bpy.data.images.remove(img)


def frame_number(path: Path) -> int | None:
    """The frame number of a sequence file: the last run of digits in its stem (``depth_0042.exr`` -> 42)."""
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else None


def depth_files(path, *, offset: int = 0) -> dict:
    """``{scene frame: file}`` of a depth image sequence: a folder, or one of its files.

    Files are matched by suffix (EXR, PNG, TIFF, HDR, ``.npy``) and their stem
    up to the frame number; scene frame = file number + ``offset``.
    """
    p = Path(bpy.path.abspath(str(path)))
    if p.is_dir():
        files = [f for f in p.iterdir() if f.suffix.lower() in DEPTH_IMAGE_SUFFIXES + (".npy",)]
    elif p.is_file():
        stem = re.sub(r"\d+$", "", p.stem)
        files = [f for f in p.parent.iterdir() if f.suffix.lower() == p.suffix.lower()
                 and re.sub(r"\d+$", "", f.stem) == stem]
    else:
        raise BridgeError(f"depth images '{p}' not found: give the folder of the depth sequence or one of its files")
    out = {}
    for f in sorted(files):
        n = frame_number(f)
        if n is not None:
            out[n + int(offset)] = f
    if not out:
        raise BridgeError(f"no numbered depth images in '{p}' (e.g. depth_0001.exr, depth_0002.exr...)")
    return out


def read_depth(path, *, scale: float = 1.0) -> np.ndarray:
    """One depth map in metres (H, W), top row first; no-hit values (<= 0, >= 1e9, NaN) become NaN."""
    p = Path(path)
    arr = np.load(p).astype(np.float64) if p.suffix.lower() == ".npy" else load_image_array(p)
    arr = arr * float(scale)
    return np.where(np.isfinite(arr) & (arr > 0) & (arr < NO_HIT_DEPTH), arr, np.nan)


def bundle_world(track, cam, clip) -> np.ndarray:
    """The solve's reconstructed point of a track, in world space.

    Blender's Camera Solver constraint puts the solved camera on top of the
    camera object's own transform (its orientation from Set Floor / Set
    Origin), and draws the bundles with that transform too; without the
    constraint the bundle is taken as world coordinates.
    """
    p = np.append(np.array(track.bundle, np.float64), 1.0)
    solver = next((c for c in cam.constraints if c.type == "CAMERA_SOLVER" and not c.mute), None)
    if solver is None:
        return p[:3]
    base = np.array(cam.matrix_basis, np.float64)
    if cam.parent is not None:
        base = np.array(cam.parent.matrix_world, np.float64) @ np.array(cam.matrix_parent_inverse) @ base
    return (base @ p)[:3]


# --------------------------------------------------------------------------- speakers and sounds
def load_sound(path):
    """A Sound datablock for a file (reused when already loaded)."""
    p = Path(bpy.path.abspath(str(path)))
    if not p.is_file():
        raise BridgeError(f"sound file '{p}' not found: pick an existing audio file")
    try:
        return bpy.data.sounds.load(str(p), check_existing=True)
    except RuntimeError as e:
        raise BridgeError(f"cannot load sound '{p}': {_one_line(e)}") from None


def match_sounds(names, folder, *, mode: str = "auto", python: str = "") -> dict:
    """``{name: sound file}`` from a sound library folder (engine ``match_library``); unmatched names left out."""
    p = Path(bpy.path.abspath(str(folder)))
    if not p.is_dir():
        raise BridgeError(f"sound library folder '{p}' not found: pick a folder of sound files")
    return call_engine("match", {"names": list(names), "folder": str(p)}, mode=mode, python=python)["matches"]


def find_speaker(scene, name: str):
    """The speaker to move (``name``), or None for a new one."""
    if not name:
        return None
    obj = scene.objects.get(name)
    if obj is None or obj.type != "SPEAKER":
        raise BridgeError(f"no Speaker called '{name}' in scene '{scene.name}': pick a speaker, or leave "
                          "Speaker empty to add a new one")
    if obj.parent is not None:
        raise BridgeError(f"speaker '{name}' has a parent ('{obj.parent.name}'): the path is in world space; "
                          "clear the parent or leave Speaker empty to add a new one")
    return obj


def add_speaker(context, name: str, location, *, start_frame: int, sound=None):
    """A new Speaker at ``location`` whose sound starts at ``start_frame`` (its NLA sound strip).

    The stock ``object.speaker_add`` makes the sound strip (as Add Source does);
    it puts it at the current frame, so that is moved there first.
    """
    scene = context.scene
    current = scene.frame_current
    try:
        scene.frame_current = int(start_frame)
        bpy.ops.object.speaker_add(location=[float(v) for v in location])
    finally:
        scene.frame_current = current
    obj = context.active_object
    obj.name = name
    obj.data.name = name
    if sound is not None:
        obj.data.sound = sound
    return obj


def key_path(obj, frames, positions) -> None:
    """Key ``location`` on every frame, LINEAR interpolation (straight between frames, no Bezier overshoot).

    Parameters
    ----------
    frames : (F,) int
    positions : (F, 3) world metres (``obj`` has no parent).
    """
    from . import splats as splat_bridge

    frames = np.asarray(frames, np.float64)
    positions = np.asarray(positions, np.float64).reshape(-1, 3)
    obj.location = positions[0].tolist()
    splat_bridge.key_property(obj, "location", frames, positions)
    for fc in splat_bridge._object_fcurves(obj):
        if fc.data_path == "location":
            for kp in fc.keyframe_points:
                kp.interpolation = "LINEAR"
            fc.update()


def path_figures(result: dict) -> dict:
    """Before/after-cleaning figures of an engine ``track`` result (no ground truth needed).

    Distances of the raw back-projected points from the cleaned path:
    ``raw_rms_m`` and ``raw_max_m`` over every lifted point (before cleaning),
    ``outlier_median_m`` over the points DBSCAN removed, ``kept_median_m`` over
    the points kept (0 unless the path is smoothed).
    """
    lift, clean = result["lift"], result["clean"]
    cf = np.asarray(clean["frames"], np.int64)
    cp = np.asarray(clean["positions"], np.float64)
    lf = np.asarray(lift["frames"], np.int64)
    lp = np.asarray(lift["positions"], np.float64)
    ok = np.asarray(lift["valid"], bool) & np.isin(lf, cf)
    dev = np.linalg.norm(lp[ok] - cp[np.searchsorted(cf, lf[ok])], axis=1)
    kept = np.isin(lf[ok], cf[np.asarray(clean["inlier"], bool)])

    def stat(fn, x):
        return float(fn(x)) if len(x) else 0.0

    return {"raw_rms_m": stat(lambda x: np.sqrt(np.mean(x ** 2)), dev), "raw_max_m": stat(np.max, dev),
            "outlier_median_m": stat(np.median, dev[~kept]), "kept_median_m": stat(np.median, dev[kept]),
            "lifted": int(ok.sum()), "markers": int(len(lf)), "outliers": len(clean["outlier_frames"]),
            "filled": int(np.sum(clean["filled"])), "keyed": int(len(cf)),
            "path_length_m": float(np.linalg.norm(np.diff(cp, axis=0), axis=1).sum())}


def _frames_text(frames, limit: int = 6) -> str:
    frames = [int(f) for f in frames]
    head = ", ".join(str(f) for f in frames[:limit])
    return head + (f" and {len(frames) - limit} more" if len(frames) > limit else "")


# --------------------------------------------------------------------------- tracked footage -> speaker
def source_from_track(context, *, clip: str = "", track: str = "", csv_path: str = "", camera: str = "",
                      depth: str = "SCENE", depth_path: str = "", depth_kind: str = "z", depth_scale: float = 1.0,
                      depth_frame_offset: int = 0, depth_offset: float = 0.0, patch: int = 5, smooth: int = 0,
                      speaker: str = "", sound: str = "", library: str = "", static_camera: bool = False,
                      mode: str = "auto", python: str = "", progress=None):
    """A Speaker following a tracked marker, lifted to 3-D and cleaned by the engine.

    Parameters
    ----------
    context : bpy.types.Context
    clip, track : str
        Movie Clip and track names (empty: the only clip, its active track).
    csv_path : str
        Instead of a clip: a CSV of ``frame,x,y`` pixels (top-left origin,
        scene frames) at the scene's render resolution.
    camera : str
        Camera object (empty: the scene camera).
    depth : {"SCENE", "IMAGES", "BUNDLE"}
        Ray casts into the scene's meshes and splats (range along the ray), a
        depth image sequence at ``depth_path`` (``depth_kind`` "z" or "range",
        values x ``depth_scale`` = metres, file number + ``depth_frame_offset``
        = scene frame), or the solve's reconstructed point of the track.
    depth_offset : float
        Metres added along the ray (the object's centre lies behind the surface the marker sits on).
    patch : int
        Depth-map patch (pixels) whose median is the marker's depth.
    smooth : int
        Savitzky-Golay window of the cleaned path (0: none).
    speaker : str
        Move this speaker instead of adding one named after the marker.
    sound, library : str
        A sound file, or a folder of sounds matched to the marker's name.
    static_camera : bool
        Accept a camera that neither moves nor follows a solve (a locked-off shot).

    Returns
    -------
    (speaker object, report dict)
        The report has ``figures`` (``path_figures``), ``notes`` (warnings:
        gaps filled, frames dropped and why) and ``sound``.

    Raises
    ------
    BridgeError
        One line for anything the user can fix; nothing is created then.
    """
    scene = context.scene
    if depth not in DEPTH_SOURCES:
        raise BridgeError(f"unknown depth source '{depth}' ({', '.join(DEPTH_SOURCES)})")
    clip_obj = None
    if csv_path:
        r = scene.render
        size = (max(1, round(r.resolution_x * r.resolution_percentage / 100)),
                max(1, round(r.resolution_y * r.resolution_percentage / 100)))
        t = csv_track(csv_path, size)
        tr = None
    else:
        clip_obj = find_clip(clip)
        tr = find_track(clip_obj, track)
        t = clip_track(clip_obj, tr)
    cam = scene.objects.get(camera) if camera else scene.camera
    if camera and cam is None:
        raise BridgeError(f"no camera called '{camera}' in scene '{scene.name}'")
    check_camera(clip_obj, cam, static_camera=static_camera, scene=scene)
    spk = find_speaker(scene, speaker)
    snd = load_sound(sound) if sound else None
    if library:
        lib = Path(bpy.path.abspath(library))
        if not lib.is_dir():
            raise BridgeError(f"sound library folder '{lib}' not found: pick a folder of sound files")
    if depth == "BUNDLE":
        if tr is None:
            raise BridgeError("a CSV track has no reconstructed point: choose Scene or Depth Images as depth")
        if not tr.has_bundle:
            raise BridgeError(f"track '{tr.name}' of Movie Clip '{clip_obj.name}' has no reconstructed point: "
                              "Solve Camera Motion with this track, or choose Scene or Depth Images as depth")
    maps = None
    if depth == "IMAGES":
        if not depth_path:
            raise BridgeError("no depth images given: pick the folder (or a file) of the depth sequence")
        maps = depth_files(depth_path, offset=depth_frame_offset)
        missing = [f for f in t["frames"].tolist() if f not in maps]
        if len(missing) == len(t["frames"]):
            raise BridgeError(f"depth images '{depth_path}' have no file for the track's frames {t['first']}-"
                              f"{t['last']} (their numbers + offset run {min(maps)}-{max(maps)}): set the frame "
                              "offset")

    frames = t["frames"]
    uv = t["uv"]
    rays_uv = {int(f): tuple(p) for f, p in zip(frames, uv)}
    sampled = sample_camera(scene, cam, frames, t["size"], rays_uv=rays_uv, cast=depth == "SCENE",
                            ignore=[spk] if spk is not None else [], progress=progress)
    request = {"camera": camera_json(cam, frames, sampled, t["size"]), "frames": frames.tolist(),
               "uv": uv.tolist(), "name": t["name"], "patch": int(patch), "depth_offset": float(depth_offset),
               "smooth": int(smooth)}
    notes = []
    with tempfile.TemporaryDirectory(prefix="soundstage-footage-") as tmp:
        if depth == "SCENE":
            hits = dict(sampled["hits"])
            for f, hit in cast_splats(scene, sampled["origins"], sampled["directions"], mode=mode,
                                      python=python).items():
                if f not in hits or hit[0] < hits[f][0]:
                    hits[f] = hit
            request["depth"] = [hits[int(f)][0] if int(f) in hits else float("nan") for f in frames]
            request["kind"] = "range"
        elif depth == "BUNDLE":
            p = np.append(bundle_world(tr, cam, clip_obj), 1.0)
            request["depth"] = [float(-(np.linalg.inv(m) @ p)[2]) for m in sampled["matrices"]]
            request["kind"] = "z"
        else:
            request["depth_maps"] = {}
            for f in frames.tolist():
                if f in maps:
                    out = Path(tmp) / f"depth_{f:06d}.npy"
                    np.save(out, read_depth(maps[f], scale=depth_scale))
                    request["depth_maps"][str(f)] = str(out)
            request["kind"] = "range" if depth_kind.lower() == "range" else "z"
        result = call_engine("track", request, mode=mode, python=python)

    figures = path_figures(result)
    by_reason: dict = {}
    for f, why in result["lift"]["reasons"].items():
        by_reason.setdefault(why, []).append(int(f))
    size = t["size"]
    for why, fs in sorted(by_reason.items()):
        fs.sort()
        if why == "no depth at marker":
            where = ", ".join(f"{f} (pixel {rays_uv[f][0]:.0f}, {rays_uv[f][1]:.0f})" for f in fs[:3])
            more = f" and {len(fs) - 3} more" if len(fs) > 3 else ""
            notes.append(f"'{t['name']}': no depth at the marker on frame {where}{more}; filled by interpolation")
        elif why == "outside frame":
            notes.append(f"'{t['name']}': marker outside the {size[0]} x {size[1]} frame on frames "
                         f"{_frames_text(fs)}; dropped and filled by interpolation")
        else:
            notes.append(f"'{t['name']}': {why} on frames {_frames_text(fs)}; dropped and filled")
    if t["gaps"]:
        notes.append(f"'{t['name']}': gaps in the track (frames {_frames_text(t['gaps'])}) filled by interpolation")
    if figures["outliers"]:
        notes.append(f"'{t['name']}': {figures['outliers']} wild points removed (frames "
                     f"{_frames_text(result['clean']['outlier_frames'])})")

    name = t["name"] or "Tracked Source"
    sound_note = ""
    if snd is None and library:
        found = match_sounds([name], library, mode=mode, python=python)
        if name in found:
            snd = load_sound(found[name])
            sound_note = f"sound '{Path(found[name]).name}' from the library"
        else:
            notes.append(f"no sound in library '{library}' matches '{name}': pick one in the Speaker properties")
    elif snd is not None:
        sound_note = f"sound '{snd.name}'"

    cf = np.asarray(result["clean"]["frames"], np.int64)
    cp = np.asarray(result["clean"]["positions"], np.float64)
    if spk is None:
        start = clip_obj.frame_start if clip_obj is not None else scene.frame_start
        spk = add_speaker(context, name, cp[0], start_frame=start, sound=snd)
    elif snd is not None:
        spk.data.sound = snd
    key_path(spk, cf, cp)
    info = {"source": "clip" if clip_obj is not None else "csv",
            "clip": clip_obj.name if clip_obj is not None else "", "track": t["name"],
            "csv": str(csv_path), "camera": cam.name, "depth": depth, "frames": [int(cf[0]), int(cf[-1])],
            "interpolation": "LINEAR", **figures}
    spk[PROP] = json.dumps(info)
    return spk, {"figures": figures, "notes": notes, "sound": sound_note, "frames": (int(cf[0]), int(cf[-1]))}


# --------------------------------------------------------------------------- stills -> speakers
def image_array(ref, *, data: bool = True) -> np.ndarray:
    """(H, W) first channel of an image datablock (by name) or an image / ``.npy`` file, top row first."""
    img = bpy.data.images.get(str(ref))
    if img is not None:
        return image_pixels(img)
    p = Path(bpy.path.abspath(str(ref)))
    if p.suffix.lower() == ".npy" and p.is_file():
        return np.asarray(np.load(p), np.float64)
    if not p.is_file():
        raise BridgeError(f"no image datablock or file called '{ref}': load the image or give its file")
    return load_image_array(p, data=data)


def label_array(ref) -> np.ndarray:
    """Integer labels (H, W) of a segmentation image (datablock or file), top row first.

    Float data (EXR, HDR, ``.npy``) holds the labels as they are; 8-bit images
    read back as label / 255 and 16-bit ones (Blender loads them as float) as
    label / 65535, so they are scaled back.
    """
    img = bpy.data.images.get(str(ref))
    suffix = Path(img.filepath if img is not None else str(ref)).suffix.lower()
    arr = image_array(ref)
    if suffix not in (".npy", ".exr", ".hdr"):
        is_float = img.is_float if img is not None else False
        if img is None:
            probe = bpy.data.images.load(str(Path(bpy.path.abspath(str(ref)))), check_existing=False)
            is_float = probe.is_float
            bpy.data.images.remove(probe)
        arr = arr * (65535.0 if is_float else 255.0)
    return np.rint(np.nan_to_num(arr)).astype(np.int64)


def parse_regions(regions, regions_json: str = "") -> list:
    """Regions from the operator's list and/or JSON text or file: ``[{"name", "box"} | {"name", "mask"}]``."""
    out = [dict(r) for r in regions or []]
    if regions_json:
        text = regions_json
        p = Path(bpy.path.abspath(regions_json))
        if not regions_json.lstrip().startswith(("[", "{")):
            if not p.is_file():
                raise BridgeError(f"regions file '{p}' not found: give a JSON list of {{\"name\", \"box\"}}")
            text = p.read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise BridgeError(f"regions '{regions_json}': not valid JSON ({e.msg}, line {e.lineno})") from None
        if isinstance(doc, dict):  # {"dog": [x0, y0, x1, y1], ...}
            doc = [{"name": k, "box": v} for k, v in doc.items()]
        if not isinstance(doc, list):
            raise BridgeError(f"regions '{regions_json}': expected a list of {{\"name\", \"box\" or \"mask\"}}")
        out += doc
    for i, r in enumerate(out):
        if not isinstance(r, dict) or ("box" not in r and "mask" not in r):
            raise BridgeError(f"region {i + 1}: give a \"box\" [x0, y0, x1, y1] in pixels or a \"mask\" image")
        r.setdefault("name", f"Region {i + 1}")
        if "box" in r:
            try:
                box = [float(v) for v in r["box"]]
            except (TypeError, ValueError):
                box = []
            if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
                raise BridgeError(f"region '{r['name']}': box {r['box']!r} must be [x0, y0, x1, y1] with x1 > x0 "
                                  "and y1 > y0 (pixels from the top-left corner)")
            r["box"] = box
    return out


def sources_from_image(context, *, depth: str, depth_kind: str = "z", depth_scale: float = 1.0, regions=(),
                       regions_json: str = "", segmentation: str = "", label_names: str = "", camera: str = "",
                       frame: int | None = None, library: str = "", mode: str = "auto", python: str = ""):
    """One Speaker per image region at its 3-D centre (engine ``sources_from_image``).

    Parameters
    ----------
    depth : str
        Image datablock name or file (EXR, PNG, ``.npy``): depth per pixel,
        x ``depth_scale`` = metres; its size is the image's pixel grid.
    regions, regions_json : list of dict, str
        Boxes ``[x0, y0, x1, y1]`` (pixels, top-left origin) or masks (image
        files, non-zero = inside), with names.
    segmentation, label_names : str
        A label image (one region per non-zero label) and JSON ``{label: name}``.
    camera, frame
        The camera (empty: the scene camera) evaluated at ``frame`` (the frame the image shows).
    library : str
        Folder of sounds matched to the region names.

    Returns
    -------
    (list of speaker objects, report dict with ``notes``, ``depths``, ``sources``)
    """
    scene = context.scene
    frame = scene.frame_current if frame is None else int(frame)
    if not depth:
        raise BridgeError("no depth map given: pick the depth image of the frame (EXR, PNG or .npy)")
    cam = scene.objects.get(camera) if camera else scene.camera
    if cam is None or cam.type != "CAMERA":
        raise BridgeError(f"no camera {camera!r}: set the scene camera or choose one in Camera" if camera else
                          "no camera: set the scene camera (Scene properties) or choose one in Camera")
    if library and not Path(bpy.path.abspath(library)).is_dir():
        raise BridgeError(f"sound library folder '{bpy.path.abspath(library)}' not found: pick a folder of sounds")
    dmap = image_array(depth) * float(depth_scale)
    dmap = np.where(np.isfinite(dmap) & (dmap > 0) & (dmap < NO_HIT_DEPTH), dmap, np.nan)
    h, w = dmap.shape
    regs = parse_regions(regions, regions_json)
    masks = {}
    for r in regs:
        if "mask" in r:
            m = image_array(r["mask"]) > 0.5 / 255
            if m.shape != (h, w):
                raise BridgeError(f"region '{r['name']}': mask is {m.shape[1]} x {m.shape[0]} px but the depth map is "
                                  f"{w} x {h}: give them the same size")
            masks[r["name"]] = m
    if segmentation:
        labels = label_array(segmentation)
        if labels.shape != (h, w):
            raise BridgeError(f"segmentation '{segmentation}' is {labels.shape[1]} x {labels.shape[0]} px but the "
                              f"depth map is {w} x {h}: give them the same size")
        try:
            names = {int(k): str(v) for k, v in json.loads(label_names).items()} if label_names else {}
        except (json.JSONDecodeError, AttributeError, ValueError):
            raise BridgeError(f"label names {label_names!r}: give JSON like {{\"1\": \"dog\", \"2\": \"car\"}}") \
                from None
        for lab in np.unique(labels):
            if lab != 0:
                name = names.get(int(lab), f"Label {int(lab)}")
                masks[name] = labels == lab
                regs.append({"name": name, "mask": name})
    if not regs:
        raise BridgeError("no regions given: add boxes, masks (Regions JSON) or a segmentation image")
    sampled = sample_camera(scene, cam, [frame], (w, h))
    notes = []
    with tempfile.TemporaryDirectory(prefix="soundstage-footage-") as tmp:
        np.save(Path(tmp) / "depth.npy", dmap)
        req_regions = []
        for i, r in enumerate(regs):
            if "mask" in r:
                mp = Path(tmp) / f"mask_{i}.npy"
                np.save(mp, masks[r["name"]])
                req_regions.append({"name": r["name"], "mask": str(mp)})
            else:
                req_regions.append({"name": r["name"], "box": r["box"]})
        request = {"camera": camera_json(cam, [frame], sampled, (w, h)), "frame": frame,
                   "depth_map": str(Path(tmp) / "depth.npy"), "regions": req_regions,
                   "kind": "range" if depth_kind.lower() == "range" else "z"}
        found = call_engine("image", request, mode=mode, python=python)["sources"]
    ok = [s for s in found if np.all(np.isfinite(s["position"]))]
    for s in found:
        if s not in ok:
            notes.append(f"region '{s['name']}' has no valid depth: no source made for it")
    if not ok:
        raise BridgeError(f"no region has a valid depth in '{depth}' (frame {frame}): check the depth map")
    sounds = match_sounds([s["name"] for s in ok], library, mode=mode, python=python) if library else {}
    for s in ok:
        if library and s["name"] not in sounds:
            notes.append(f"no sound in library '{library}' matches '{s['name']}'")
    made = []
    for s in ok:
        snd = load_sound(sounds[s["name"]]) if s["name"] in sounds else None
        spk = add_speaker(context, s["name"], s["position"], start_frame=scene.frame_start, sound=snd)
        spk[PROP] = json.dumps({"source": "image", "region": s["name"], "frame": frame, "camera": cam.name,
                                "pixel": s["pixel"], "depth": s["depth"], "n_pixels": s["n_pixels"]})
        made.append(spk)
    return made, {"notes": notes, "depths": [s["depth"] for s in ok], "sources": ok}
