"""One call from "this object was hit here" to the sound: ``impact(...)``.

It loads (or takes) the mesh, resolves the material (given, or guessed from the
appearance with the reason kept for the user), builds or loads the cached modal
model, snaps the hit to the surface, and synthesises the hit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstage.impact.guess import guess_material
from soundstage.impact.materials import Material, get_material
from soundstage.impact.mesh import closest_surface_point, load_mesh
from soundstage.impact.modal import modal_model
from soundstage.impact.synth import DEFAULT_STRIKER, ImpactError, Striker, contact_time, synthesize
from soundstage.impact.voxel import CELL_BUDGET

#: A hit farther than this fraction of the object's size from its surface is refused.
SNAP_TOLERANCE = 0.1


@dataclass
class ImpactResult:
    """A synthesised hit.

    Attributes
    ----------
    audio : ndarray of float32, shape (n,)
        Sound pressure at 1 m, Pa.
    sample_rate : int
    point, normal : ndarray, shape (3,)
        The contact point on the surface and the outward normal used.
    material : Material
    material_reason : str
        "given" or the guesser's sentence.
    contact_time : float, s
    info : dict
        Modal model facts (solid/shell, cells, modes, repairs) and timings in seconds.
    """

    audio: np.ndarray
    sample_rate: int
    point: np.ndarray
    normal: np.ndarray
    material: Material
    material_reason: str
    contact_time: float
    info: dict = field(default_factory=dict)


def appearance_from_file(path) -> dict | None:
    """The render material of a mesh file as guesser inputs, or None when it has none.

    Reads glTF PBR materials (name, metallic, roughness, base colour) and OBJ/MTL
    materials (name, diffuse colour); for multi-object files, the material of the
    largest object.

    Returns
    -------
    dict with keys name, metallic, roughness, transmission, base_color; or None
    """
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception:
        return None
    geoms = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    if not geoms:
        return None
    g = max(geoms, key=lambda m: m.area)
    mat = getattr(getattr(g, "visual", None), "material", None)
    if mat is None:
        return None
    name = getattr(mat, "name", None)
    out = dict(name=name, metallic=0.0, roughness=0.5, transmission=0.0, base_color=(0.8, 0.8, 0.8))
    if isinstance(mat, trimesh.visual.material.PBRMaterial):
        if mat.metallicFactor is not None:
            out["metallic"] = float(mat.metallicFactor)
        if mat.roughnessFactor is not None:
            out["roughness"] = float(mat.roughnessFactor)
        if mat.baseColorFactor is not None:
            c = np.asarray(mat.baseColorFactor, dtype=float)[:3]
            out["base_color"] = tuple((c / 255.0 if c.max() > 1.0 else c).tolist())
    elif hasattr(mat, "diffuse") and mat.diffuse is not None:
        c = np.asarray(mat.diffuse, dtype=float)[:3]
        out["base_color"] = tuple((c / 255.0 if c.max() > 1.0 else c).tolist())
    if name is None and out == dict(name=None, metallic=0.0, roughness=0.5, transmission=0.0,
                                    base_color=(0.8, 0.8, 0.8)):
        return None
    return out


def resolve_material(material=None, appearance: dict | None = None):
    """The material to use and why: given, else guessed from the appearance.

    Returns
    -------
    material : Material
    reason : str
    """
    if material is not None:
        return get_material(material), "given"
    if appearance:
        name, reason = guess_material(appearance.get("name"), appearance.get("metallic", 0.0),
                                      appearance.get("roughness", 0.5), appearance.get("transmission", 0.0),
                                      appearance.get("base_color", (0.8, 0.8, 0.8)))
        return get_material(name), f"guessed {name}: {reason}"
    name, _ = guess_material(None)
    return get_material(name), (f"guessed {name}: the object has neither an acoustic nor a render material, "
                                f"so this is only a default; please check")


def impact(mesh, at, normal=None, *, material=None, appearance: dict | None = None, force: float = 20.0,
           sample_rate: int = 48000, duration: float = 2.0, seed: int | None = 0, jitter: float = 0.05,
           striker: Striker = DEFAULT_STRIKER, budget: int = CELL_BUDGET, cache: bool = True,
           name: str | None = None) -> ImpactResult:
    """Synthesise the sound of hitting ``mesh`` at ``at``.

    Parameters
    ----------
    mesh : path or trimesh.Trimesh
        The object in metres, in the frame ``at`` is given in.
    at : array_like, shape (3,)
        Where it is hit; snapped to the nearest surface point (refused if farther
        than 10 % of the object's size).
    normal : array_like, shape (3,), optional
        Direction of the outward normal at the hit (the force pushes against it);
        default: the normal of the nearest face.
    material : str, dict or Material, optional
        Impact material; when None it is guessed from ``appearance`` (or from the
        file's render material when ``mesh`` is a path).
    appearance : dict, optional
        Guesser inputs (name, metallic, roughness, transmission, base_color).
    force, sample_rate, duration, seed, jitter, striker
        See ``soundstage.impact.synth.synthesize``.
    budget : int
        Grid-cell budget of the modal analysis.
    cache : bool
        Use the on-disk modal cache.
    name : str, optional
        Object name for messages.

    Returns
    -------
    ImpactResult

    Raises
    ------
    GeometryError, MaterialError, ImpactError
    """
    t0 = time.perf_counter()
    if isinstance(mesh, (str, Path)):
        name = name or Path(mesh).name
        if material is None and appearance is None:
            appearance = appearance_from_file(mesh)
        mesh = load_mesh(mesh)
    name = name or "mesh"
    mat, reason = resolve_material(material, appearance)
    at = np.asarray(at, dtype=float).reshape(-1)
    if at.shape != (3,) or not np.all(np.isfinite(at)):
        raise ImpactError(f"{name}: hit position must be 3 finite numbers, got {at.tolist()}")
    t1 = time.perf_counter()
    model = modal_model(mesh, mat, budget=budget, cache=cache, name=name)
    t2 = time.perf_counter()
    point, face_normal, dist, _ = closest_surface_point(mesh, at)
    t_snap = time.perf_counter() - t2
    size = float(np.linalg.norm(np.ptp(np.asarray(mesh.vertices), axis=0)))
    if dist > SNAP_TOLERANCE * size:
        raise ImpactError(f"{name}: hit position {at.round(4).tolist()} is {dist:.3g} m from the surface "
                          f"(object size {size:.3g} m); pick a point on the object")
    if normal is None:
        nrm = face_normal
    else:
        nrm = np.asarray(normal, dtype=float).reshape(-1)
        if nrm.shape != (3,) or not np.all(np.isfinite(nrm)) or np.linalg.norm(nrm) == 0:
            raise ImpactError(f"{name}: normal must be 3 finite numbers, not all zero, got {nrm.tolist()}")
        nrm = nrm / np.linalg.norm(nrm)
    audio = synthesize(model, point, nrm, force=force, sample_rate=sample_rate, duration=duration,
                       seed=seed, jitter=jitter, striker=striker)
    t3 = time.perf_counter()
    info = dict(model.info)
    info.update(modes=int(model.n_modes), f1_hz=float(model.frequencies[0]), mass_kg=model.mass,
                load_s=round(t1 - t0, 4), modal_s=round(t2 - t1, 4), snap_s=round(t_snap, 4),
                synth_s=round(t3 - t2 - t_snap, 4))
    return ImpactResult(audio, int(sample_rate), np.asarray(point), nrm, mat, reason,
                        contact_time(mat, force, striker), info)
