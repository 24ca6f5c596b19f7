"""A synthetic tracked shot with known ground truth (for tests, the benchmark and the demo).

A ball (radius ``RADIUS``) moves through a 6 x 5 x 3 m box room past a camera that
dollies and pans after it. The camera path is exact (as if solved); the 2-D track is
the ball centre's projection with Gaussian pixel noise, and a fraction of frames is
replaced by wild positions anywhere in the image (a tracker that jumped). Depth is the
scene's Z pass (distance along the camera's -Z axis) rendered by ray casting the
camera's pixels against the ball and the room's six walls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstage.footage.camera import Camera
from soundstage.footage.track import Track

ROOM_MIN = np.array([0.0, 0.0, 0.0])
ROOM_MAX = np.array([6.0, 5.0, 3.0])
RADIUS = 0.1
FPS = 24


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender camera ``matrix_world`` (4, 4) at ``position`` looking at ``target`` (local -Z), +Y up."""
    pos = np.asarray(position, float)
    fwd = np.asarray(target, float) - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, fwd)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, cam_up, -fwd, pos
    return m


def ray_box_exit(origins: np.ndarray, dirs: np.ndarray, lo=ROOM_MIN, hi=ROOM_MAX) -> np.ndarray:
    """Distance (N,) along unit rays from inside an axis-aligned box to its walls."""
    with np.errstate(divide="ignore"):
        t = np.where(dirs > 0, (hi - origins) / dirs, np.where(dirs < 0, (lo - origins) / dirs, np.inf))
    return t.min(axis=1)


def ray_sphere(origins: np.ndarray, dirs: np.ndarray, centre, radius: float) -> np.ndarray:
    """Distance (N,) along unit rays to the first hit of a sphere in front of the origin; inf if none."""
    oc = origins - np.asarray(centre, float)
    b = np.einsum("ij,ij->i", oc, dirs)
    c = np.einsum("ij,ij->i", oc, oc) - radius**2
    disc = b * b - c
    root = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = -b - root, -b + root
    t = np.where(t0 > 1e-9, t0, np.where(t1 > 1e-9, t1, np.inf))
    return np.where(disc >= 0, t, np.inf)


class SceneDepth:
    """Z-pass depth maps of the synthetic scene, rendered on demand (``DepthSequence``'s interface)."""

    def __init__(self, camera: Camera, centres: np.ndarray, radius: float = RADIUS):
        self.camera, self.centres, self.radius = camera, centres, radius
        self._last = (None, None)

    @property
    def frames(self) -> np.ndarray:
        return self.camera.frames

    def describe(self, frame: int) -> str:
        return f"rendered Z pass of frame {frame}"

    def range_at(self, frame: int, uv: np.ndarray) -> np.ndarray:
        """Ray length (N,) to the first surface through pixels ``uv`` (N, 2) of ``frame``."""
        o, d = self.camera.rays(frame, uv)
        i = self.camera.frame_index(frame)[0]
        return np.minimum(ray_box_exit(o, d), ray_sphere(o, d, self.centres[i], self.radius))

    def map(self, frame: int) -> np.ndarray:
        """(H, W) Z depth, metres."""
        if self._last[0] == frame:
            return self._last[1]
        w, h = self.camera.resolution
        jj, ii = np.mgrid[0:h, 0:w]
        uv = np.stack([ii.ravel() + 0.5, jj.ravel() + 0.5], axis=1)
        o, d = self.camera.rays(frame, uv)
        rng = self.range_at(frame, uv)
        z = self.camera.z_depth(frame, o + d * rng[:, None]).reshape(h, w)
        self._last = (frame, z)
        return z

    def sample(self, frame: int, uv, patch: int = 5, resolution=None):
        """Patch median of the Z pass around ``uv`` (as ``patch_median`` on ``map(frame)``).

        Only the patch's pixels are rendered (a full map costs 0.1 s a frame).
        """
        uv_arr = np.asarray(uv, float)
        pts = uv_arr.reshape(-1, 2)
        w, h = self.camera.resolution
        r = max(int(patch), 1) // 2
        out = np.full(len(pts), np.nan)
        for k, (u, v) in enumerate(pts):
            if not (np.isfinite(u) and np.isfinite(v) and 0 <= u < w and 0 <= v < h):
                continue
            i, j = int(u), int(v)
            jj, ii = np.mgrid[max(j - r, 0): min(j + r + 1, h), max(i - r, 0): min(i + r + 1, w)]
            pix = np.stack([ii.ravel() + 0.5, jj.ravel() + 0.5], axis=1)
            o, d = self.camera.rays(frame, pix)
            z = self.camera.z_depth(frame, o + d * self.range_at(frame, pix)[:, None])
            z = z[np.isfinite(z) & (z > 0)]
            out[k] = np.median(z) if z.size else np.nan
        return float(out[0]) if uv_arr.ndim == 1 else out


