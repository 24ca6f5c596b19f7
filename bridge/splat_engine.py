"""The engine side of the add-on's splat tools: no ``bpy``, plain NumPy in and out.

``bridge.splats`` (the Blender side) calls these operations with NumPy arrays
and JSON-ready values. Where the engine imports in Blender's own Python (the
``bpy`` module installed in the engine's environment: tests, headless runs)
they run in-process; in real Blender, whose Python has NumPy but no SciPy,
they run in the engine's environment as a one-shot process::

    python -c "import sys; from bridge.splat_engine import main; sys.exit(main(sys.argv[1:]))" REQUEST.json

with ``PYTHONPATH`` set to the extension root (so this module and the
add-on's own copy of ``soundstage`` are found first). ``REQUEST.json`` is ``{"op": name, "kwargs": {...},
"arrays": "in.npz" or null, "out": "out.npz"}``; the result is written to
``out`` as an ``.npz`` holding the result's arrays plus ``__json__``, the
rest of the result as a JSON string (no pickles either way). A user error
(``SoundstageError``) is written as ``{"error": message}`` and the process
exits with status 2.

Every operation takes ``engine`` (the ``soundstage.splats`` module) first so
the same code runs in both places.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

#: The splat attributes the Blender object carries, with their shapes per splat.
SPLAT_FIELDS = {"positions": 3, "scales": 3, "rotations": 4, "opacities": 1, "colors": 3}


def _splats(engine, arrays: dict, source: str = "", matrix=None):
    """A ``Splats`` from the object's arrays; ``matrix`` (4x4) moves the centres (only) to world space."""
    pos = np.asarray(arrays["positions"], np.float32).reshape(-1, 3)
    if matrix is not None:
        m = np.asarray(matrix, np.float64)
        pos = (pos.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    n = len(pos)
    # Ray casts need no colours: grey when they were not sent.
    colors = arrays.get("colors")
    colors = np.full((n, 3), 0.5, np.float32) if colors is None else np.asarray(colors, np.float32).reshape(n, 3)
    return engine.Splats(positions=pos,
                         scales=np.asarray(arrays["scales"], np.float32).reshape(n, 3),
                         rotations=np.asarray(arrays["rotations"], np.float32).reshape(n, 4),
                         opacities=np.asarray(arrays["opacities"], np.float32).reshape(n),
                         colors=colors, source=source)


# --------------------------------------------------------------------------- operations
def op_read(engine, arrays, *, path: str, nonfinite: str = "error") -> dict:
    """Read a ``.ply`` / ``.splat`` file: the arrays the Blender object needs.

    Returns
    -------
    dict
        ``positions`` (N, 3), ``scales`` (N, 3) linear sigmas, ``rotations`` (N, 4)
        unit quaternions w, x, y, z, ``opacities`` (N,) in [0, 1], ``colors``
        (N, 3) base colour in [0, 1] from the SH DC term, all float32; ``count``.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Only the DC colour is displayed: skip the higher SH bands and extra fields.
        s = engine.read_splats(path, nonfinite=nonfinite, max_sh_degree=0, keep_extra=False)
    out = {name: np.ascontiguousarray(getattr(s, name), dtype=np.float32) for name in SPLAT_FIELDS}
    out["count"] = len(s)
    out["warnings"] = [str(w.message).splitlines()[0] for w in caught]
    return out


def op_room(engine, arrays, *, matrix, source: str = "", min_opacity: float = 0.5, up=(0.0, 0.0, 1.0)) -> dict:
    """Fit the room proxy to the splats in world space (``matrix`` applied to the centres).

    Returns
    -------
    dict
        ``room``: the job's room as a closed ``mesh`` (12 outward triangles,
        per-face materials), ``details``: ``RoomProxy.to_dict()`` (planes,
        frame, reasons, notes).
    """
    s = _splats(engine, arrays, source, matrix)
    proxy = engine.estimate_room(s, up=up, min_opacity=min_opacity)
    details = proxy.to_dict()
    return {"room": proxy.to_room(kind="mesh"), "details": details}


def op_corners(engine, arrays, *, corners, floor=None, ceiling=None, height=None, materials=None) -> dict:
    """``room_from_corners`` (world space, Z up): ``{"room": job room}``."""
    return {"room": engine.room_from_corners(np.asarray(corners, float), floor=floor, ceiling=ceiling,
                                             height=height, materials=materials)}


def op_cast(engine, arrays, *, origins, directions, source: str = "", opacity_threshold: float = 0.5) -> dict:
    """Cast rays (object space) against the splats; one-shot (the in-process path caches the index).

    Returns
    -------
    dict
        ``hit`` (R,), ``distance`` (R,), ``point`` (R, 3), ``normal`` (R, 3), ``index`` (R,).
    """
    hits = engine.SplatRaycaster(_splats(engine, arrays, source)).cast(
        np.asarray(origins, float).reshape(-1, 3), np.asarray(directions, float).reshape(-1, 3),
        opacity_threshold=opacity_threshold)
    return {"hit": hits.hit, "distance": hits.distance, "point": hits.point, "normal": hits.normal,
            "index": hits.index}


def op_cameras(engine, arrays, *, path: str, fps: float, frame_start: int = 1,
               undo_applied_transform: bool = False, sensor_width_mm: float = 36.0) -> dict:
    """Read a camera path (COLMAP model or ``transforms.json``) for keying in Blender.

    Returns
    -------
    dict
        ``matrices`` (F, 4, 4) camera-to-world in Blender's camera convention,
        ``frames`` (F,) timeline frames (``CameraPath.frame_numbers``), ``lens``
        (F,) focal lengths in mm for ``sensor_width_mm`` (NaN where unknown),
        ``width``/``height`` (F,) pixels (NaN where unknown), ``count``, ``timed``.
    """
    kw = {"undo_applied_transform": True} if undo_applied_transform else {}
    path_obj = engine.read_camera_path(path, **kw)
    f = len(path_obj)
    lens = path_obj.lens_mm(sensor_width_mm)
    nan = np.full(f, np.nan)
    return {"matrices": np.asarray(path_obj.matrices, np.float64),
            "frames": np.asarray(path_obj.frame_numbers(fps, frame_start), np.int64),
            "lens": nan if lens is None else np.asarray(lens, np.float64),
            "width": nan if path_obj.width is None else np.asarray(path_obj.width, np.float64),
            "height": nan if path_obj.height is None else np.asarray(path_obj.height, np.float64),
            "count": f, "timed": path_obj.times is not None}


OPS = {"read": op_read, "room": op_room, "corners": op_corners, "cast": op_cast, "cameras": op_cameras}


# --------------------------------------------------------------------------- files
def split_result(result: dict) -> tuple[dict, dict]:
    """(arrays, JSON-ready rest) of a result dict."""
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    return arrays, rest


def save_result(path: str, result: dict) -> None:
    """Write a result as ``.npz`` (arrays + ``__json__``), atomically."""
    arrays, rest = split_result(result)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, __json__=np.array(json.dumps(rest)), **arrays)
    os.replace(tmp, path)


def load_result(path: str) -> dict:
    """Read what ``save_result`` wrote (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        out = json.loads(str(z["__json__"]))
        out.update({k: z[k] for k in z.files if k != "__json__"})
    return out


def run(engine, op: str, arrays: dict | None, kwargs: dict) -> dict:
    """Run one operation with the given engine module."""
    if op not in OPS:
        raise ValueError(f"unknown splat operation '{op}'")
    return OPS[op](engine, arrays or {}, **kwargs)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as fh:
        req = json.load(fh)
    from soundstage.errors import SoundstageError
    import soundstage.splats as engine

    arrays = None
    if req.get("arrays"):
        with np.load(req["arrays"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    try:
        result = run(engine, req["op"], arrays, req.get("kwargs") or {})
    except SoundstageError as e:
        save_result(req["out"], {"error": str(e).splitlines()[0] if str(e) else type(e).__name__})
        return 2
    save_result(req["out"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
