"""The engine side of the add-on's impact tools: no ``bpy``, NumPy arrays and JSON in and out.

``bridge.impacts`` (the Blender side) calls these operations. Where the engine
imports in Blender's own Python (the ``bpy`` module installed in the engine's
environment: tests, ``python headless/render.py``) they run in-process;
in real Blender, whose Python has NumPy but no SciPy, they run in the
engine's environment as a one-shot process::

    python -c "import sys; from bridge.impact_engine import main; sys.exit(main(sys.argv[1:]))" REQUEST.json

with ``PYTHONPATH`` set to the extension root, exactly like
``bridge.splat_engine`` (same request and ``.npz`` result files, no pickles),
or as a long-lived worker (``serve``: one request per line on stdin), which is
what the add-on keeps running so that a click does not pay the engine's
start-up every time.

Operations
----------
``synth``
    Synthesise one or more hits (``soundstage.impact.impact``) and write each as
    a mono float32 WAV of sound pressure at 1 m (Pa); optionally also a binaural
    preview rendered in free field from a listener pose (``soundstage.render``).
``locate``
    Rank candidate objects for a recorded hit (``soundstage.impact.locate``) and
    return a heat value per vertex of each object.

Geometry convention: a target is sent as its mesh in its own frame
(``vertices`` (V, 3), ``faces`` (F, 3)) plus Blender's ``matrix_world`` (4x4,
row-major). The matrix is split by polar decomposition into a rotation U, a
stretch P and a translation t (``world = U (P x) + t``, as
``soundstage.impact.SceneObject`` does): the modal analysis runs on the
stretched shape ``P x`` in a frame that moving or turning the object does not
change, so the on-disk modal cache keeps hitting when the object moves.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from .splat_engine import load_result, save_result  # same file format as the splat worker

__all__ = ["run", "main", "serve", "handle", "save_result", "load_result", "split_pose", "splat_patch"]

#: Gaussians fainter than this are left out of a splat patch (floaters, haze).
PATCH_MIN_OPACITY = 0.5
#: A splat patch needs at least this many gaussians.
PATCH_MIN_POINTS = 8


# --------------------------------------------------------------------------- geometry
def split_pose(matrix):
    """``(U, P, t)`` with ``matrix[:3, :3] = U @ P`` (U orthogonal, P symmetric positive) and t its translation.

    Parameters
    ----------
    matrix : array_like, 16 numbers or (4, 4), row-major

    Raises
    ------
    soundstage.errors.GeometryError
        A singular or non-finite matrix (an object scaled to zero).
    """
    from scipy.linalg import polar

    from soundstage.errors import GeometryError

    m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    a = m[:3, :3]
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(a)) < 1e-15:
        raise GeometryError("the object's transform is singular (scaled to zero) or not finite")
    u, p = polar(a, side="right")
    return u, p, m[:3, 3].copy()


def splat_patch(positions, opacities, matrix, center_world, radius: float, normal_world, name: str = "splats"):
    """A closed stand-in mesh for the splats around a hit: the convex hull of nearby gaussians.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Gaussian centres in the splat object's frame.
    opacities : ndarray, shape (N,)
    matrix : array_like, (4, 4)
        The splat object's ``matrix_world``.
    center_world : array_like, shape (3,)
        The hit point, world space.
    radius : float
        Gaussians whose centre is within this distance (world units, metres) of the hit are used.
    normal_world : array_like, shape (3,)
        The surface normal at the hit; a flat patch is given a thickness of a tenth
        of ``radius`` along it so that it encloses volume.
    name : str
        For messages.

    Returns
    -------
    vertices : ndarray, shape (V, 3), faces : ndarray, shape (F, 3)
        In the stretched frame of ``split_pose(matrix)`` (see the module docstring).
    count : int
        Gaussians used.

    Raises
    ------
    soundstage.errors.GeometryError
        Too few gaussians around the hit.
    """
    import trimesh

    from soundstage.errors import GeometryError

    u, p, t = split_pose(matrix)
    pos = np.asarray(positions, np.float64).reshape(-1, 3) @ p.T  # stretched frame
    c = u.T @ (np.asarray(center_world, np.float64) - t)
    n = u.T @ np.asarray(normal_world, np.float64)
    n /= max(np.linalg.norm(n), 1e-12)
    keep = (np.asarray(opacities, np.float64).reshape(-1) >= PATCH_MIN_OPACITY) & \
        (np.linalg.norm(pos - c, axis=1) <= radius)
    pts = pos[keep]
    if len(pts) < PATCH_MIN_POINTS:
        raise GeometryError(f"{name}: only {len(pts)} opaque gaussians within {radius:g} m of the hit; "
                            "raise the impact's Patch Radius or hit a denser part of the capture")
    # A wall or table top seen by the capture is nearly flat: give it some thickness so
    # that the hull encloses volume (a slab of radius/10 behind the visible surface).
    # "Behind" is along the patch's own thinnest direction (its smallest principal axis),
    # turned to the side the hit normal points away from: a gaussian's normal can be
    # ill-defined (round gaussians), the patch's shape is not.
    _s, _v, vt = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)
    axis = vt[-1] if vt[-1] @ n >= 0 else -vt[-1]
    slab = np.concatenate([pts, pts - 0.1 * radius * axis])
    # trimesh orients the hull through a mass computation that may divide by a zero
    # intermediate volume; the finished hull is checked below.
    with np.errstate(divide="ignore", invalid="ignore"):
        hull = trimesh.convex.convex_hull(slab)
    if not hull.volume > 0:
        raise GeometryError(f"{name}: the gaussians around the hit enclose no volume; raise the Patch Radius")
    return np.asarray(hull.vertices), np.asarray(hull.faces), int(len(pts))


def _target_mesh(arrays: dict, i: int, hit: dict, name: str):
    """The hit's target as a trimesh in the stretched frame, with U and t of its pose and notes."""
    import trimesh

    from soundstage.errors import GeometryError

    notes = []
    if hit.get("geometry") == "splats":
        v, f, count = splat_patch(arrays[f"p{i}"], arrays[f"o{i}"], hit["matrix"], hit["point"],
                                  float(hit.get("patch_radius", 0.1)), hit["normal"], name)
        notes.append(f"splat target: modelled as the convex hull of {count} gaussians within "
                     f"{float(hit.get('patch_radius', 0.1)):g} m of the hit (a rough stand-in for the object)")
        u, _p, t = split_pose(hit["matrix"])
    else:
        u, p, t = split_pose(hit["matrix"])
        v = np.asarray(arrays[f"v{i}"], np.float64).reshape(-1, 3) @ p.T
        f = np.asarray(arrays[f"f{i}"], np.int64).reshape(-1, 3)
        if len(f) == 0:
            raise GeometryError(f"{name}: the target mesh has no faces; hit an object with a surface")
    return trimesh.Trimesh(v, f, process=False), u, t, notes


