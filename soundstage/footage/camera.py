"""A solved camera path: Blender ``matrix_world`` per frame plus pinhole intrinsics.

Conventions (shared with the Blender side, see docs/footage.md):

- World: Blender's, metres, right-handed, Z up. The camera looks along its local -Z
  axis, its up is local +Y and its right local +X (``matrix_world`` is camera-to-world).
- Pixels: x to the right, y DOWN, origin at the top-left corner of the image, in
  pixels; the centre of pixel (i, j) is (i + 0.5, j + 0.5).
- Intrinsics as Blender states them: focal length and sensor width in millimetres
  with ``sensor_fit`` AUTO (the sensor size spans the larger image dimension),
  square pixels, principal point at the image centre moved by ``shift`` (Blender's
  ``shift_x``/``shift_y``, fractions of the larger dimension; a positive shift moves
  the frame right/up, so the principal point moves left/down in pixels).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError

#: Version of the camera path JSON written by ``Camera.to_json``.
CAMERA_JSON_VERSION = 1
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


def _rotations(matrices: np.ndarray) -> np.ndarray:
    """Pure rotations (F, 3, 3) of camera matrices, scale and shear removed (polar decomposition)."""
    u, _, vt = np.linalg.svd(matrices[:, :3, :3])
    rot = u @ vt
    rot[np.linalg.det(rot) < 0] *= -1  # a mirrored camera still gets a right-handed frame
    return rot


@dataclass
class Camera:
    """A pinhole camera path.

    Parameters
    ----------
    matrix_world : array_like, shape (F, 4, 4) or (4, 4)
        Blender ``matrix_world`` per frame (camera-to-world, metres).
    frames : array_like of int, shape (F,)
        Frame numbers of the matrices (Blender frame numbers, need not be contiguous).
    lens_mm : float or array_like, shape (F,)
        Focal length, millimetres (per frame when the lens zooms).
    sensor_mm : float
        Sensor size, millimetres, spanning the dimension given by ``sensor_fit``.
    resolution : (int, int)
        Image width and height in pixels.
    shift : (float, float)
        Blender ``shift_x``, ``shift_y`` (fractions of the larger image dimension).
    sensor_fit : str
        ``"AUTO"`` (default: the larger dimension), ``"HORIZONTAL"`` or ``"VERTICAL"``.
    name : str
    """

    matrix_world: np.ndarray
    frames: np.ndarray
    lens_mm: float | np.ndarray = 50.0
    sensor_mm: float = 36.0
    resolution: tuple[int, int] = (1920, 1080)
    shift: tuple[float, float] = (0.0, 0.0)
    sensor_fit: str = "AUTO"
    name: str = "Camera"
    _index: dict = field(init=False, repr=False)

    def __post_init__(self):
        m = np.asarray(self.matrix_world, dtype=float)
        if m.ndim == 2:
            m = m[None]
        frames = np.atleast_1d(np.asarray(self.frames)).astype(int)
        if m.shape[1:] != (4, 4) or len(m) != len(frames):
            raise SoundstageError(f"camera '{self.name}': {len(frames)} frames but matrices of shape {m.shape}; "
                                  "give one 4x4 matrix per frame")
        if len(frames) == 0:
            raise SoundstageError(f"camera '{self.name}' has no frames (no camera solve?); solve the camera first")
        if not np.isfinite(m).all():
            bad = int(frames[np.flatnonzero(~np.isfinite(m).reshape(len(m), -1).all(axis=1))[0]])
            raise SoundstageError(f"camera '{self.name}': matrix of frame {bad} is not finite")
        if len(set(frames.tolist())) != len(frames):
            raise SoundstageError(f"camera '{self.name}': a frame number appears twice")
        if abs(np.linalg.det(m[:, :3, :3])).min() < 1e-12:
            raise SoundstageError(f"camera '{self.name}': a matrix is degenerate (zero scale)")
        w, h = (int(v) for v in self.resolution)
        if w <= 0 or h <= 0:
            raise SoundstageError(f"camera '{self.name}': resolution {w} x {h} must be positive")
        lens = np.broadcast_to(np.asarray(self.lens_mm, dtype=float), frames.shape).copy()
        if not (np.isfinite(lens).all() and (lens > 0).all()):
            raise SoundstageError(f"camera '{self.name}': lens_mm must be positive, got {self.lens_mm}")
        if not (math.isfinite(float(self.sensor_mm)) and float(self.sensor_mm) > 0):
            raise SoundstageError(f"camera '{self.name}': sensor_mm must be positive, got {self.sensor_mm}")
        if self.sensor_fit not in SENSOR_FITS:
            raise SoundstageError(f"camera '{self.name}': sensor_fit {self.sensor_fit!r}; use one of {', '.join(SENSOR_FITS)}")
        self.matrix_world, self.frames, self.lens_mm = m, frames, lens
        self.sensor_mm = float(self.sensor_mm)
        self.resolution = (w, h)
        self.shift = (float(self.shift[0]), float(self.shift[1]))
        self._rot = _rotations(m)
        self._index = {int(f): i for i, f in enumerate(frames)}

    # ------------------------------------------------------------------ intrinsics
    @property
    def width(self) -> int:
        return self.resolution[0]

    @property
    def height(self) -> int:
        return self.resolution[1]

    def _fit_size(self) -> int:
        w, h = self.resolution
        if self.sensor_fit == "HORIZONTAL":
            return w
        if self.sensor_fit == "VERTICAL":
            return h
        return max(w, h)

    def focal_px(self, index=None) -> np.ndarray:
        """Focal length in pixels per frame (or at frame indices ``index``), shape (F,) or like ``index``."""
        f = self.lens_mm / self.sensor_mm * self._fit_size()
        return f if index is None else f[index]

    def principal_point(self) -> np.ndarray:
        """Principal point (cx, cy) in pixels (y down)."""
        w, h = self.resolution
        s = max(w, h)  # Blender's shift is a fraction of the larger dimension whatever the fit
        return np.array([w / 2 - self.shift[0] * s, h / 2 + self.shift[1] * s])

    def fov_deg(self) -> tuple[float, float]:
        """Horizontal and vertical field of view of the first frame, degrees (no shift)."""
        f = float(self.focal_px()[0])
        w, h = self.resolution
        return (math.degrees(2 * math.atan(w / 2 / f)), math.degrees(2 * math.atan(h / 2 / f)))

    # ------------------------------------------------------------------ frames
    def has_frame(self, frame: int) -> bool:
        return int(frame) in self._index

    def frame_index(self, frames) -> np.ndarray:
        """Indices into ``matrix_world`` of Blender frame numbers (scalar or (N,)).

        Raises
        ------
        SoundstageError
            A frame the camera path has no pose for (names it and the solved range).
        """
        arr = np.atleast_1d(np.asarray(frames)).astype(int)
        out = np.empty(arr.shape, dtype=int)
        for k, f in enumerate(arr.ravel()):
            i = self._index.get(int(f))
            if i is None:
                raise SoundstageError(f"camera '{self.name}' has no pose at frame {int(f)} "
                                      f"(solved frames {self.frames.min()}-{self.frames.max()})")
            out.flat[k] = i
        return out

    def _per_point(self, frames, n: int) -> np.ndarray:
        idx = self.frame_index(frames)
        if idx.size == 1:
            return np.full(n, idx[0])
        if idx.shape != (n,):
            raise ValueError(f"frames must be one frame or one per point ({n}), got shape {idx.shape}")
        return idx

    def positions(self) -> np.ndarray:
        """Camera centres (F, 3), metres."""
        return self.matrix_world[:, :3, 3].copy()

    # ------------------------------------------------------------------ geometry
    def camera_directions(self, uv_px, index) -> np.ndarray:
        """Ray directions in the camera's local frame (N, 3), scaled so that local z = -1."""
        uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        f = self.focal_px(index)
        c = self.principal_point()
        x = (uv[:, 0] - c[0]) / f
        y = -(uv[:, 1] - c[1]) / f  # pixel y grows downwards, camera +Y is up
        return np.stack([x, y, -np.ones_like(x)], axis=1)

    def rays(self, frames, uv_px) -> tuple[np.ndarray, np.ndarray]:
        """World rays through pixels.

        Parameters
        ----------
        frames : int or array_like of int, shape (N,)
            Blender frame number(s): one for all pixels or one per pixel.
        uv_px : array_like, shape (N, 2)
            Pixel coordinates (x right, y down, origin top-left, pixel centres at +0.5).

        Returns
        -------
        origins : ndarray, shape (N, 3)
            Camera centres, metres.
        directions : ndarray, shape (N, 3)
            Unit directions in world coordinates.
        """
        uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        idx = self._per_point(frames, len(uv))
        d_cam = self.camera_directions(uv, idx)
        d = np.einsum("nij,nj->ni", self._rot[idx], d_cam)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return self.matrix_world[idx, :3, 3].copy(), d

    def back_project(self, frames, uv_px, depth, kind: str = "z") -> np.ndarray:
        """World points (N, 3) at ``depth`` along the rays through ``uv_px``.

        Parameters
        ----------
        depth : array_like, shape (N,) or scalar
            Metres; ``kind="z"``: distance along the camera's viewing axis (-Z);
            ``kind="range"``: distance along the ray from the camera centre.
        kind : {"z", "range"}
        """
        if kind not in ("z", "range"):
            raise SoundstageError(f"depth kind {kind!r}: use 'z' (along the camera axis) or 'range' (along the ray)")
        uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        idx = self._per_point(frames, len(uv))
        d_cam = self.camera_directions(uv, idx)  # local z = -1: a z-depth of 1 is this vector
        dep = np.broadcast_to(np.asarray(depth, dtype=float), (len(uv),))
        if kind == "range":
            dep = dep / np.linalg.norm(d_cam, axis=1)
        local = d_cam * dep[:, None]
        return np.einsum("nij,nj->ni", self._rot[idx], local) + self.matrix_world[idx, :3, 3]

    def to_camera(self, frames, points) -> np.ndarray:
        """Points (N, 3) in the camera's local frame (x right, y up, looking along -z)."""
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        idx = self._per_point(frames, len(p))
        rel = p - self.matrix_world[idx, :3, 3]
        return np.einsum("nji,nj->ni", self._rot[idx], rel)

    def project(self, frames, points) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates of world points.

        Parameters
        ----------
        frames : int or array_like of int, shape (N,)
        points : array_like, shape (N, 3)

        Returns
        -------
        uv : ndarray, shape (N, 2)
            Pixels (x right, y down, origin top-left); NaN for points on the camera plane.
        in_front : ndarray of bool, shape (N,)
            The point is in front of the camera (positive z-depth). Points behind it
            still get the (mirrored) projection; check this flag.
        """
        p = np.asarray(points, dtype=float).reshape(-1, 3)
        idx = self._per_point(frames, len(p))
        local = self.to_camera(self.frames[idx], p)
        z = -local[:, 2]
        f = self.focal_px(idx)
        c = self.principal_point()
        with np.errstate(divide="ignore", invalid="ignore"):
            u = c[0] + f * local[:, 0] / z
            v = c[1] - f * local[:, 1] / z
        uv = np.stack([u, v], axis=1)
        uv[z == 0] = np.nan
        return uv, z > 0

    def z_depth(self, frames, points) -> np.ndarray:
        """Distance (N,) of world points along the viewing axis (-Z), metres."""
        return -self.to_camera(frames, points)[:, 2]

    def inside(self, uv_px) -> np.ndarray:
        """True where pixel coordinates (N, 2) fall inside the image."""
        uv = np.asarray(uv_px, dtype=float).reshape(-1, 2)
        w, h = self.resolution
        with np.errstate(invalid="ignore"):
            return (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """The camera path file (see ``from_json`` for the fields)."""
        lens = self.lens_mm
        return {
            "version": CAMERA_JSON_VERSION,
            "name": self.name,
            "convention": "Blender matrix_world per frame, row-major; camera looks along local -Z, up +Y; metres",
            "frames": [int(f) for f in self.frames],
            "matrix_world": [m.reshape(-1).tolist() for m in self.matrix_world],
            "lens_mm": float(lens[0]) if np.all(lens == lens[0]) else lens.tolist(),
            "sensor_mm": self.sensor_mm,
            "sensor_fit": self.sensor_fit,
            "resolution": list(self.resolution),
            "shift": list(self.shift),
        }

    @classmethod
    def from_json(cls, doc: dict, where: str = "camera file") -> "Camera":
        """Read a camera path document.

        Fields: ``frames`` (list of int, required), ``matrix_world`` (one row-major 16-number
        list per frame, required), ``lens_mm`` (number or one per frame), ``sensor_mm``,
        ``sensor_fit`` (AUTO/HORIZONTAL/VERTICAL), ``resolution`` [W, H], ``shift``
        [x, y], ``name``; ``version`` 1 (optional).

        Raises
        ------
        SoundstageError
            One line naming ``where`` and the field.
        """
        if not isinstance(doc, dict):
            raise SoundstageError(f"{where}: a camera path is a JSON object")
        if doc.get("version", CAMERA_JSON_VERSION) != CAMERA_JSON_VERSION:
            raise SoundstageError(f"{where}: version {doc.get('version')!r}; this engine reads version {CAMERA_JSON_VERSION}")
        frames = doc.get("frames")
        if not frames:
            raise SoundstageError(f"{where}: no frames (the clip has no camera solve?); "
                                  "solve the camera in Blender's Movie Clip editor and export the path again")
        mats = doc.get("matrix_world")
        try:
            frames_arr = np.asarray(frames)
            if frames_arr.ndim != 1 or not np.all(np.equal(np.mod(frames_arr, 1), 0)):
                raise ValueError
            m = np.asarray(mats, dtype=float)
        except (TypeError, ValueError):
            raise SoundstageError(f"{where}: 'frames' must be a list of integers and 'matrix_world' a list of "
                                  "16-number lists") from None
        if m.ndim != 2 or m.shape[1] != 16 or len(m) != len(frames_arr):
            raise SoundstageError(f"{where}: 'matrix_world' needs one 16-number row-major matrix per frame "
                                  f"({len(frames_arr)} frames), got shape {m.shape}")
        res = doc.get("resolution", [1920, 1080])
        shift = doc.get("shift", [0.0, 0.0])
        try:
            res = (int(res[0]), int(res[1]))
            shift = (float(shift[0]), float(shift[1]))
            lens = doc.get("lens_mm", 50.0)
            lens = np.asarray(lens, dtype=float)
            sensor = float(doc.get("sensor_mm", 36.0))
        except (TypeError, ValueError, IndexError):
            raise SoundstageError(f"{where}: 'resolution' is [width, height], 'shift' [x, y], "
                                  "'lens_mm' and 'sensor_mm' numbers") from None
        if lens.ndim == 1 and len(lens) != len(frames_arr):
            raise SoundstageError(f"{where}: 'lens_mm' has {len(lens)} values for {len(frames_arr)} frames")
        try:
            return cls(m.reshape(-1, 4, 4), frames_arr.astype(int), lens, sensor, res, shift,
                       str(doc.get("sensor_fit", "AUTO")), str(doc.get("name", "Camera")))
        except SoundstageError as e:
            raise SoundstageError(f"{where}: {e}") from None


def read_camera(path) -> Camera:
    """Load a camera path JSON file (``Camera.from_json``), one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise SoundstageError(f"camera file not found: {p}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SoundstageError(f"{p}: not valid JSON ({e})") from None
    return Camera.from_json(doc, where=str(p))
