"""An acoustic room proxy from a splat scene, or from corners the user draws.

A splat capture of a room is a cloud of gaussians; the acoustic renderer wants
a closed room with materials. ``estimate_room`` finds the dominant planes of
the opaque gaussians with sequential RANSAC (hypotheses from local PCA
patches, refined by least squares on their inliers), keeps the horizontal and
vertical ones, and takes the outermost well-supported plane on each side as
floor, ceiling and walls. Furniture cannot hide a wall this way (it is always
inside the outermost planes and its faces are small), and isolated outliers
never gather enough inliers to form a plane.

The result is an oriented box: a job ``shoebox`` when it is aligned with the
world axes, otherwise a closed triangle ``mesh``. Materials are guessed from
the mean colour of each face's gaussians and are meant to be edited.

Room dicts follow the job format (DESIGN.md): ``{"type": "shoebox", "min",
"max", "materials": {"floor", "ceiling", "walls"}}`` or ``{"type": "mesh",
"vertices", "faces", "face_materials", "materials"}`` where
``face_materials[i]`` indexes ``materials`` and faces wind counter-clockwise
seen from outside (normals point out of the room).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from soundstage.splats.model import Splats, SplatError

#: Face names of the box proxy, in room-frame terms (u, v horizontal axes).
FACES = ("floor", "ceiling", "wall_u_min", "wall_u_max", "wall_v_min", "wall_v_max")
#: Default materials (names in the engine's material library, from
#: pyroomacoustics' measured tables).
DEFAULT_MATERIALS = {"floor": "linoleum_on_concrete", "ceiling": "ceiling_plasterboard", "walls": "plasterboard"}


@dataclass
class Plane:
    """A fitted plane ``normal . p = offset``.

    Attributes
    ----------
    normal : ndarray, shape (3,)
        Unit normal (for horizontal planes it points along ``up``).
    offset : float
    inliers : int
        Points within the threshold.
    rms : float
        RMS distance of the inliers to the plane (file units).
    color : ndarray, shape (3,)
        Mean RGB of the inlier gaussians.
    corners : ndarray, shape (4, 3)
        A rectangle in the plane spanning the inliers (2nd to 98th
        percentile), for display.
    label : str
        ``floor``, ``ceiling``, ``wall_*`` or ``""`` for planes not used.
    """

    normal: np.ndarray
    offset: float
    inliers: int
    rms: float
    color: np.ndarray
    corners: np.ndarray
    label: str = ""
    index: np.ndarray | None = field(default=None, repr=False)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distances of ``points`` (shape (n, 3)) to the plane."""
        return np.asarray(points, float) @ self.normal - self.offset

    def to_dict(self) -> dict:
        return {"normal": self.normal.tolist(), "offset": float(self.offset), "inliers": int(self.inliers),
                "rms": float(self.rms), "color": self.color.tolist(), "corners": self.corners.tolist(),
                "label": self.label}