# --------------------------------------------------------------------------- operations
def op_synth(arrays: dict, *, hits: list, sample_rate: int = 48000, budget: int = 3000, cache: bool = True) -> dict:
    """Synthesise hits and write them as WAV files.

    Parameters
    ----------
    arrays : dict
        Per hit ``i``: ``v{i}`` (V, 3) and ``f{i}`` (F, 3) for a mesh target (its own
        frame), or ``p{i}`` (N, 3) and ``o{i}`` (N,) gaussian centres and opacities
        for a splat target.
    hits : list of dict
        ``name`` (for messages), ``geometry`` ("mesh" or "splats"), ``matrix``
        (16, the target's ``matrix_world``), ``point`` and ``normal`` (3, world),
        ``material`` (impact material name, or None to guess from ``appearance``),
        ``appearance`` (guesser inputs), ``force`` (N), ``duration`` (s), ``seed``,
        ``out`` (WAV path for the mono pressure at 1 m, or None), optional
        ``patch_radius`` (m, splat targets), ``listener`` (16 numbers: render a
        binaural preview from this camera pose in free field into ``preview_out``),
        ``speed_of_sound``.
    sample_rate : int, Hz
    budget : int
        Modal-analysis cell budget.

    Returns
    -------
    dict
        ``hits``: one dict per hit (``material``, ``material_reason``, ``notes``,
        ``point`` (world, snapped to the surface), ``peak_pa``, ``modes``,
        ``f1_hz``, ``cache``, ``seconds``, ``out``, ``preview``), and arrays
        ``audio{i}`` (float32 (n,), Pa at 1 m).
    """
    import time

    from soundstage.audio_io import write_wav
    from soundstage.impact import impact

    out = {"hits": []}
    for i, hit in enumerate(hits):
        t0 = time.perf_counter()
        name = str(hit.get("name", f"hit {i}"))
        mesh, u, t, notes = _target_mesh(arrays, i, hit, name)
        point = u.T @ (np.asarray(hit["point"], np.float64) - t)
        normal = u.T @ np.asarray(hit["normal"], np.float64)
        res = impact(mesh, point, normal, material=hit.get("material"), appearance=hit.get("appearance"),
                     force=float(hit.get("force", 20.0)), sample_rate=int(sample_rate),
                     duration=float(hit.get("duration", 2.0)), seed=int(hit.get("seed", 0)), budget=int(budget),
                     cache=cache, name=name)
        audio = np.ascontiguousarray(res.audio, dtype=np.float32)
        done = {"name": name, "material": res.material.name,
                "material_reason": hit.get("material_reason") or res.material_reason,
                "notes": notes + [str(n) for n in res.info.get("notes", [])],
                "point": (u @ res.point + t).tolist(), "peak_pa": float(np.max(np.abs(audio))) if len(audio) else 0.0,
                "modes": int(res.info.get("modes", 0)), "f1_hz": float(res.info.get("f1_hz", 0.0)),
                "kind": res.info.get("kind", ""), "cache": res.info.get("cache", ""),
                "contact_time_s": float(res.contact_time), "out": None, "preview": None}
        if hit.get("out"):
            write_wav(hit["out"], audio, int(sample_rate))
            done["out"] = str(hit["out"])
        if hit.get("listener") is not None and hit.get("preview_out"):
            if not hit.get("out"):
                raise ValueError("a preview needs the mono WAV ('out') to render from")
            done["preview"] = _binaural_preview(hit["out"], hit["listener"], hit["point"], int(sample_rate),
                                                len(audio) / sample_rate, hit["preview_out"],
                                                float(hit.get("speed_of_sound", 343.0)))
        done["seconds"] = round(time.perf_counter() - t0, 4)
        out["hits"].append(done)
        out[f"audio{i}"] = audio
    return out


