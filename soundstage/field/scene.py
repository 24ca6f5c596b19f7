"""Scene features at a listener pose: ray-cast depth and absorption panoramas.

AV-NeRF conditions its audio field on what the camera sees (its AV-Mapper feeds
frozen ImageNet features of rendered RGB and depth images to an MLP). This project
has no pretrained image networks at run time (nothing may be downloaded), but it has
the acoustic scene itself: the room of a job, or the room fitted to a splat capture
(``soundstage splats room``). So the features here are what matters acoustically
and what those images stand for:

* a **depth panorama**: ``log`` of the distance to the first surface along 38 fixed
  world-frame directions (12 azimuths at -35, 0 and +35 degrees elevation, straight up,
  straight down), so the field knows where the walls are;
* a **material panorama**: the mean octave-band absorption of the surface each ray
  hits, so it knows how live they are;
* the **source**: ``log`` distance to the source and whether the line of sight to it is
  clear.

The panorama is in the world frame on purpose: the features describe *where* the
listener stands, and the heading enters the field only through the direction
embeddings. ``docs/field.md`` shows the ablation (with and without these features).
"""

from __future__ import annotations

import numpy as np

#: Elevations (degrees) and azimuth count of the panorama rings.
ELEVATIONS = (-35.0, 0.0, 35.0)
N_AZIMUTHS = 12
MAX_DEPTH = 30.0


def panorama_directions() -> np.ndarray:
    """Unit ray directions of the panorama, shape (38, 3): three rings of 12, then up and down."""
    dirs = []
    for el in np.radians(ELEVATIONS):
        for az in np.arange(N_AZIMUTHS) * 2 * np.pi / N_AZIMUTHS:
            dirs.append([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    dirs += [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
    return np.asarray(dirs)


N_FEATURES = 2 * (len(ELEVATIONS) * N_AZIMUTHS + 2) + 2


class SceneFeatures:
    """Scene features of a job-format room.

    Parameters
    ----------
    room : dict
        A job's ``room`` object: shoebox, mesh or free field.
    source_position : (3,) array_like

    Attributes
    ----------
    dim : int
        Length of a feature vector (``N_FEATURES``).
    """

    dim = N_FEATURES

    def __init__(self, room: dict, source_position):
        from soundstage.rooms.factory import room_from_spec

        self.spec = room
        self.room = room_from_spec(room, "room")
        self.source = np.asarray(source_position, float)
        self.dirs = panorama_directions()
        self._tris = None
        if self.room is not None and self.room.kind == "mesh":
            from soundstage.rooms.raytrace import TriangleClusters

            self._tris = TriangleClusters(self.room.vertices[self.room.faces])

    # ------------------------------------------------------------------ ray casting
    def _shoebox(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exit distance and absorption of rays from inside an axis-aligned box (slab method)."""
        r = self.room
        o = np.clip(o, r.lo + 1e-6, r.hi - 1e-6)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_hi = np.where(d > 0, (r.hi - o) / d, np.inf)
            t_lo = np.where(d < 0, (r.lo - o) / d, np.inf)
        t_all = np.concatenate([t_lo, t_hi], axis=1)  # (n, 6): -x -y -z +x +y +z
        face = np.argmin(t_all, axis=1)
        t = t_all[np.arange(len(o)), face]
        group = np.where(face == 2, "floor", np.where(face == 5, "ceiling", "walls"))
        absorb = {k: float(np.mean(r.materials[k].absorption)) for k in ("walls", "floor", "ceiling")}
        a = np.array([absorb[g] for g in group])
        return t, a

    def _mesh(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, tri = self._tris.nearest(o, d, 1e-6, MAX_DEPTH)
        a = np.where(tri >= 0, self.room.absorption[np.maximum(tri, 0)].mean(axis=1), 1.0)
        return t, a

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance (m, clipped to 0.05-30) and absorption of the first surface along each ray, shapes (n,)."""
        o = np.asarray(origins, float)
        d = np.asarray(directions, float)
        if self.room is None:
            t, a = np.full(len(o), MAX_DEPTH), np.ones(len(o))
        elif self.room.kind == "shoebox":
            t, a = self._shoebox(o, d)
        else:
            t, a = self._mesh(o, d)
        return np.clip(np.where(np.isfinite(t), t, MAX_DEPTH), 0.05, MAX_DEPTH), a

    def line_of_sight(self, positions: np.ndarray) -> np.ndarray:
        """1.0 where nothing blocks the straight path to the source, else 0.0, shape (n,)."""
        p = np.asarray(positions, float)
        if self._tris is None:  # free field and a shoebox (convex) never block
            return np.ones(len(p))
        return (~self._tris.any_hit(p, np.broadcast_to(self.source, p.shape).copy())).astype(float)

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Feature vectors at listener positions.

        Parameters
        ----------
        positions : ndarray, shape (n, 3)

        Returns
        -------
        ndarray, shape (n, dim), float32
            Per ray ``log(depth / 1 m)``, then per ray the absorption, then
            ``log(source distance / 1 m)`` and the line-of-sight flag.
        """
        p = np.atleast_2d(np.asarray(positions, float))
        n, k = len(p), len(self.dirs)
        o = np.repeat(p, k, axis=0)
        d = np.tile(self.dirs, (n, 1))
        depth, absorb = self.cast(o, d)
        dist = np.linalg.norm(p - self.source, axis=1)
        feats = np.concatenate([np.log(depth).reshape(n, k), absorb.reshape(n, k),
                                np.log(np.maximum(dist, 0.05))[:, None], self.line_of_sight(p)[:, None]], axis=1)
        return feats.astype(np.float32)


def scene_features_reference(room: dict, source_position, position) -> np.ndarray:
    """Slow reference for one position: every ray marched in 1 mm steps until it leaves the room.

    Only for tests of ``SceneFeatures`` (shoebox and mesh rooms): a point is inside
    when ``room.contains`` says so.
    """
    from soundstage.rooms.factory import room_from_spec

    r = room_from_spec(room, "room")
    p = np.asarray(position, float)
    out_d, out_a = [], []
    for d in panorama_directions():
        t = 0.0
        while t < MAX_DEPTH and r.contains((p + (t + 1e-3) * d)[None])[0]:
            t += 1e-3
        out_d.append(np.log(max(t, 0.05)))
        if r.kind == "shoebox":
            q = p + t * d
            gaps = np.r_[q - r.lo, r.hi - q]
            face = int(np.argmin(gaps))
            g = "floor" if face == 2 else "ceiling" if face == 5 else "walls"
            out_a.append(float(np.mean(r.materials[g].absorption)))
        else:
            out_a.append(np.nan)
    dist = np.linalg.norm(p - np.asarray(source_position, float))
    return np.array(out_d + out_a + [np.log(max(dist, 0.05)), 1.0])