def _plane_rectangle(points: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """A rectangle in the plane covering the bulk of ``points``, shape (4, 3)."""
    helper = np.eye(3)[np.argmin(np.abs(normal))]
    e1 = np.cross(normal, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    a, b = points @ e1, points @ e2
    a0, a1 = np.percentile(a, [2, 98])
    b0, b1 = np.percentile(b, [2, 98])
    base = normal * offset
    return np.array([base + e1 * x + e2 * y for x, y in ((a0, b0), (a1, b0), (a1, b1), (a0, b1))])


def _fit_lsq(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane (normal, offset) through ``points`` (n, 3)."""
    c = points.mean(axis=0)
    x = points - c
    _, vec = np.linalg.eigh(x.T @ x)
    n = vec[:, 0]
    return n, float(n @ c)


def fit_planes(points: np.ndarray, *, threshold: float, min_inliers: int, max_planes: int = 12,
               hypotheses: int = 512, colors: np.ndarray | None = None, seed: int = 0) -> list[Plane]:
    """Sequential RANSAC: the largest plane, remove its inliers, repeat.

    Hypotheses are local PCA planes of 16-point neighbourhoods around random
    seed points (almost always lying on one surface), scored by their inlier
    count on a subsample; the winner is refined by least squares on its
    inliers three times.

    Parameters
    ----------
    points : ndarray, shape (M, 3)
    threshold : float
        Inlier distance, file units.
    min_inliers : int
        Stop when the best plane has fewer inliers.
    max_planes : int
    hypotheses : int
        Candidate planes per round.
    colors : ndarray, shape (M, 3), optional
        For each plane's mean colour.
    seed : int
        Makes the result deterministic.

    Returns
    -------
    list of Plane
        In the order found (largest first).
    """
    rng = np.random.default_rng(seed)
    points = np.asarray(points, np.float64)
    remaining = np.arange(len(points))
    planes: list[Plane] = []
    while len(planes) < max_planes and len(remaining) >= max(min_inliers, 16):
        pts = points[remaining]
        # Ranking hypotheses needs only a modest subsample; refinement uses all points.
        sub = pts[rng.choice(len(pts), size=min(len(pts), 8000), replace=False)]
        tree = cKDTree(sub)
        seeds = rng.choice(len(sub), size=min(hypotheses, len(sub)), replace=False)
        _, nb = tree.query(sub[seeds], k=min(16, len(sub)))
        patch = sub[nb]
        centre = patch.mean(axis=1)
        dev = patch - centre[:, None, :]
        _, vec = np.linalg.eigh(np.einsum("hki,hkj->hij", dev, dev))
        normals = vec[:, :, 0]
        offsets = np.einsum("hi,hi->h", normals, centre)
        score = np.zeros(len(normals), int)
        sub32 = sub.astype(np.float32)
        for s in range(0, len(normals), 128):
            d = np.abs(sub32 @ normals[s:s + 128].T.astype(np.float32) - offsets[s:s + 128].astype(np.float32))
            score[s:s + 128] = np.count_nonzero(d < threshold, axis=0)
        best = int(np.argmax(score))
        n, d = normals[best], offsets[best]
        for _ in range(3):
            inl = np.abs(pts @ n - d) < threshold
            if np.count_nonzero(inl) < 3:
                break
            n, d = _fit_lsq(pts[inl])
        inl = np.abs(pts @ n - d) < threshold
        count = int(np.count_nonzero(inl))
        if count < min_inliers:
            break
        q = pts[inl]
        rms = float(np.sqrt(np.mean((q @ n - d) ** 2)))
        col = colors[remaining[inl]].mean(axis=0) if colors is not None else np.full(3, np.nan)
        planes.append(Plane(n, d, count, rms, np.asarray(col, float), _plane_rectangle(q, n, d),
                            index=remaining[inl]))
        remaining = remaining[~inl]
    return planes


def guess_material(rgb, surface: str) -> tuple[str, str]:
    """A material name for a surface from its mean colour.

    A coarse and openly heuristic guess, meant to be edited: light unsaturated
    surfaces are painted plaster (walls, ceilings) or tiles (floors), mid
    greys are concrete, warm browns are wood, saturated red-browns on walls are
    brick, other saturated floors are carpet.

    Parameters
    ----------
    rgb : sequence of 3 floats in [0, 1]
    surface : {"floor", "ceiling", "wall"}

    Returns
    -------
    name : str
        A key of pyroomacoustics' material tables (the engine's library).
    reason : str
        One line explaining the choice.
    """
    r, g, b = (float(np.clip(c, 0, 1)) for c in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    hue = h * 360.0
    desc = f"mean colour #{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    grey = s < 0.15
    wood = (15 <= hue <= 50) and s >= 0.15 and 0.15 <= v <= 0.85
    brick = (hue < 22 or hue > 345) and s >= 0.35 and 0.2 <= v <= 0.8
    if surface == "floor":
        if grey and v > 0.7:
            return "ceramic_tiles", f"{desc}: light and unsaturated, like tiles or stone"
        if grey and v > 0.3:
            return "concrete_floor", f"{desc}: grey, like concrete"
        if grey:
            return "linoleum_on_concrete", f"{desc}: dark and unsaturated, like linoleum or rubber"
        if wood:
            return "audience_floor", f"{desc}: warm brown, like a wooden floor"
        return "carpet_cotton", f"{desc}: saturated colour, like carpet"
    if surface == "ceiling":
        if grey and v <= 0.45:
            return "rough_concrete", f"{desc}: dark grey, like bare concrete"
        if wood:
            return "wooden_lining", f"{desc}: warm brown, like wooden panels"
        return "ceiling_plasterboard", f"{desc}: light or painted, like a plasterboard ceiling"
    if grey and v <= 0.45:
        return "rough_concrete", f"{desc}: dark grey, like bare concrete"
    if brick:
        return "brickwork", f"{desc}: red-brown, like brick"
    if wood:
        return "wooden_lining", f"{desc}: warm brown, like wooden panels"
    return "plasterboard", f"{desc}: light or painted, like plastered walls"


@dataclass
class RoomProxy:
    """An oriented box room fitted to splats.

    Attributes
    ----------
    frame : ndarray, shape (3, 3)
        Columns are the room axes ``u, v, up`` in world coordinates
        (right-handed, orthonormal).
    lo, hi : ndarray, shape (3,)
        The box in room coordinates (``frame.T @ p``): walls at ``lo[0]``,
        ``hi[0]`` along u, ``lo[1]``, ``hi[1]`` along v, floor ``lo[2]``,
        ceiling ``hi[2]``.
    faces : dict of str to Plane or None
        The plane behind each face in ``FACES``; None where it was not found
        (the face then comes from the extreme of the points, see ``notes``).
    planes : list of Plane
        Every plane found, labelled or not (for display).
    materials : dict
        ``floor``, ``ceiling``, ``walls`` material names (editable).
    face_materials : dict
        A material per face in ``FACES`` (for mesh rooms).
    reasons : dict
        Why each material was guessed.
    notes : list of str
        What was assumed (missing faces, sloped planes).
    """

    frame: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    faces: dict
    planes: list
    materials: dict
    face_materials: dict
    reasons: dict
    notes: list

    @property
    def size(self) -> np.ndarray:
        """Room size along u, v, up, shape (3,)."""
        return self.hi - self.lo

    @property
    def yaw_deg(self) -> float:
        """Angle of the u axis from world +X about the up axis, degrees."""
        u = self.frame[:, 0]
        return float(np.degrees(np.arctan2(u[1], u[0])))

    def corners(self) -> np.ndarray:
        """The eight corners in world coordinates, shape (8, 3)."""
        return _box_corners(self.frame, self.lo, self.hi)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether world points (shape (n, 3)) are inside the box, shape (n,)."""
        q = np.asarray(points, float) @ self.frame
        return np.all((q >= self.lo) & (q <= self.hi), axis=1)

    def is_world_aligned(self, tolerance_deg: float = 1.0) -> bool:
        """True when the room axes match world axes (up = +Z) within a tolerance."""
        cos_tol = np.cos(np.radians(tolerance_deg))
        if self.frame[2, 2] < cos_tol:
            return False
        return bool(np.max(np.abs(self.frame[:2, 0])) >= cos_tol)

    def to_room(self, kind: str = "auto", *, materials: dict | None = None,
                tolerance_deg: float = 1.0) -> dict:
        """The room in the job format.

        Parameters
        ----------
        kind : {"auto", "shoebox", "mesh"}
            ``auto`` gives a shoebox when the box is world-aligned within
            ``tolerance_deg``, else a mesh. ``shoebox`` forces an axis-aligned
            box about the same centre with the same size (the rotation is lost).
        materials : dict, optional
            Overrides for ``floor``, ``ceiling``, ``walls``.
        """
        mats = dict(self.materials)
        mats.update(materials or {})
        if kind == "auto":
            kind = "shoebox" if self.is_world_aligned(tolerance_deg) else "mesh"
        if kind == "shoebox":
            return _aligned_shoebox(self.frame, self.lo, self.hi, mats)
        if kind != "mesh":
            raise ValueError("kind must be 'auto', 'shoebox' or 'mesh'")
        per_face = dict(self.face_materials)
        if materials:
            for face in FACES:
                key = face if face in ("floor", "ceiling") else "walls"
                if key in materials:
                    per_face[face] = materials[key]
        verts, tris, labels = _box_mesh(self.frame, self.lo, self.hi)
        return _mesh_room(verts, tris, [per_face[lab] for lab in labels])

    def to_dict(self) -> dict:
        """Everything for display and debugging, JSON-ready."""
        return {
            "room": self.to_room(),
            "frame": self.frame.tolist(), "lo": self.lo.tolist(), "hi": self.hi.tolist(),
            "size": self.size.tolist(), "yaw_deg": self.yaw_deg,
            "faces": {k: (p.to_dict() if p is not None else None) for k, p in self.faces.items()},
            "planes": [p.to_dict() for p in self.planes],
            "materials": self.materials, "face_materials": self.face_materials, "reasons": self.reasons,
            "notes": self.notes,
        }


def _box_corners(frame, lo, hi) -> np.ndarray:
    idx = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)])
    local = np.where(idx == 0, lo, hi)
    return local @ frame.T


