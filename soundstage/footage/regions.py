"""Sources from a still: one source per image region at its 3-D centre.

Each region's pixels (centres at +0.5) with a valid depth (finite, > 0) are
back-projected through the camera (``Camera.back_project``, the pinhole mapping of
pixel to direction through the field of view, as SEE-2-SOUND places its sources; they
map pixel offsets linearly to angles, ``mapping="linear"`` reproduces that), and the
source sits at the per-axis median of those points (robust to background pixels a
loose box or mask lets in).
"""

from __future__ import annotations

import math

import numpy as np

from soundstage.errors import SoundstageError
from soundstage.footage.camera import Camera


def _masks(regions, shape, names):
    """(name, bool mask (H, W)) pairs from boxes, masks, a label image or a dict of those."""
    h, w = shape
    out = []
    if isinstance(regions, dict):
        items = list(regions.items())
    elif isinstance(regions, np.ndarray) and regions.ndim == 2 and np.issubdtype(regions.dtype, np.integer):
        if regions.shape != shape:
            raise SoundstageError(f"label image is {regions.shape[1]} x {regions.shape[0]} but the depth map is "
                                  f"{w} x {h}; give them the same size")
        labels = [int(v) for v in np.unique(regions) if v != 0]
        names = names or {}
        return [(str(names.get(v, f"label_{v}")) if isinstance(names, dict) else str(names[i]), regions == v)
                for i, v in enumerate(labels)]
    else:
        items = [((names[i] if names else f"region_{i}"), r) for i, r in enumerate(regions)]
    for name, r in items:
        arr = np.asarray(r)
        if arr.dtype == bool and arr.ndim == 2:
            if arr.shape != shape:
                raise SoundstageError(f"region '{name}': mask is {arr.shape[1]} x {arr.shape[0]} but the depth map "
                                      f"is {w} x {h}")
            out.append((str(name), arr))
        elif arr.shape == (4,) and np.issubdtype(arr.dtype, np.number):
            x0, y0, x1, y1 = (float(v) for v in arr)
            if not (x1 > x0 and y1 > y0):
                raise SoundstageError(f"region '{name}': box {arr.tolist()} must be (x0, y0, x1, y1) with x1 > x0, y1 > y0")
            m = np.zeros(shape, dtype=bool)
            # Pixels whose centre lies inside the box (pixel coordinates, y down).
            m[max(int(math.ceil(y0 - 0.5)), 0): max(int(math.ceil(y1 - 0.5)), 0),
              max(int(math.ceil(x0 - 0.5)), 0): max(int(math.ceil(x1 - 0.5)), 0)] = True
            out.append((str(name), m))
        else:
            raise SoundstageError(f"region '{name}': expected a box (x0, y0, x1, y1) in pixels or a boolean mask "
                                  f"of the image's size, got shape {arr.shape}")
    return out


def sources_from_image(camera: Camera, frame: int, depth_map, regions, *, kind: str = "z",
                       names=None, mapping: str = "pinhole", min_pixels: int = 1) -> list[dict]:
    """One source per region, at the robust 3-D centre of its pixels.

    Parameters
    ----------
    camera : Camera
        Its resolution must match ``depth_map`` (W, H).
    frame : int
        Frame of ``camera`` the still was taken at.
    depth_map : ndarray, shape (H, W)
        Metres, of the given ``kind``; non-finite or <= 0 = no depth.
    regions : list of boxes (x0, y0, x1, y1) / boolean masks (H, W), an integer label image (H, W) with 0 =
        background, or a dict name -> box or mask.
    kind : {"z", "range"}
    names : list of str or dict label -> str, optional
        Names for list regions (by position) or label values.
    mapping : {"pinhole", "linear"}
        ``"pinhole"``: the exact ray through each pixel. ``"linear"``: angle proportional to
        the pixel's offset from the centre (SEE-2-SOUND's field-of-view mapping), then the
        depth along that direction; it agrees with the pinhole on the axis and drifts
        off it (about 4 degrees at the edge of a 70-degree lens).
    min_pixels : int
        Regions with fewer valid-depth pixels are skipped (reported with ``n_pixels`` 0
        and no position).

    Returns
    -------
    list of dict
        ``name``, ``position`` (3,) metres (None when skipped), ``pixel`` (2,) median
        pixel, ``depth`` median depth of ``kind``, ``n_pixels`` valid pixels used,
        ``azimuth_deg``/``elevation_deg`` in the camera's frame (0 ahead, + left / up).
    """
    dm = np.asarray(depth_map, dtype=float)
    if dm.ndim != 2:
        raise SoundstageError(f"depth map must be 2-D (H, W), got shape {dm.shape}")
    if (dm.shape[1], dm.shape[0]) != tuple(camera.resolution):
        raise SoundstageError(f"depth map is {dm.shape[1]} x {dm.shape[0]} but the camera renders "
                              f"{camera.resolution[0]} x {camera.resolution[1]}; use the same size")
    if mapping not in ("pinhole", "linear"):
        raise SoundstageError(f"mapping {mapping!r}: use 'pinhole' or 'linear'")
    idx = camera.frame_index(frame)[0]
    out = []
    for name, mask in _masks(regions, dm.shape, names):
        sel = mask & np.isfinite(dm) & (dm > 0)
        jj, ii = np.nonzero(sel)
        entry = {"name": name, "n_pixels": int(len(ii)), "position": None, "pixel": None, "depth": None}
        if len(ii) < max(min_pixels, 1):
            out.append(entry)
            continue
        uv = np.stack([ii + 0.5, jj + 0.5], axis=1)
        d = dm[jj, ii]
        if mapping == "pinhole":
            pts = camera.back_project(frame, uv, d, kind)
        else:
            pts = _linear_points(camera, idx, uv, d, kind)
        centre = np.median(pts, axis=0)
        local = camera.to_camera(frame, centre[None])[0]
        entry.update(position=centre, pixel=np.median(uv, axis=0), depth=float(np.median(d)),
                     azimuth_deg=float(np.degrees(np.arctan2(-local[0], -local[2]))),
                     elevation_deg=float(np.degrees(np.arctan2(local[1], np.hypot(local[0], local[2])))))
        out.append(entry)
    return out


def _linear_points(camera: Camera, idx: int, uv: np.ndarray, depth: np.ndarray, kind: str) -> np.ndarray:
    """SEE-2-SOUND-style mapping: azimuth and elevation linear in pixel offset over the field of view."""
    hfov, vfov = (math.radians(a) for a in camera.fov_deg())
    c = camera.principal_point()
    az = -(uv[:, 0] - c[0]) / camera.width * hfov  # + left
    el = -(uv[:, 1] - c[1]) / camera.height * vfov  # + up
    local = np.stack([-np.sin(az) * np.cos(el), np.sin(el), -np.cos(az) * np.cos(el)], axis=1)  # unit
    rng = depth if kind == "range" else depth / (np.cos(az) * np.cos(el))
    m = camera.matrix_world[idx]
    rot = camera._rot[idx]
    return (rot @ (local * rng[:, None]).T).T + m[:3, 3]
