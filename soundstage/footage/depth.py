"""Depth at the marker: per-frame depth maps, or plain depth values per frame.

A depth map is an (H, W) float array in metres (times ``scale``). Which distance it
holds is the caller's choice, given to ``lift_track`` as ``kind``: ``"z"`` (along the
camera's viewing axis, what Blender's Z pass and most monocular estimators give) or
``"range"`` (along the ray). Pixels that are not finite or not positive are "no depth".

Readers: ``.npy``, ``.npz`` (the array named ``depth``, else the only/first array) and
``.pfm``. The PFM reader is written by hand because no library in the environment
reads PFM and the format is a three-line text header plus raw float32 rows
(bottom row first); nothing else is worth a dependency. 16-bit PNG and EXR are not
read here (no reader in the engine's environment); convert them to .npy first (the
Blender side can read them with ``bpy.data.images``).
"""

from __future__ import annotations

import glob
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError

DEPTH_SUFFIXES = (".npy", ".npz", ".pfm")


def read_pfm(path) -> np.ndarray:
    """Read a Portable Float Map as an (H, W) float32 array, top row first.

    ``Pf`` files have one channel; for ``PF`` (three channels) the first is returned.
    A negative scale means little-endian samples; rows are stored bottom to top.

    Raises
    ------
    SoundstageError
        Not a PFM file, or truncated.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            header = []
            while len(header) < 4:  # tokens: magic, width, height, scale (lines may vary)
                line = fh.readline()
                if not line:
                    break
                header.extend(line.split())
            data = fh.read()
    except OSError as e:
        raise SoundstageError(f"{p}: cannot read depth map ({e.strerror or e})") from None
    try:
        magic = header[0].decode("ascii")
        w, h, scale = int(header[1]), int(header[2]), float(header[3])
    except (IndexError, ValueError, UnicodeDecodeError):
        raise SoundstageError(f"{p}: not a PFM depth map (expected 'Pf' or 'PF', size and scale)") from None
    if magic not in ("Pf", "PF") or w <= 0 or h <= 0 or scale == 0:
        raise SoundstageError(f"{p}: not a PFM depth map (header {magic!r} {w} {h} {scale})")
    channels = 3 if magic == "PF" else 1
    need = w * h * channels * 4
    if len(data) < need:
        raise SoundstageError(f"{p}: truncated PFM ({len(data)} of {need} data bytes)")
    arr = np.frombuffer(data[:need], dtype="<f4" if scale < 0 else ">f4").reshape(h, w, channels)
    return np.ascontiguousarray(arr[::-1, :, 0]).astype(np.float32)


def write_pfm(path, depth: np.ndarray) -> None:
    """Write an (H, W) array as a little-endian ``Pf`` file (for tests and tools)."""
    d = np.asarray(depth, dtype="<f4")
    with open(path, "wb") as fh:
        fh.write(f"Pf\n{d.shape[1]} {d.shape[0]}\n-1.0\n".encode("ascii"))
        fh.write(np.ascontiguousarray(d[::-1]).tobytes())


def read_depth_map(path) -> np.ndarray:
    """Read one depth map (.npy, .npz, .pfm) as an (H, W) float array.

    Raises
    ------
    SoundstageError
        Unknown suffix, unreadable file, or not a 2-D array.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in DEPTH_SUFFIXES:
        raise SoundstageError(f"{p}: depth maps must be {', '.join(DEPTH_SUFFIXES)}; convert it first")
    if not p.is_file():
        raise SoundstageError(f"depth map not found: {p}")
    if suffix == ".pfm":
        arr = read_pfm(p)
    else:
        try:
            loaded = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SoundstageError(f"{p}: cannot read depth map ({str(e).splitlines()[0]})") from None
        if suffix == ".npz":
            with loaded:
                keys = list(loaded.keys())
                if not keys:
                    raise SoundstageError(f"{p}: empty .npz; store the depth map as 'depth'")
                arr = loaded["depth" if "depth" in keys else keys[0]]
        else:
            arr = loaded
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
        raise SoundstageError(f"{p}: a depth map is a 2-D numeric array (H, W), got shape {arr.shape}")
    return arr.astype(np.float64)