@dataclass
class SyntheticShot:
    """Unpacks as ``camera, true_path, track, depth``.

    Attributes
    ----------
    camera : Camera
    true_path : ndarray, shape (F, 3)
        Ball centre per frame, metres.
    track : Track
        Noisy 2-D track (pixel noise, wild outliers).
    depth : SceneDepth
        Z-pass depth maps (``DepthSequence`` interface).
    clean_track : Track
        Exact projection of the ball centre.
    outlier_frames : ndarray of int
    radius : float
    room : dict
        The room as a job's shoebox object.
    fps : float
    """

    camera: Camera
    true_path: np.ndarray
    track: Track
    depth: SceneDepth
    clean_track: Track
    outlier_frames: np.ndarray
    radius: float
    room: dict
    fps: float

    def __iter__(self):
        return iter((self.camera, self.true_path, self.track, self.depth))


def synthetic_shot(seed: int = 0, *, seconds: float = 3.0, noise_px: float = 5.0, outlier_fraction: float = 0.10,
                   resolution=(640, 360), lens_mm: float = 24.0) -> SyntheticShot:
    """Build the synthetic shot.

    Parameters
    ----------
    seed : int
        Seeds the path's small variations, the pixel noise and the outliers.
    seconds : float
        Length at 24 fps (frames 1 .. 24 * seconds).
    noise_px : float
        Standard deviation of the Gaussian pixel noise per axis.
    outlier_fraction : float
        Fraction of frames whose marker is replaced by a uniform random pixel.
    resolution : (W, H)
    lens_mm : float
        With a 36 mm sensor.

    Returns
    -------
    SyntheticShot
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    frames = np.arange(1, n + 1)
    t = (frames - 1) / FPS
    s = t / max(t[-1], 1e-9)  # 0..1 through the shot
    ph = rng.uniform(0, 2 * np.pi, 3)
    # Ball: an arc from the camera's front right to its front left, near ear height.
    ang = np.radians(-40 + 85 * s)
    centre = np.stack([1.2 + 2.6 * np.cos(ang) + 0.1 * np.sin(2 * np.pi * s + ph[0]),
                       2.4 + 2.0 * np.sin(ang) + 0.1 * np.sin(2 * np.pi * s + ph[1]),
                       1.5 + 0.15 * np.sin(2 * np.pi * s + ph[2])], axis=1)
    # Camera: dollies 0.8 m and pans part of the way after the ball, so the ball crosses
    # the frame (about 25 degrees right of the axis to 28 degrees left).
    cam_pos = np.stack([1.0 + 0.5 * s, 2.0 + 0.6 * s, 1.6 + 0 * s], axis=1)
    target = 0.3 * centre + 0.7 * np.array([3.8, 2.6, 1.5])
    mats = np.stack([look_at(p, q) for p, q in zip(cam_pos, target)])
    camera = Camera(mats, frames, lens_mm, 36.0, resolution, name="SyntheticCamera")
    uv_true, front = camera.project(frames, centre)
    assert front.all() and camera.inside(uv_true).all(), "synthetic ball left the frame"
    uv = uv_true + rng.normal(0, noise_px, uv_true.shape)
    n_out = int(round(outlier_fraction * n))
    out_idx = np.sort(rng.choice(n, n_out, replace=False))
    uv[out_idx] = rng.uniform([0, 0], resolution, (n_out, 2))
    depth = SceneDepth(camera, centre)
    room = {"type": "shoebox", "min": ROOM_MIN.tolist(), "max": ROOM_MAX.tolist(), "material": "plasterboard"}
    return SyntheticShot(camera, centre, Track(frames, uv, "Ball"), depth, Track(frames, uv_true, "Ball"),
                         frames[out_idx], RADIUS, room, float(FPS))
