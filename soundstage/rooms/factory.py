"""Build a room model from the job's ``room`` object."""

from __future__ import annotations

import warnings

import numpy as np

from soundstage.errors import JobError


def room_from_spec(spec, where: str = "room"):
    """Turn a job's room object into a ``Room`` (or None for free field).

    Parameters
    ----------
    spec : dict
        ``{"type": "free_field"}``, a shoebox or a mesh (see DESIGN.md).
    where : str
        JSON path used in error messages.
    """
    from soundstage.materials import resolve_material

    if not isinstance(spec, dict) or "type" not in spec:
        raise JobError(f"{where}: expected an object with a 'type' (free_field, shoebox or mesh)")
    kind = spec["type"]
    if kind == "free_field":
        return None
    if kind == "shoebox":
        from soundstage.rooms.shoebox import ShoeBox

        try:
            lo = np.asarray(spec["min"], dtype=float)
            hi = np.asarray(spec["max"], dtype=float)
        except KeyError as e:
            raise JobError(f"{where}.{e.args[0]}: missing corner of the shoebox") from None
        except (TypeError, ValueError):
            raise JobError(f"{where}: min and max must be [x, y, z] numbers") from None
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise JobError(f"{where}: min and max must be three finite numbers each")
        if np.any(hi - lo <= 0.1):
            raise JobError(f"{where}: max must exceed min by more than 0.1 m on every axis, got {lo.tolist()} .. {hi.tolist()}")
        if "materials" in spec:
            mats = spec["materials"]
            if not isinstance(mats, dict):
                raise JobError(f"{where}.materials: expected an object with floor, ceiling and walls")
            unknown = set(mats) - {"floor", "ceiling", "walls"}
            if unknown:
                raise JobError(f"{where}.materials: unknown surface {sorted(unknown)[0]!r}; use floor, ceiling, walls")
            missing = {"floor", "ceiling", "walls"} - set(mats)
            if missing:
                raise JobError(f"{where}.materials.{sorted(missing)[0]}: missing")
            m = {k: resolve_material(v, f"{where}.materials.{k}") for k, v in mats.items()}
        elif "material" in spec:
            one = resolve_material(spec["material"], f"{where}.material")
            m = {"floor": one, "ceiling": one, "walls": one}
        else:
            raise JobError(f"{where}: give 'materials' (floor, ceiling, walls) or one 'material'")
        return ShoeBox(lo, hi, m)
    if kind == "mesh":
        from soundstage.rooms.mesh import GeometryWarning, MeshRoom

        try:
            v = np.asarray(spec["vertices"], dtype=float)
            f = np.asarray(spec["faces"], dtype=np.int64)
            fm = np.asarray(spec.get("face_materials", [0] * len(spec["faces"])), dtype=np.int64)
            mats = spec["materials"]
        except KeyError as e:
            raise JobError(f"{where}.{e.args[0]}: missing") from None
        except (TypeError, ValueError):
            raise JobError(f"{where}: vertices must be [x,y,z] numbers and faces [i,j,k] integers") from None
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise JobError(f"{where}: vertices must be a list of [x,y,z] and faces a list of [i,j,k] triangles")
        if fm.shape != (len(f),):
            raise JobError(f"{where}.face_materials: needs one entry per face ({len(f)}), got {fm.shape[0] if fm.ndim else 0}")
        if not isinstance(mats, list) or not mats:
            raise JobError(f"{where}.materials: expected a non-empty list of materials")
        if fm.min() < 0 or fm.max() >= len(mats):
            raise JobError(f"{where}.face_materials: index out of range 0..{len(mats) - 1}")
        resolved = [resolve_material(mm, f"{where}.materials[{i}]") for i, mm in enumerate(mats)]
        absorption = np.stack([resolved[i].absorption for i in fm])
        scattering = np.stack([resolved[i].scattering for i in fm])
        name = str(spec.get("name", where))
        # The room keeps its warnings (open edges, dropped faces) in ``notes``,
        # which reach the sidecar; printing them as well would say it twice.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GeometryWarning)
            return MeshRoom(v, f, absorption, scattering, name=name)
    raise JobError(f"{where}.type: unknown room type {kind!r}; use free_field, shoebox or mesh")