def _frame_number(path: Path) -> int | None:
    nums = re.findall(r"\d+", path.stem)
    return int(nums[-1]) if nums else None


def patch_median(depth_map: np.ndarray, uv, patch: int = 5) -> float:
    """Median of the valid (finite, > 0) depths in a ``patch`` x ``patch`` square around ``uv``.

    Parameters
    ----------
    depth_map : ndarray, shape (H, W)
    uv : (float, float)
        Pixel coordinates in the map's own pixels (x right, y down, centres at +0.5).
    patch : int
        Side of the square, pixels (odd; an even size is rounded up).

    Returns
    -------
    float
        NaN when no pixel of the patch (clipped to the image) has a valid depth, or
        ``uv`` is outside the map.
    """
    h, w = depth_map.shape
    u, v = float(uv[0]), float(uv[1])
    if not (np.isfinite(u) and np.isfinite(v)) or not (0 <= u < w and 0 <= v < h):
        return float("nan")
    i, j = int(u), int(v)  # the pixel containing uv
    r = max(int(patch), 1) // 2
    block = depth_map[max(j - r, 0): j + r + 1, max(i - r, 0): i + r + 1]
    good = block[np.isfinite(block) & (block > 0)]
    # The median ignores the background pixels of a patch that straddles an object's
    # silhouette as long as most of the patch is on the object.
    return float(np.median(good)) if good.size else float("nan")


class DepthSequence:
    """Per-frame depth maps from files, loaded lazily (a few kept in memory).

    Parameters
    ----------
    files : dict of int -> path
        Depth map file per frame number.
    scale : float
        Multiplies the stored values (e.g. 0.001 for millimetres).
    """

    def __init__(self, files: dict, scale: float = 1.0, cache_size: int = 8):
        self.files = {int(k): Path(v) for k, v in sorted(files.items())}
        self.scale = float(scale)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_path(cls, path, scale: float = 1.0) -> "DepthSequence":
        """Depth maps from a folder (every .npy/.npz/.pfm in it) or a glob pattern.

        The frame number of a file is the last run of digits in its name
        (``depth_0042.npy`` is frame 42).

        Raises
        ------
        SoundstageError
            No depth maps found, a file without a frame number, or two files for one frame.
        """
        text = str(path)
        p = Path(text)
        if p.is_dir():
            candidates = sorted(q for q in p.iterdir() if q.suffix.lower() in DEPTH_SUFFIXES)
            shown = f"folder {p}"
        else:
            candidates = sorted(Path(q) for q in glob.glob(text) if Path(q).suffix.lower() in DEPTH_SUFFIXES)
            shown = f"pattern {text}"
        if not candidates:
            raise SoundstageError(f"no depth maps ({', '.join(DEPTH_SUFFIXES)}) found in {shown}")
        files = {}
        for q in candidates:
            f = _frame_number(q)
            if f is None:
                raise SoundstageError(f"{q}: no frame number in the file name (name maps like depth_0001.npy)")
            if f in files:
                raise SoundstageError(f"{q} and {files[f]} are both frame {f}; keep one depth map per frame")
            files[f] = q
        return cls(files, scale)

    @property
    def frames(self) -> np.ndarray:
        return np.array(sorted(self.files), dtype=int)

    def describe(self, frame: int) -> str:
        return f"depth map '{self.files[frame].name}'" if frame in self.files else f"no depth map for frame {frame}"

    def map(self, frame: int) -> np.ndarray | None:
        """The (H, W) depth map of ``frame`` in metres, or None when there is none."""
        frame = int(frame)
        if frame not in self.files:
            return None
        if frame not in self._cache:
            self._cache[frame] = read_depth_map(self.files[frame]) * self.scale
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(frame)
        return self._cache[frame]

    def sample(self, frame: int, uv, patch: int = 5, resolution=None):
        """Robust depth at pixel(s) ``uv`` of ``frame`` (see ``patch_median``).

        Parameters
        ----------
        uv : array_like, shape (2,) or (N, 2)
            Pixels in the camera image's coordinates.
        resolution : (W, H), optional
            The camera image size; when the depth map has another size with the same
            aspect, ``uv`` is scaled to it (estimators often work at a lower size).

        Returns
        -------
        float or ndarray, shape (N,)
            Metres; NaN where there is no valid depth or no map for the frame.
        """
        uv_arr = np.asarray(uv, dtype=float)
        pts = uv_arr.reshape(-1, 2)
        dm = self.map(frame)
        if dm is None:
            out = np.full(len(pts), np.nan)
        else:
            pts = _scale_uv(pts, dm.shape, resolution, self.files[int(frame)])
            out = np.array([patch_median(dm, q, patch) for q in pts])
        return float(out[0]) if uv_arr.ndim == 1 else out


