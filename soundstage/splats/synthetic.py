"""A synthetic splat room with known geometry, for tests and demos.

Gaussians lie flat on the six faces of a box room (normals along the face
normal, a few millimetres thick), box-shaped furniture stands on the floor,
and a fraction of outliers (floaters of any size and opacity) is scattered in
and around the room. Everything is deterministic given the seed, and every
gaussian carries a label saying what it belongs to, so tests can compare
fitted planes and ray hits with the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from soundstage.splats.model import SH_C0, Splats

#: Label values in ``SyntheticRoom.labels``.
LABELS = {"floor": 0, "ceiling": 1, "wall_x_min": 2, "wall_x_max": 3, "wall_y_min": 4, "wall_y_max": 5,
          "furniture": 6, "outlier": 7}


@dataclass
class SyntheticRoom:
    """A generated scene and its ground truth.

    Attributes
    ----------
    splats : Splats
    labels : ndarray of int8, shape (N,)
        ``LABELS`` value of each gaussian.
    room_min, room_max : ndarray, shape (3,)
        The room box in its own frame (before ``yaw``), metres.
    yaw_deg : float
        Rotation of the whole scene about +Z through the world origin.
    furniture : list of (min, max) pairs
        Furniture boxes in the room frame.
    """

    splats: Splats
    labels: np.ndarray
    room_min: np.ndarray
    room_max: np.ndarray
    yaw_deg: float
    furniture: list

    @property
    def rotation(self) -> np.ndarray:
        """World-from-room rotation, shape (3, 3)."""
        return Rotation.from_euler("z", self.yaw_deg, degrees=True).as_matrix()

    @property
    def size(self) -> np.ndarray:
        return self.room_max - self.room_min


def _surface_gaussians(rng, origin, e1, e2, normal, len1, len2, density, thickness, normal_sigma,
                       color, color_noise):
    """Flat gaussians on a rectangle ``origin + a e1 + b e2``, stratified for even cover."""
    spacing = 1.0 / np.sqrt(density)
    n1 = max(1, int(round(len1 / spacing)))
    n2 = max(1, int(round(len2 / spacing)))
    g1, g2 = np.meshgrid((np.arange(n1) + 0.5) / n1, (np.arange(n2) + 0.5) / n2, indexing="ij")
    a = (g1.ravel() + rng.uniform(-0.5, 0.5, g1.size) / n1) * len1
    b = (g2.ravel() + rng.uniform(-0.5, 0.5, g2.size) / n2) * len2
    m = a.size
    pos = origin + a[:, None] * e1 + b[:, None] * e2 + rng.normal(0, normal_sigma, m)[:, None] * normal
    # Local axes: two random tangents, then the normal (the shortest axis).
    ang = rng.uniform(0, np.pi, m)
    t1 = np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2
    t2 = np.cross(normal, t1)
    rot = np.stack([t1, t2, np.broadcast_to(normal, t1.shape)], axis=2)
    tangential = spacing * rng.uniform(0.6, 1.0, (m, 2))
    scales = np.column_stack([tangential, np.full(m, thickness) * rng.uniform(0.8, 1.2, m)])
    cols = np.clip(np.asarray(color) + rng.normal(0, color_noise, (m, 3)), 0, 1)
    opac = rng.uniform(0.75, 0.99, m)
    return pos, scales, rot, opac, cols


def _box_faces(lo, hi, skip_bottom=True):
    """Rectangles (origin, e1, e2, normal, len1, len2) of a box's outward faces."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    size = hi - lo
    ex, ey, ez = np.eye(3)
    faces = [
        (np.array([lo[0], lo[1], hi[2]]), ex, ey, ez, size[0], size[1]),            # top
        (lo.copy(), ey, ez, -ex, size[1], size[2]),                                  # -x
        (np.array([hi[0], lo[1], lo[2]]), ey, ez, ex, size[1], size[2]),             # +x
        (lo.copy(), ex, ez, -ey, size[0], size[2]),                                  # -y
        (np.array([lo[0], hi[1], lo[2]]), ex, ez, ey, size[0], size[2]),             # +y
    ]
    if not skip_bottom:
        faces.append((lo.copy(), ex, ey, -ez, size[0], size[1]))
    return faces