#: Peak of the preview WAV (its level is normalised: the physical level is reported instead).
PREVIEW_PEAK = 0.5


def _binaural_preview(mono_wav: str, listener, point, rate: int, seconds: float, out: str, c: float) -> dict:
    """Render the hit in free field from a listener pose (binaural, the engine's HRTF) and normalise it.

    The engine is used as for a bake (direct sound only: no room, no reverb), so
    the preview has the bake's direction and delay. A hit is often quiet in
    absolute terms (a tap is tens of dB below speech), so the preview WAV is
    scaled to a peak of ``PREVIEW_PEAK``; its level before scaling is returned.

    Returns
    -------
    dict
        ``path``, ``peak_pa`` (peak pressure at the listener before scaling),
        ``distance`` (m), ``rms_left_right`` (scaled).
    """
    from soundstage.audio_io import write_wav
    from soundstage.job import load_job
    from soundstage.render import render_job

    m = np.asarray(listener, np.float64).reshape(4, 4)
    dist = float(np.linalg.norm(np.asarray(point, np.float64) - m[:3, 3]))
    fps = 100
    # Long enough for the delay to the listener and the ring-out.
    frames = int(np.ceil((seconds + dist / c + 0.05) * fps))
    job = {"version": 1, "sample_rate": rate, "fps": fps, "frame_start": 1, "frame_end": max(frames, 1),
           "speed_of_sound": c, "room": {"type": "free_field"},
           "listener": {"name": "preview", "matrix_world": m.ravel().tolist(), "hrtf": "default"},
           "sources": [{"name": "hit", "audio": str(mono_wav), "position": [float(x) for x in point],
                        "start_frame": 1}],
           "output": {"format": "binaural", "path": str(out)},
           "render": {"reflection_order": 0, "late_reverb": False}}
    y = render_job(load_job(job, os.path.dirname(str(out)) or ".")).audio
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    scaled = y * (PREVIEW_PEAK / peak) if peak > 0 else y
    write_wav(out, scaled.astype(np.float32), rate)
    return {"path": str(out), "peak_pa": peak, "distance": dist,
            "rms_left_right": [float(np.sqrt(np.mean(scaled[:, k].astype(np.float64) ** 2))) for k in range(2)]}


def read_hit(path: str):
    """A recorded hit as mono float64 and its rate: the loudest channel of a multichannel file.

    The loudest channel, not the mean: averaging two ears (or two microphones)
    comb-filters the spectrum (a 0.6 ms interaural delay puts a notch at
    830 Hz), which can hide the modal peaks ``locate`` looks for.

    Raises
    ------
    soundstage.errors.AudioError
        Missing, unreadable, empty or non-finite file.
    """
    import soundfile as sf

    from soundstage.errors import AudioError

    if not os.path.isfile(path):
        raise AudioError(f"hit recording '{path}' not found; choose a WAV file")
    try:
        data, rate = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # libsndfile's message, on one line
        raise AudioError(f"hit recording '{path}' cannot be read ({' '.join(str(e).split())}); "
                         "use a WAV or FLAC file") from None
    if data.size == 0:
        raise AudioError(f"hit recording '{path}' is empty")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"hit recording '{path}' has NaN or infinite samples")
    ch = int(np.argmax(np.sum(data**2, axis=0)))
    return data[:, ch], int(rate)