def _box_mesh(frame, lo, hi):
    """Closed box: 8 vertices, 12 outward triangles, and each triangle's face name."""
    verts = _box_corners(frame, lo, hi)
    # Corner index = i + 2j + 4k for (u, v, up) bits; quads listed CCW from outside.
    quads = {
        "floor": (0, 2, 3, 1), "ceiling": (4, 5, 7, 6),
        "wall_u_min": (0, 4, 6, 2), "wall_u_max": (1, 3, 7, 5),
        "wall_v_min": (0, 1, 5, 4), "wall_v_max": (2, 6, 7, 3),
    }
    tris, labels = [], []
    for name, (a, b, c, d) in quads.items():
        tris += [(a, b, c), (a, c, d)]
        labels += [name, name]
    return verts, np.array(tris), labels


def _mesh_room(verts, tris, tri_materials) -> dict:
    names: list = []
    index = []
    for m in tri_materials:
        if m not in names:
            names.append(m)
        index.append(names.index(m))
    return {"type": "mesh", "vertices": np.asarray(verts, float).tolist(),
            "faces": np.asarray(tris, int).tolist(), "face_materials": index, "materials": names}


def _aligned_shoebox(frame, lo, hi, mats) -> dict:
    centre = ((lo + hi) / 2) @ frame.T
    half = (hi - lo) / 2
    world_half = np.zeros(3)
    for axis in range(3):
        world_half[int(np.argmax(np.abs(frame[:, axis])))] = half[axis]
    return {"type": "shoebox", "min": (centre - world_half).tolist(), "max": (centre + world_half).tolist(),
            "materials": {"floor": mats["floor"], "ceiling": mats["ceiling"], "walls": mats["walls"]}}


