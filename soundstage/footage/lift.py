"""Back-projection of a 2-D track to 3-D with depth at the marker."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from soundstage.errors import SoundstageError
from soundstage.footage.camera import Camera
from soundstage.footage.depth import DepthSequence, DepthValues
from soundstage.footage.track import Track

#: Reasons a frame of a track gives no 3-D position.
OUTSIDE = "outside frame"
NO_DEPTH = "no depth at marker"
BEHIND = "behind camera"
GAP = "gap in track"
NO_POSE = "no camera pose"


@dataclass
class LiftResult:
    """Raw 3-D positions of a track, one row per track row.

    Attributes
    ----------
    frames : ndarray of int, shape (N,)
    positions : ndarray, shape (N, 3)
        World positions, metres; NaN rows where ``valid`` is False.
    valid : ndarray of bool, shape (N,)
    depths : ndarray, shape (N,)
        Depth used per row (of the given ``kind``), metres; NaN where none.
    uv : ndarray, shape (N, 2)
        The marker pixels.
    reasons : dict of int -> str
        Frame number -> why it has no position (``OUTSIDE``, ``NO_DEPTH``, ``BEHIND``,
        ``GAP``, ``NO_POSE``).
    messages : list of str
        One line per invalid frame saying where (frame, pixel, depth source).
    """

    frames: np.ndarray
    positions: np.ndarray
    valid: np.ndarray
    depths: np.ndarray
    uv: np.ndarray
    reasons: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)

    def frames_with(self, reason: str) -> list[int]:
        """Frame numbers dropped for ``reason``."""
        return [f for f, r in self.reasons.items() if r == reason]

    def summary(self) -> dict:
        """Counts of valid frames and of each reason, plus the frames per reason."""
        counts = Counter(self.reasons.values())
        return {"frames": int(len(self.frames)), "valid": int(self.valid.sum()),
                "dropped": {r: {"count": n, "frames": self.frames_with(r)} for r, n in counts.items()}}


def as_depth_source(depth, track: Track):
    """A ``DepthSequence``/``DepthValues`` from what the caller gave.

    ``None`` takes the track's own ``depth`` column; an array gives one value per track row.
    """
    if isinstance(depth, (DepthSequence, DepthValues)) or hasattr(depth, "sample"):
        return depth  # anything with sample(frame, uv, patch, resolution) and describe(frame)
    if depth is None:
        if track.depth is None:
            raise SoundstageError(f"track '{track.name}' has no depth column; give depth maps or depth values")
        return DepthValues(track.frames, track.depth)
    arr = np.asarray(depth, dtype=float)
    if arr.shape != (len(track),):
        raise SoundstageError(f"depth values: {arr.size} values for the {len(track)} rows of track '{track.name}'")
    return DepthValues(track.frames, arr)


def lift_track(camera: Camera, track: Track, depth=None, *, patch: int = 5, kind: str = "z",
               depth_offset: float = 0.0) -> LiftResult:
    """Back-project each tracked pixel to 3-D with the depth at the marker.

    Parameters
    ----------
    camera : Camera
    track : Track
    depth : DepthSequence, DepthValues, array_like (N,), or None
        (or any object with ``sample(frame, uv, patch, resolution)`` and ``describe(frame)``)
        Depth maps (sampled with a ``patch`` x ``patch`` median of valid pixels), one
        value per track row, or None for the track's own ``depth`` column.
    patch : int
        Patch side in pixels for depth maps.
    kind : {"z", "range"}
        ``"z"``: depth is the distance along the camera's viewing axis (-Z);
        ``"range"``: along the ray through the pixel.
    depth_offset : float
        Metres added along the ray after back-projection: the marker sits on the
        object's visible surface, and its acoustic centre is about this much further
        (e.g. the object's radius). Default 0.

    Returns
    -------
    LiftResult

    Raises
    ------
    SoundstageError
        When no frame at all gives a position (the first frame's problem, saying where).
    """
    if kind not in ("z", "range"):
        raise SoundstageError(f"depth kind {kind!r}: use 'z' (along the camera axis) or 'range' (along the ray)")
    src = as_depth_source(depth, track)
    n = len(track)
    positions = np.full((n, 3), np.nan)
    depths = np.full(n, np.nan)
    valid = np.zeros(n, dtype=bool)
    reasons, messages = {}, []
    inside = camera.inside(track.uv)
    for k, (f, uv) in enumerate(zip(track.frames.tolist(), track.uv)):
        where = f"frame {f}: marker '{track.name}'"
        if not np.isfinite(uv).all():
            reasons[f] = GAP
            messages.append(f"{where} has no position (gap)")
            continue
        pix = f"({uv[0]:.1f}, {uv[1]:.1f})"
        if not camera.has_frame(f):
            reasons[f] = NO_POSE
            messages.append(f"{where}: the camera solve has no pose at this frame")
            continue
        if not inside[k]:
            reasons[f] = OUTSIDE
            messages.append(f"{where} at pixel {pix} is outside the {camera.width} x {camera.height} frame")
            continue
        if isinstance(src, DepthValues):
            d = src.value(f)
            if np.isfinite(d) and d <= 0:
                reasons[f] = BEHIND
                messages.append(f"{where} at pixel {pix}: depth {d:g} m puts it behind the camera")
                continue
        else:
            d = src.sample(f, uv, patch, resolution=camera.resolution)
        if not np.isfinite(d):
            reasons[f] = NO_DEPTH
            messages.append(f"{where}: no depth at marker pixel {pix} ({src.describe(f)}, {patch}x{patch} patch)")
            continue
        p = camera.back_project(f, uv[None], [d], kind)[0]
        if depth_offset:
            o, _ = camera.rays(f, uv[None])
            p = p + depth_offset * (p - o[0]) / np.linalg.norm(p - o[0])
        positions[k], depths[k], valid[k] = p, d, True
    if not valid.any():
        first = messages[0] if messages else "the track is empty"
        raise SoundstageError(f"track '{track.name}': no frame gives a 3-D position; first: {first}")
    return LiftResult(track.frames.copy(), positions, valid, depths, track.uv.copy(), reasons, messages)