def make_synthetic_room(size=(6.0, 5.0, 3.0), *, origin=(-3.0, -2.5, 0.0), density: float = 300.0,
                        furniture: bool = True, outlier_fraction: float = 0.05, yaw_deg: float = 0.0,
                        thickness: float = 0.003, normal_sigma: float = 0.002, sh_degree: int = 0,
                        seed: int = 0, colors: dict | None = None) -> SyntheticRoom:
    """Gaussians on the inside faces of a box room, with furniture and outliers.

    Parameters
    ----------
    size : (3,) floats
        Room size along x, y, z, metres.
    origin : (3,) floats
        The room's minimum corner (before ``yaw_deg``).
    density : float
        Surface gaussians per square metre (their tangential sizes follow).
    furniture : bool
        Add a table, a sofa against a wall, a cabinet and small boxes on the floor
        (all below 1.2 m).
    outlier_fraction : float
        Outliers as a fraction of all gaussians, uniform in the room box grown
        by 20 % on every side, any size (1-10 cm) and opacity.
    yaw_deg : float
        Rotate the scene about +Z (the room is then not world-aligned).
    thickness : float
        Standard deviation of the surface gaussians along their normal, metres.
    normal_sigma : float
        Scatter of their centres off the true surface, metres.
    sh_degree : int
        Adds random higher-order SH (small) of this degree.
    seed : int
    colors : dict, optional
        ``floor``, ``ceiling``, ``walls`` RGB in [0, 1].

    Returns
    -------
    SyntheticRoom
    """
    rng = np.random.default_rng(seed)
    size = np.asarray(size, float)
    lo = np.asarray(origin, float)
    hi = lo + size
    pal = {"floor": (0.55, 0.38, 0.22), "ceiling": (0.93, 0.93, 0.92), "walls": (0.86, 0.84, 0.80)}
    pal.update(colors or {})
    ex, ey, ez = np.eye(3)
    room_faces = [
        ("floor", lo, ex, ey, ez, size[0], size[1], pal["floor"]),
        ("ceiling", np.array([lo[0], lo[1], hi[2]]), ex, ey, -ez, size[0], size[1], pal["ceiling"]),
        ("wall_x_min", lo, ey, ez, ex, size[1], size[2], pal["walls"]),
        ("wall_x_max", np.array([hi[0], lo[1], lo[2]]), ey, ez, -ex, size[1], size[2], pal["walls"]),
        ("wall_y_min", lo, ex, ez, ey, size[0], size[2], pal["walls"]),
        ("wall_y_max", np.array([lo[0], hi[1], lo[2]]), ex, ez, -ey, size[0], size[2], pal["walls"]),
    ]
    parts, labels = [], []
    for name, o, e1, e2, n, l1, l2, col in room_faces:
        part = _surface_gaussians(rng, o, e1, e2, n, l1, l2, density, thickness, normal_sigma, col, 0.03)
        parts.append(part)
        labels.append(np.full(len(part[0]), LABELS[name], np.int8))
    boxes = []
    if furniture:
        c = (lo + hi) / 2
        boxes = [
            (c + [-0.6, -0.4, 0] - [0, 0, c[2] - lo[2]], c + [0.6, 0.4, 0] - [0, 0, c[2] - lo[2] - 0.75]),
            (np.array([lo[0] + 0.02, c[1] - 1.0, lo[2]]), np.array([lo[0] + 0.92, c[1] + 1.0, lo[2] + 0.8])),
            (np.array([hi[0] - 0.52, hi[1] - 1.3, lo[2]]), np.array([hi[0] - 0.02, hi[1] - 0.3, lo[2] + 1.15])),
        ]
        for _ in range(6):
            bsize = rng.uniform(0.2, 0.5, 3)
            corner = rng.uniform(lo + 0.3, hi - 0.3 - bsize)
            corner[2] = lo[2]
            boxes.append((corner, corner + bsize))
        for b_lo, b_hi in boxes:
            col = rng.uniform(0.1, 0.9, 3)
            for o, e1, e2, n, l1, l2 in _box_faces(b_lo, b_hi):
                part = _surface_gaussians(rng, o, e1, e2, n, l1, l2, density, thickness, normal_sigma, col, 0.05)
                parts.append(part)
                labels.append(np.full(len(part[0]), LABELS["furniture"], np.int8))
    n_in = sum(len(p[0]) for p in parts)
    n_out = int(round(outlier_fraction * n_in / max(1e-9, 1 - outlier_fraction)))
    if n_out:
        grow = 0.2 * size
        pos = rng.uniform(lo - grow, hi + grow, (n_out, 3))
        rot = Rotation.random(n_out, random_state=rng).as_matrix()
        scales = np.exp(rng.uniform(np.log(0.01), np.log(0.1), (n_out, 3)))
        opac = rng.uniform(0.05, 1.0, n_out)
        cols = rng.uniform(0, 1, (n_out, 3))
        parts.append((pos, scales, rot, opac, cols))
        labels.append(np.full(n_out, LABELS["outlier"], np.int8))
    pos = np.concatenate([p[0] for p in parts])
    scales = np.concatenate([p[1] for p in parts])
    rot = np.concatenate([p[2] for p in parts])
    opac = np.concatenate([p[3] for p in parts])
    cols = np.concatenate([p[4] for p in parts])
    lab = np.concatenate(labels)
    yaw = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    pos = pos @ yaw.T
    rot = np.einsum("ij,njk->nik", yaw, rot)
    quat_xyzw = Rotation.from_matrix(rot).as_quat()
    quat = quat_xyzw[:, [3, 0, 1, 2]]
    quat *= np.sign(quat[:, :1] + 1e-12)
    dc = (cols - 0.5) / SH_C0
    k = (sh_degree + 1) ** 2 - 1
    rest = rng.normal(0, 0.05, (len(pos), k, 3)).astype(np.float32) if k else None
    splats = Splats(
        positions=pos.astype(np.float32), scales=scales.astype(np.float32), rotations=quat.astype(np.float32),
        opacities=opac.astype(np.float32), colors=cols.astype(np.float32), sh_rest=rest, sh_degree=sh_degree,
        sh_dc=dc.astype(np.float32), source=f"synthetic room {size.tolist()} seed {seed}",
    )
    return SyntheticRoom(splats, lab, lo, hi, float(yaw_deg), boxes)