def estimate_room(splats: Splats, *, up=(0.0, 0.0, 1.0), min_opacity: float = 0.5,
                  threshold: float | None = None, min_support: float = 0.015,
                  max_points: int = 200_000, max_planes: int = 14, seed: int = 0) -> RoomProxy:
    """Fit a box room (floor, ceiling, four walls) to the opaque gaussians.

    Parameters
    ----------
    splats : Splats
    up : sequence of 3 floats
        The world's up direction: +Z in Blender; ``(0, -1, 0)`` for a
        capture still in COLMAP's frame, whose cameras have -Y up.
    min_opacity : float
        Gaussians below this opacity (floaters, haze) are ignored.
    threshold : float, optional
        Plane inlier distance; default 0.5 % of the scene's diagonal
        (4 cm for a 6 x 5 x 3 m room).
    min_support : float
        A plane needs at least this fraction of the opaque gaussians.
    max_points : int
        Opaque gaussians used (a deterministic random subset beyond this).
    max_planes : int
    seed : int

    Returns
    -------
    RoomProxy

    Raises
    ------
    SplatError
        Too few opaque gaussians, or no vertical plane to orient the walls.
    """
    where = splats.source or "splats"
    up = np.asarray(up, float)
    up = up / np.linalg.norm(up)
    keep = (splats.opacities >= min_opacity) & np.isfinite(splats.positions).all(axis=1)
    idx = np.flatnonzero(keep)
    if len(idx) < 200:
        raise SplatError(f"{where}: only {len(idx)} gaussians have opacity >= {min_opacity}; "
                         "lower min_opacity or draw the room by hand")
    rng = np.random.default_rng(seed)
    if len(idx) > max_points:
        idx = np.sort(rng.choice(idx, size=max_points, replace=False))
    pts = splats.positions[idx].astype(np.float64)
    cols = splats.colors[idx].astype(np.float64)
    p_lo, p_hi = np.percentile(pts, [2, 98], axis=0)
    diag = float(np.linalg.norm(p_hi - p_lo))
    if threshold is None:
        threshold = 0.005 * diag
    min_inliers = max(50, int(min_support * len(pts)))
    planes = fit_planes(pts, threshold=threshold, min_inliers=min_inliers, max_planes=max_planes,
                        colors=cols, seed=seed)
    notes: list[str] = []
    cos10, sin10 = np.cos(np.radians(10)), np.sin(np.radians(10))
    horiz, vert = [], []
    for p in planes:
        c = float(p.normal @ up)
        if abs(c) > cos10:
            if c < 0:
                p.normal, p.offset = -p.normal, -p.offset
            horiz.append(p)
        elif abs(c) < sin10:
            vert.append(p)
        else:
            notes.append(f"ignored a plane tilted {np.degrees(np.arccos(abs(c))):.0f} deg from horizontal "
                         f"({p.inliers} gaussians), e.g. a sloped ceiling")
    if not vert:
        raise SplatError(f"{where}: found no wall (no vertical plane among {len(planes)} planes with "
                         f"up = {up.round(3).tolist()}); check the up axis, or draw the room by hand")

    # Room axes: the best-supported wall's normal, made horizontal.
    lead = max(vert, key=lambda p: p.inliers)
    a1 = lead.normal - (lead.normal @ up) * up
    a1 /= np.linalg.norm(a1)
    a2 = np.cross(up, a1)
    ref = np.array([1.0, 0, 0]) - up[0] * up
    if np.linalg.norm(ref) < 0.5:
        ref = np.array([0, 1.0, 0]) - up[1] * up
    cands = [a1, -a1, a2, -a2]
    a1 = cands[int(np.argmax([c @ ref for c in cands]))]
    a2 = np.cross(up, a1)
    frame = np.column_stack([a1, a2, up])

    faces: dict = {name: None for name in FACES}
    coord = pts @ frame
    lo = np.empty(3)
    hi = np.empty(3)

    def pick(group, axis, low_name, high_name):
        if not group:
            return
        strongest = max(p.inliers for p in group)
        strong = [p for p in group if p.inliers >= 0.25 * strongest]
        pos = [float(np.median(coord[p.index, axis])) for p in strong]
        i_lo, i_hi = int(np.argmin(pos)), int(np.argmax(pos))
        faces[low_name], lo[axis] = strong[i_lo], pos[i_lo]
        if i_hi != i_lo:
            faces[high_name], hi[axis] = strong[i_hi], pos[i_hi]
        else:
            # One plane only: decide which side it is by where the points are.
            mid = float(np.median(coord[:, axis]))
            if pos[i_lo] > mid:
                faces[low_name] = None
                faces[high_name], hi[axis] = strong[i_hi], pos[i_hi]

    along = {0: [], 1: []}
    for p in vert:
        for axis in (0, 1):
            if abs(p.normal @ frame[:, axis]) > cos10:
                along[axis].append(p)
    pick(along[0], 0, "wall_u_min", "wall_u_max")
    pick(along[1], 1, "wall_v_min", "wall_v_max")
    pick(horiz, 2, "floor", "ceiling")
    for axis, (low_name, high_name) in enumerate((("wall_u_min", "wall_u_max"),
                                                  ("wall_v_min", "wall_v_max"), ("floor", "ceiling"))):
        if faces[low_name] is None:
            lo[axis] = float(np.percentile(coord[:, axis], 1))
            notes.append(f"no plane found for the {low_name.replace('_', ' ')}; placed at the 1st percentile "
                         "of the gaussians")
        if faces[high_name] is None:
            hi[axis] = float(np.percentile(coord[:, axis], 99))
            notes.append(f"no plane found for the {high_name.replace('_', ' ')}; placed at the 99th percentile "
                         "of the gaussians")
    if np.any(hi - lo <= threshold):
        raise SplatError(f"{where}: the fitted room is degenerate (size {np.round(hi - lo, 3).tolist()}); "
                         "check the up axis, or draw the room by hand")
    for name, p in faces.items():
        if p is not None:
            p.label = name

    face_materials, reasons = {}, {}
    for name in FACES:
        surface = name if name in ("floor", "ceiling") else "wall"
        p = faces[name]
        if p is None or not np.all(np.isfinite(p.color)):
            face_materials[name] = DEFAULT_MATERIALS["walls" if surface == "wall" else surface]
            reasons[name] = "no plane found: default material"
        else:
            face_materials[name], reasons[name] = guess_material(p.color, surface)
    walls = [faces[n] for n in FACES[2:] if faces[n] is not None]
    if walls:
        wall_rgb = np.average([p.color for p in walls], axis=0, weights=[p.inliers for p in walls])
        wall_mat, reasons["walls"] = guess_material(wall_rgb, "wall")
    else:
        wall_mat, reasons["walls"] = DEFAULT_MATERIALS["walls"], "no wall plane found: default material"
    materials = {"floor": face_materials["floor"], "ceiling": face_materials["ceiling"], "walls": wall_mat}
    return RoomProxy(frame, lo, hi, faces, planes, materials, face_materials, reasons, notes)