def _scale_uv(pts: np.ndarray, shape, resolution, path) -> np.ndarray:
    if resolution is None:
        return pts
    h, w = shape
    W, H = resolution
    if (w, h) == (W, H):
        return pts
    if abs(w / h - W / H) > 0.01:
        raise SoundstageError(f"{path}: depth map is {w} x {h} but the camera image is {W} x {H} "
                              "(another aspect ratio); render or resize the depth to the clip's aspect")
    return pts * np.array([w / W, h / H])


class DepthValues:
    """One depth per frame (ray casts done in Blender, or the solve's points), metres.

    Parameters
    ----------
    frames : array_like of int, shape (N,)
    values : array_like, shape (N,)
        NaN for "no hit"; values <= 0 mean the hit is behind the camera.
    """

    def __init__(self, frames, values):
        f = np.atleast_1d(np.asarray(frames)).astype(int)
        v = np.atleast_1d(np.asarray(values, dtype=float))
        if f.shape != v.shape:
            raise SoundstageError(f"depth values: {len(v)} values for {len(f)} frames")
        self._values = dict(zip(f.tolist(), v.tolist()))

    @classmethod
    def from_file(cls, path) -> "DepthValues":
        """Read ``frame,depth`` CSV (header required) or a JSON object ``{"frames": [...], "depth": [...]}``."""
        import csv
        import json

        p = Path(path)
        if not p.is_file():
            raise SoundstageError(f"depth values file not found: {p}")
        text = p.read_text(encoding="utf-8-sig")
        if p.suffix.lower() == ".json":
            try:
                doc = json.loads(text)
                return cls(doc["frames"], doc["depth"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise SoundstageError(f"{p}: expected JSON {{\"frames\": [...], \"depth\": [...]}}") from None
        rows = list(csv.DictReader(text.splitlines()))
        if not rows or not {"frame", "depth"} <= {k.strip().lower() for k in rows[0] if k}:
            raise SoundstageError(f"{p}: expected CSV with a header naming the columns frame,depth")
        frames, values = [], []
        for line, row in enumerate(rows, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                frames.append(int(float(row["frame"])))
                values.append(float(row["depth"]) if row["depth"] not in ("", "nan") else np.nan)
            except ValueError:
                raise SoundstageError(f"{p}: row {line}: frame {row['frame']!r} / depth {row['depth']!r} "
                                      "are not numbers") from None
        return cls(frames, values)

    @property
    def frames(self) -> np.ndarray:
        return np.array(sorted(self._values), dtype=int)

    def describe(self, frame: int) -> str:
        return "depth value" if int(frame) in self._values else f"no depth value for frame {frame}"

    def value(self, frame: int) -> float:
        return float(self._values.get(int(frame), np.nan))

    def sample(self, frame: int, uv=None, patch: int = 5, resolution=None):
        """The frame's value (NaN when none); ``uv`` and ``patch`` are ignored."""
        v = self.value(frame)
        return float(v) if (np.isfinite(v) and v > 0) else float("nan")
