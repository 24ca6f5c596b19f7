"""Poses per frame, and smooth poses between frames.

Positions are interpolated with a cubic Hermite spline whose tangents are
central differences (Catmull-Rom), rotations with scipy's C2 ``RotationSpline``.
A jump that no physical motion explains (faster than ``CUT_SPEED`` or a turn of
more than 90 degrees within one frame) is a *cut*: the trajectory is split there
and the renderers crossfade across the cut instead of sweeping through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicHermiteSpline
from scipy.spatial.transform import Rotation, RotationSpline

#: Fraction of the speed of sound above which a frame-to-frame move is a cut.
CUT_SPEED_FRACTION = 0.3
#: Listener turn per frame above which the move is a cut, degrees.
CUT_TURN_DEG = 90.0


def listener_frame(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Listener positions and orientations from Blender camera matrices.

    The camera looks along its local -Z with local +Y up, so the listener frame
    (x ahead, y left, z up) is (-Z, -X, +Y) of the camera. Scale and shear are
    removed (polar decomposition).

    Parameters
    ----------
    matrices : ndarray, shape (F, 4, 4)

    Returns
    -------
    positions : ndarray, shape (F, 3)
    world_from_listener : ndarray, shape (F, 3, 3)
        Columns are the listener's ahead, left and up axes in world coordinates;
        ``R.T @ v`` expresses a world vector in the listener frame.
    """
    m = np.asarray(matrices, dtype=float)
    pos = m[:, :3, 3].copy()
    A = m[:, :3, :3]
    u, _, vt = np.linalg.svd(A)
    rot = u @ vt
    det = np.linalg.det(rot)
    rot[det < 0] *= -1  # a mirrored camera still has a right-handed head
    cam_x, cam_y, cam_z = rot[:, :, 0], rot[:, :, 1], rot[:, :, 2]
    R = np.stack([-cam_z, -cam_x, cam_y], axis=-1)
    return pos, R


def find_cuts(positions: np.ndarray, fps: float, speed_of_sound: float,
              rotations: np.ndarray | None = None) -> np.ndarray:
    """Frame indices k such that the step k -> k+1 is a cut.

    Parameters
    ----------
    positions : ndarray, shape (F, 3)
    rotations : ndarray, shape (F, 3, 3), optional

    Returns
    -------
    ndarray of int
    """
    if len(positions) < 2:
        return np.zeros(0, dtype=int)
    speed = np.linalg.norm(np.diff(positions, axis=0), axis=1) * fps
    cut = speed > CUT_SPEED_FRACTION * speed_of_sound
    if rotations is not None:
        rel = np.einsum("fji,fjk->fik", rotations[:-1], rotations[1:])
        ang = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
        cut |= ang > CUT_TURN_DEG
    return np.flatnonzero(cut)


def segments(n_frames: int, cuts) -> list[tuple[int, int]]:
    """Inclusive frame ranges between cuts."""
    bounds = [0] + [int(k) + 1 for k in sorted(cuts)] + [n_frames]
    return [(a, b - 1) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


@dataclass
class PositionPath:
    """Smooth position path through one segment of per-frame positions."""

    times: np.ndarray  # (n,) seconds of the frames in the segment
    positions: np.ndarray  # (n, 3)

    def __post_init__(self):
        if len(self.times) >= 2:
            tang = np.gradient(self.positions, self.times, axis=0)
            self._spline = CubicHermiteSpline(self.times, self.positions, tang, axis=0)
        else:
            self._spline = None

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Positions (n, 3) at times ``t`` (held outside the segment)."""
        t = np.asarray(t, dtype=float)
        if self._spline is None:
            return np.broadcast_to(self.positions[0], t.shape + (3,)).copy()
        return self._spline(np.clip(t, self.times[0], self.times[-1]))


@dataclass
class RotationPath:
    """Smooth orientation path (world_from_listener matrices) through one segment."""

    times: np.ndarray
    matrices: np.ndarray  # (n, 3, 3)

    def __post_init__(self):
        if len(self.times) >= 2:
            self._spline = RotationSpline(self.times, Rotation.from_matrix(self.matrices))
        else:
            self._spline = None

    def __call__(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        if self._spline is None:
            return np.broadcast_to(self.matrices[0], t.shape + (3, 3)).copy()
        return self._spline(np.clip(t, self.times[0], self.times[-1])).as_matrix()