# ---------------------------------------------------------------------------
# Rooms the user draws
# ---------------------------------------------------------------------------

def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _segments_cross(p1, p2, p3, p4) -> bool:
    def orient(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
    return (orient(p1, p2, p3) * orient(p1, p2, p4) < 0) and (orient(p3, p4, p1) * orient(p3, p4, p2) < 0)


def triangulate_polygon(xy: np.ndarray) -> np.ndarray:
    """Triangles of a simple counter-clockwise polygon by ear clipping.

    Written by hand because neither shapely nor mapbox_earcut is a project
    dependency; O(n^2), fine for the few dozen corners a user draws.

    Parameters
    ----------
    xy : ndarray, shape (K, 2)
        Corners, counter-clockwise, no repeated closing point.

    Returns
    -------
    ndarray of int, shape (K - 2, 3)
        Counter-clockwise triangles indexing ``xy``.
    """
    idx = list(range(len(xy)))
    tris = []

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    guard = 0
    while len(idx) > 3 and guard < 10 * len(xy) ** 2:
        guard += 1
        for k in range(len(idx)):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            a, b, c = xy[i0], xy[i1], xy[i2]
            if cross(a, b, c) <= 1e-12:
                continue  # reflex or degenerate corner: not an ear
            inside = False
            for j in idx:
                if j in (i0, i1, i2):
                    continue
                p = xy[j]
                if cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0:
                    inside = True
                    break
            if not inside:
                tris.append((i0, i1, i2))
                idx.pop(k)
                break
        else:
            break
    if len(idx) == 3:
        tris.append(tuple(idx))
    return np.array(tris, int)


def room_from_corners(corners, *, floor: float | None = None, ceiling: float | None = None,
                      height: float | None = None, materials: dict | None = None,
                      tolerance: float = 1e-6) -> dict:
    """A closed room from floor corners the user draws (world frame, Z up).

    Parameters
    ----------
    corners : array_like, shape (K, 2) or (K, 3)
        Floor outline in order (either direction), metres. With 3-D points
        (clicked on the splat floor) the floor height defaults to their mean z.
    floor : float, optional
        Floor height; required with 2-D corners.
    ceiling, height : float
        Ceiling height, or the height above the floor (one of them).
    materials : dict, optional
        ``floor``, ``ceiling``, ``walls`` (names or custom material objects);
        defaults ``DEFAULT_MATERIALS``.
    tolerance : float
        How far from axis-parallel a rectangle may be and still be a shoebox, metres.

    Returns
    -------
    dict
        A job ``shoebox`` for an axis-aligned rectangle, else a ``mesh``
        (floor and ceiling triangulated, one quad per wall, outward normals).

    Raises
    ------
    SplatError
        Fewer than 3 corners, non-finite values, a self-intersecting or
        zero-area outline, no or a non-positive height.
    """
    mats = dict(DEFAULT_MATERIALS)
    mats.update(materials or {})
    pts = np.asarray(corners, float)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise SplatError(f"room corners: expected a list of [x, y] or [x, y, z] points, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise SplatError("room corners: some coordinates are not finite")
    if floor is None:
        if pts.shape[1] != 3:
            raise SplatError("room corners: give the floor height (floor=...) or 3-D corners on the floor")
        floor = float(pts[:, 2].mean())
    xy = pts[:, :2].copy()
    keep = np.ones(len(xy), bool)
    for i in range(1, len(xy)):
        if np.linalg.norm(xy[i] - xy[i - 1]) <= tolerance:
            keep[i] = False
    xy = xy[keep]
    if len(xy) > 1 and np.linalg.norm(xy[0] - xy[-1]) <= tolerance:
        xy = xy[:-1]
    if len(xy) < 3:
        raise SplatError(f"room corners: need at least 3 distinct corners, got {len(xy)}")
    if ceiling is None and height is None:
        raise SplatError("room corners: give the ceiling height (ceiling=...) or the room height (height=...)")
    top = float(ceiling) if ceiling is not None else float(floor) + float(height)
    if not top > floor:
        raise SplatError(f"room corners: the ceiling ({top:g} m) must be above the floor ({floor:g} m)")
    k = len(xy)
    for i in range(k):
        for j in range(i + 1, k):
            if j == i + 1 or (i == 0 and j == k - 1):
                continue
            if _segments_cross(xy[i], xy[(i + 1) % k], xy[j], xy[(j + 1) % k]):
                raise SplatError(f"room corners: the outline crosses itself (edge {i} meets edge {j}); "
                                 "draw the corners in order around the room")
    area = _polygon_area(xy)
    if abs(area) <= tolerance:
        raise SplatError("room corners: the outline has zero area (corners in a line?)")
    if area < 0:
        xy = xy[::-1]
    if k == 4:
        edges = np.roll(xy, -1, axis=0) - xy
        axis_parallel = np.all(np.min(np.abs(edges), axis=1) <= tolerance)
        if axis_parallel:
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            return {"type": "shoebox", "min": [lo[0], lo[1], float(floor)], "max": [hi[0], hi[1], top],
                    "materials": {"floor": mats["floor"], "ceiling": mats["ceiling"], "walls": mats["walls"]}}
    tri = triangulate_polygon(xy)
    if len(tri) != k - 2:
        raise SplatError("room corners: the outline could not be triangulated (is it self-touching?)")
    verts = np.vstack([np.column_stack([xy, np.full(k, float(floor))]), np.column_stack([xy, np.full(k, top)])])
    faces, labels = [], []
    for a, b, c in tri:
        faces.append((a, c, b))          # floor: seen from below, so reversed
        labels.append(mats["floor"])
        faces.append((k + a, k + b, k + c))
        labels.append(mats["ceiling"])
    for i in range(k):
        j = (i + 1) % k
        faces += [(i, j, k + j), (i, k + j, k + i)]
        labels += [mats["walls"], mats["walls"]]
    return _mesh_room(verts, faces, labels)