def op_locate(arrays: dict, *, objects: list, audio: str, budget: int = 3000, n_regions: int = 8,
              cache: bool = True) -> dict:
    """Rank candidate objects for a recorded hit and score their vertices.

    Parameters
    ----------
    arrays : dict
        Per object ``i``: ``v{i}`` (V, 3) and ``f{i}`` (F, 3), the mesh the modal
        analysis uses (own frame), and optionally ``pv{i}`` (W, 3): the vertices to
        paint when they differ from ``v{i}`` (a mesh with modifiers).
    objects : list of dict
        ``name``, ``matrix`` (16), ``material`` (name or None) and ``appearance``.
    audio : str
        The recorded hit (any file libsndfile reads).

    Returns
    -------
    dict
        ``ranking``: ``LocateResult.to_dict()`` (objects most likely first, with
        probability, material and reason, best point and regions), and arrays
        ``heat{i}`` (W,) in [0, 1] per candidate (in the request's order).
    """
    import dataclasses

    import trimesh

    from soundstage.impact import SceneObject, locate, object_models, resolve_material

    x, rate = read_hit(audio)
    scene = []
    for i, o in enumerate(objects):
        mat, reason = resolve_material(o.get("material"), o.get("appearance"))
        mesh = trimesh.Trimesh(np.asarray(arrays[f"v{i}"], np.float64).reshape(-1, 3),
                               np.asarray(arrays[f"f{i}"], np.int64).reshape(-1, 3), process=False)
        scene.append(SceneObject(str(o["name"]), mesh, np.asarray(o["matrix"], np.float64).reshape(4, 4), mat,
                                 reason))
    models = object_models(scene, budget=budget, cache=cache)
    # An unusable object (no volume, no faces) is ranked last instead of stopping the others.
    skipped = [f"object '{o.name}' left out: {_first_line(m)}" for o, m in zip(scene, models)
               if isinstance(m, Exception)]
    result = locate(scene, x, rate, models=models, n_regions=n_regions, budget=budget, cache=cache)
    out = {"ranking": result.to_dict(), "rate": rate, "notes": skipped}
    by_name = {s.name: s for s in result.objects}
    for i, o in enumerate(objects):
        score = by_name[str(o["name"])]
        if score.probability <= 0.0 or score._obj is None:  # no model (unusable mesh): cold
            n = len(arrays.get(f"pv{i}", arrays[f"v{i}"]))
            out[f"heat{i}"] = np.zeros(n, np.float32)
            continue
        if f"pv{i}" in arrays:  # paint other vertices than the analysed ones, same pose
            paint = trimesh.Trimesh(np.asarray(arrays[f"pv{i}"], np.float64).reshape(-1, 3), process=False)
            score = dataclasses.replace(score, _obj=dataclasses.replace(scene[i], mesh=paint))
        out[f"heat{i}"] = np.clip(score.vertex_scores(), 0.0, 1.0).astype(np.float32)
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


OPS = {"synth": op_synth, "locate": op_locate}


def run(op: str, arrays: dict | None, kwargs: dict) -> dict:
    """Run one operation (in whatever process imports the engine)."""
    if op not in OPS:
        raise ValueError(f"unknown impact operation '{op}'")
    return OPS[op](arrays or {}, **kwargs)


def handle(request_path: str) -> int:
    """Run the request in ``request_path`` and write its result file; 0 done, 2 user error (in the file)."""
    with open(request_path, encoding="utf-8") as fh:
        req = json.load(fh)
    from soundstage.errors import SoundstageError

    arrays = None
    if req.get("arrays"):
        with np.load(req["arrays"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    try:
        result = run(req["op"], arrays, req.get("kwargs") or {})
    except SoundstageError as e:
        save_result(req["out"], {"error": _first_line(e)})
        return 2
    save_result(req["out"], result)
    return 0


def main(argv=None) -> int:
    """One-shot: ``main([REQUEST.json])`` runs one request."""
    argv = sys.argv[1:] if argv is None else argv
    return handle(argv[0])


def serve(stdin=None, stdout=None) -> int:
    """A long-lived worker: one request per line ``<id> <REQUEST.json>`` on stdin, one reply per line on stdout.

    The reply is ``{"id": id, "status": 0 | 2 | 1, "message": ...}`` (1: a bug,
    whose traceback goes to stderr). Ends when stdin closes (Blender quit or the
    add-on stopped it). Keeping the process saves its start-up (SciPy, trimesh
    and the HRTF: about 2 s) on every click after the first.
    """
    import traceback

    stdin = stdin or sys.stdin
    saved = sys.stdout
    out = stdout or saved
    sys.stdout = sys.stderr  # anything the engine prints must not corrupt the protocol
    try:
        for line in stdin:
            line = line.strip()
            if not line:
                continue
            rid, _, path = line.partition(" ")
            try:
                reply = {"id": rid, "status": handle(path)}
            except Exception as e:  # a bug: keep serving, report one line
                traceback.print_exc()
                reply = {"id": rid, "status": 1, "message": _first_line(e)}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    finally:
        sys.stdout = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
