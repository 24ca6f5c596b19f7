"""Camera paths from COLMAP and nerfstudio captures, as Blender camera matrices.

Every reader returns per-frame 4x4 camera-to-world matrices in **Blender's
camera convention**: the camera looks along its local -Z axis, its up is local
+Y and its right local +X (the listener convention of the job format).

Conversions
-----------
COLMAP (``images.txt`` / ``images.bin``) stores, per image, a Hamilton
quaternion ``(qw, qx, qy, qz)`` and a translation ``t`` of the *world-to-camera*
transform ``x_cam = R x_world + t``, in a camera frame with +X right, +Y down
and +Z forward (OpenCV). Hence::

    c2w_opencv = [[R^T, -R^T t], [0, 0, 0, 1]]     (camera centre = -R^T t)
    c2w_blender = c2w_opencv @ diag(1, -1, -1, 1)  (flip the Y and Z axes)

nerfstudio / instant-ngp / NeRF ``transforms.json`` store ``transform_matrix``
already as camera-to-world in the OpenGL camera convention (+X right, +Y up,
-Z forward), which *is* Blender's, so the matrix is used as is. Their world
frame, however, may differ from the COLMAP one the splats were trained in:
``ns-process-data`` writes ``applied_transform`` (a 3x4 matrix, by default a
swap of y and z with a sign change, so that COLMAP's usual -Y up becomes +Z
up), and ``undo_applied_transform=True`` maps the cameras back into COLMAP's
world (the frame of an Inria-trained PLY). Any other alignment is the 4x4
``world_transform`` argument, applied last: ``M' = world_transform @ M``.

The world frames themselves are left alone: a COLMAP capture has an
arbitrary up (often -Y); align it once in Blender (or with ``world_transform``)
together with the splats.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError

#: COLMAP camera model id -> (name, number of parameters), from COLMAP's models.h.
COLMAP_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16), 12: ("SIMPLE_DIVISION", 4), 13: ("DIVISION", 5),
    14: ("SIMPLE_FISHEYE", 3), 15: ("FISHEYE", 4), 16: ("EUCM", 6), 17: ("EQUIRECTANGULAR", 2),
}
_MODEL_IDS = {name: (mid, n) for mid, (name, n) in COLMAP_MODELS.items()}
#: Models whose first parameter is a single focal length (f, cx, cy, ...).
_SINGLE_FOCAL = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE",
                 "SIMPLE_DIVISION", "SIMPLE_FISHEYE"}

#: Right-multiplying by this turns an OpenCV camera (+Y down, +Z forward) into
#: a Blender/OpenGL one (+Y up, -Z forward) and back.
FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


class CameraPathError(SoundstageError):
    """A camera file is missing, malformed or holds an unusable pose."""


@dataclass
class CameraPath:
    """Camera poses of a capture, one per image.

    Attributes
    ----------
    matrices : ndarray, shape (F, 4, 4)
        Camera-to-world, Blender camera convention (looks along local -Z, up +Y).
    names : list of str
        Image names (file paths as written in the source).
    times : ndarray, shape (F,), or None
        Seconds, when the file names are times (as in RWAVS) or given.
    width, height, fx, fy, cx, cy : ndarray, shape (F,), or None
        Intrinsics in pixels, when known.
    source : str
    """

    matrices: np.ndarray
    names: list
    times: np.ndarray | None = None
    width: np.ndarray | None = None
    height: np.ndarray | None = None
    fx: np.ndarray | None = None
    fy: np.ndarray | None = None
    cx: np.ndarray | None = None
    cy: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.matrices)

    @property
    def positions(self) -> np.ndarray:
        """Camera centres, shape (F, 3)."""
        return self.matrices[:, :3, 3]

    @property
    def forward(self) -> np.ndarray:
        """Viewing directions (local -Z in world), shape (F, 3)."""
        return -self.matrices[:, :3, 2]

    def lens_mm(self, sensor_width_mm: float = 36.0) -> np.ndarray | None:
        """Blender focal lengths for a sensor of this width (fit: horizontal), shape (F,)."""
        if self.fx is None or self.width is None:
            return None
        return self.fx / self.width * sensor_width_mm

    def frame_numbers(self, fps: float, frame_start: int = 1) -> np.ndarray:
        """Timeline frame of each pose: from ``times`` if known, else consecutive frames.

        Returns
        -------
        ndarray of int, shape (F,)
        """
        if self.times is not None:
            return frame_start + np.round((self.times - self.times.min()) * fps).astype(int)
        return frame_start + np.arange(len(self))

    def transformed(self, world_transform) -> "CameraPath":
        """The same path with ``world_transform`` (4x4) applied on the left.

        Raises
        ------
        CameraPathError
            The transform is not a finite similarity (rotation, uniform scale, translation).
        """
        w = _as_matrix(world_transform, "world_transform", self.source)
        lin = w[:3, :3]
        scale = np.cbrt(np.linalg.det(lin))
        if not scale > 0 or not np.allclose(lin.T @ lin, scale ** 2 * np.eye(3), atol=1e-6 * max(1, scale ** 2)):
            raise CameraPathError(f"{self.source}: world_transform must be a rotation, a uniform scale and a "
                                  "translation (no shear, no mirroring)")
        m = w @ self.matrices
        m[:, :3, :3] /= scale  # keep camera axes unit length; positions take the scale
        out = CameraPath(**{**self.__dict__, "matrices": m})
        return out

    def as_job_matrices(self) -> list:
        """Row-major 16-number lists, one per pose (the job's ``matrix_world``)."""
        return [m.reshape(-1).tolist() for m in self.matrices]


def qvec_to_matrix(qvec) -> np.ndarray:
    """Rotation matrix of a Hamilton quaternion ``(w, x, y, z)`` (normalised first), shape (3, 3)."""
    w, x, y, z = np.asarray(qvec, float) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def colmap_to_blender(qvec, tvec) -> np.ndarray:
    """Blender camera-to-world matrix from a COLMAP world-to-camera pose.

    Parameters
    ----------
    qvec : (4,) floats
        ``(qw, qx, qy, qz)`` of ``R`` in ``x_cam = R x_world + t``.
    tvec : (3,) floats
        ``t``.

    Returns
    -------
    ndarray, shape (4, 4)
    """
    r = qvec_to_matrix(qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = r.T
    c2w[:3, 3] = -r.T @ np.asarray(tvec, float)
    return c2w @ FLIP_YZ


def blender_to_colmap(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``colmap_to_blender``: ``(qvec, tvec)`` from a Blender camera matrix."""
    c2w = np.asarray(matrix, float) @ FLIP_YZ
    r = c2w[:3, :3].T
    t = -r @ c2w[:3, 3]
    # Rotation matrix to quaternion (Shepperd's method, robust for all angles).
    tr = np.trace(r)
    if tr > 0:
        s = 2 * np.sqrt(1 + tr)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + r[i, i] - r[j, j] - r[k, k])
        q = np.empty(4)
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q, float)
    return q * np.sign(q[0] or 1.0), t


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _as_matrix(value, what: str, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, float)
    except (TypeError, ValueError):
        raise CameraPathError(f"{where}: {what} is not a matrix of numbers") from None
    if m.shape == (16,):
        m = m.reshape(4, 4)
    elif m.shape == (12,):
        m = m.reshape(3, 4)
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    if m.shape != (4, 4):
        raise CameraPathError(f"{where}: {what} has shape {m.shape}, expected 4x4, 3x4 or 16 numbers")
    if not np.all(np.isfinite(m)):
        raise CameraPathError(f"{where}: {what} holds NaN or infinite numbers")
    return m


def _check_rigid(m: np.ndarray, what: str, where: str) -> None:
    r = m[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-3) or np.linalg.det(r) < 0:
        raise CameraPathError(f"{where}: {what} is not a rotation plus translation (scaled, sheared or "
                              "mirrored axes)")


# ---------------------------------------------------------------------------
# COLMAP
# ---------------------------------------------------------------------------

def _find_colmap_file(path: Path, stem: str) -> Path | None:
    if path.is_file():
        path = path.parent
    for folder in (path, path / "sparse" / "0", path / "sparse", path / "colmap" / "sparse" / "0"):
        for ext in (".bin", ".txt"):  # COLMAP prefers binary when both exist
            f = folder / f"{stem}{ext}"
            if f.is_file():
                return f
    return None


def read_colmap_cameras(path) -> dict:
    """Intrinsics from ``cameras.txt`` or ``cameras.bin``.

    Returns
    -------
    dict of int to dict
        ``{camera_id: {"model", "width", "height", "params"}}``.
    """
    path = Path(path)
    cams = {}
    if path.suffix == ".bin":
        data = path.read_bytes()
        try:
            (n,) = struct.unpack_from("<Q", data, 0)
            off = 8
            for _ in range(n):
                cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
                off += 24
                if mid not in COLMAP_MODELS:
                    raise CameraPathError(f"{path}: unknown camera model id {mid} for camera {cid}")
                name, k = COLMAP_MODELS[mid]
                params = struct.unpack_from(f"<{k}d", data, off)
                off += 8 * k
                cams[cid] = {"model": name, "width": int(w), "height": int(h), "params": list(params)}
        except struct.error:
            raise CameraPathError(f"{path}: the file ends early; it is truncated or not a COLMAP cameras.bin") \
                from None
        return cams
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        w = line.split()
        try:
            cid, model, width, height = int(w[0]), w[1], int(w[2]), int(w[3])
            params = [float(x) for x in w[4:]]
        except (ValueError, IndexError):
            raise CameraPathError(f"{path}: line {line_no} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'") \
                from None
        if model in _MODEL_IDS and len(params) != _MODEL_IDS[model][1]:
            raise CameraPathError(f"{path}: line {line_no}: model {model} takes {_MODEL_IDS[model][1]} "
                                  f"parameters, found {len(params)}")
        cams[cid] = {"model": model, "width": width, "height": height, "params": params}
    return cams


def read_colmap_images(path) -> list:
    """Poses from ``images.txt`` or ``images.bin``.

    Returns
    -------
    list of dict
        ``{"image_id", "qvec", "tvec", "camera_id", "name"}`` in file order.
    """
    path = Path(path)
    images = []
    if path.suffix == ".bin":
        data = path.read_bytes()
        try:
            (n,) = struct.unpack_from("<Q", data, 0)
            off = 8
            for _ in range(n):
                vals = struct.unpack_from("<i7di", data, off)
                off += 64
                end = data.index(b"\x00", off)
                name = data[off:end].decode("utf-8", errors="replace")
                off = end + 1
                (n2d,) = struct.unpack_from("<Q", data, off)
                off += 8 + 24 * n2d
                if off > len(data):
                    raise struct.error
                images.append({"image_id": vals[0], "qvec": np.array(vals[1:5]), "tvec": np.array(vals[5:8]),
                               "camera_id": vals[8], "name": name})
        except (struct.error, ValueError):
            raise CameraPathError(f"{path}: the file ends early; it is truncated or not a COLMAP images.bin") \
                from None
        return images
    lines = path.read_text(errors="replace").splitlines()
    data_lines = [(i + 1, ln) for i, ln in enumerate(lines) if not ln.lstrip().startswith("#")]
    # Two lines per image: the pose line, then the (possibly empty) 2-D points line.
    k = 0
    while k < len(data_lines):
        line_no, line = data_lines[k]
        if not line.strip():
            k += 1
            continue
        w = line.split()
        try:
            image_id = int(w[0])
            q = np.array([float(x) for x in w[1:5]])
            t = np.array([float(x) for x in w[5:8]])
            cam = int(w[8])
            name = " ".join(w[9:])
        except (ValueError, IndexError):
            raise CameraPathError(f"{path}: line {line_no} is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'") \
                from None
        if not name:
            raise CameraPathError(f"{path}: line {line_no} has no image name")
        images.append({"image_id": image_id, "qvec": q, "tvec": t, "camera_id": cam, "name": name})
        k += 2
    return images


def read_colmap(path, *, world_transform=None) -> CameraPath:
    """A camera path from a COLMAP sparse model (text or binary).

    Parameters
    ----------
    path : str or Path
        A model folder (``.../sparse/0``, or a capture folder holding
        ``sparse/0``), or its ``images.txt`` / ``images.bin``.
    world_transform : (4, 4) array_like, optional
        Applied on the left of every pose.

    Returns
    -------
    CameraPath
        Poses sorted by image name in natural order (``frame_2`` before
        ``frame_10``), which is the capture order for frames taken from a video.

    Raises
    ------
    CameraPathError
        No images file, a malformed line, a non-unit or non-finite quaternion.
    """
    p = Path(path)
    if not p.exists():
        raise CameraPathError(f"{p}: no such file or folder")
    img_file = p if p.is_file() else _find_colmap_file(p, "images")
    if img_file is None:
        raise CameraPathError(f"{p}: no images.bin or images.txt here or in sparse/0")
    images = read_colmap_images(img_file)
    if not images:
        raise CameraPathError(f"{img_file}: holds no images")
    cam_file = _find_colmap_file(img_file.parent, "cameras")
    cams = read_colmap_cameras(cam_file) if cam_file is not None else {}
    images.sort(key=lambda im: _natural_key(im["name"]))
    mats = []
    for im in images:
        q, t = im["qvec"], im["tvec"]
        norm = np.linalg.norm(q)
        if not np.all(np.isfinite(q)) or not np.all(np.isfinite(t)) or abs(norm - 1) > 1e-3:
            raise CameraPathError(f"{img_file}: image {im['name']!r} has a non-finite or non-unit quaternion "
                                  f"(|q| = {norm:.4g})")
        mats.append(colmap_to_blender(q, t))
    out = CameraPath(np.array(mats), [im["name"] for im in images], source=str(img_file))
    if cams and all(im["camera_id"] in cams for im in images):
        intr = [cams[im["camera_id"]] for im in images]
        out.width = np.array([c["width"] for c in intr], float)
        out.height = np.array([c["height"] for c in intr], float)
        fx, fy, cx, cy = [], [], [], []
        for c in intr:
            pr = c["params"]
            if c["model"] in _SINGLE_FOCAL:
                fx.append(pr[0]); fy.append(pr[0]); cx.append(pr[1]); cy.append(pr[2])  # noqa: E702
            elif len(pr) >= 4 and c["model"] != "EQUIRECTANGULAR":
                fx.append(pr[0]); fy.append(pr[1]); cx.append(pr[2]); cy.append(pr[3])  # noqa: E702
            else:
                fx.append(np.nan); fy.append(np.nan); cx.append(np.nan); cy.append(np.nan)  # noqa: E702
        out.fx, out.fy, out.cx, out.cy = (np.array(v) for v in (fx, fy, cx, cy))
    if world_transform is not None:
        out = out.transformed(world_transform)
    return out


# ---------------------------------------------------------------------------
# nerfstudio / instant-ngp transforms.json and nerfstudio camera paths
# ---------------------------------------------------------------------------

def _stem_time(name: str):
    try:
        return float(Path(str(name)).stem)
    except ValueError:
        return None


def read_transforms_json(path, *, undo_applied_transform: bool = False, world_transform=None,
                         sort: bool = True) -> CameraPath:
    """A camera path from a nerfstudio / instant-ngp ``transforms.json`` or a nerfstudio camera path.

    Accepted layouts: ``{"frames": [{"file_path", "transform_matrix"}, ...]}``
    with intrinsics at the top level or per frame (``fl_x, fl_y, cx, cy, w, h``
    or NeRF's ``camera_angle_x``), and ``{"camera_path": [{"camera_to_world":
    16 numbers row-major or 4x4, "fov", "aspect"}, ...]}`` (nerfstudio camera
    paths; RWAVS' ``transforms_scale_*.json`` too).

    Parameters
    ----------
    path : str or Path
    undo_applied_transform : bool
        Map the poses back into the COLMAP world with the inverse of the
        file's ``applied_transform`` (see the module notes).
    world_transform : (4, 4) array_like, optional
        Applied last, on the left.
    sort : bool
        Order poses by time when every file name is a number of seconds
        (RWAVS), else ``frames`` by file name in natural order; other
        ``camera_path`` entries keep their order.

    Raises
    ------
    CameraPathError
        Unreadable JSON, no frames, a malformed or non-rigid matrix.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise CameraPathError(f"{p}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CameraPathError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CameraPathError(f"{p}: expected a JSON object with 'frames' or 'camera_path'")
    entries = doc.get("frames")
    key = "transform_matrix"
    if entries is None and "camera_path" in doc:
        entries, key = doc["camera_path"], "camera_to_world"
    if not isinstance(entries, list) or not entries:
        raise CameraPathError(f"{p}: no 'frames' (or 'camera_path') list with poses")
    names, mats, times = [], [], []
    intr = {k: [] for k in ("w", "h", "fl_x", "fl_y", "cx", "cy")}
    for i, fr in enumerate(entries):
        if not isinstance(fr, dict) or (key not in fr and "transform_matrix" not in fr):
            raise CameraPathError(f"{p}: entry {i} has no '{key}'")
        m = _as_matrix(fr.get(key, fr.get("transform_matrix")), f"entry {i} {key}", str(p))
        _check_rigid(m, f"entry {i} {key}", str(p))
        mats.append(m)
        name = str(fr.get("file_path", f"{i}"))
        names.append(name)
        times.append(_stem_time(name) if "file_path" in fr else None)
        for k in intr:
            # nerfstudio camera paths put the render size at the top level.
            fallback = {"w": "render_width", "h": "render_height"}.get(k, k)
            intr[k].append(fr.get(k, doc.get(k, doc.get(fallback))))
        if intr["fl_x"][-1] is None:
            w = intr["w"][-1]
            if "camera_angle_x" in doc and w is not None:
                intr["fl_x"][-1] = 0.5 * w / np.tan(0.5 * doc["camera_angle_x"])
            elif "fov" in fr and intr["h"][-1] is not None:
                intr["fl_x"][-1] = 0.5 * intr["h"][-1] / np.tan(0.5 * np.radians(fr["fov"]))
    mats = np.array(mats)
    if undo_applied_transform:
        if "applied_transform" not in doc:
            raise CameraPathError(f"{p}: undo_applied_transform was asked for but the file has no "
                                  "'applied_transform'")
        a = _as_matrix(doc["applied_transform"], "applied_transform", str(p))
        mats = np.linalg.inv(a) @ mats
    have_times = all(t is not None for t in times)
    order = np.arange(len(mats))
    if sort and have_times:
        order = np.argsort(np.array(times), kind="stable")
    elif sort and key == "transform_matrix":
        order = np.array(sorted(range(len(names)), key=lambda j: _natural_key(names[j])))
    out = CameraPath(mats[order], [names[j] for j in order],
                     times=np.array(times, float)[order] if have_times else None, source=str(p))

    def column(k):
        vals = intr[k]
        if any(v is None for v in vals):
            return None
        return np.array(vals, float)[order]

    out.width, out.height = column("w"), column("h")
    out.fx, out.fy, out.cx, out.cy = column("fl_x"), column("fl_y"), column("cx"), column("cy")
    if out.fy is None and out.fx is not None:
        out.fy = out.fx
    if world_transform is not None:
        out = out.transformed(world_transform)
    return out


def read_camera_path(path, **kwargs) -> CameraPath:
    """Read a COLMAP model (folder, ``images.txt`` / ``.bin``) or a ``*.json`` camera file."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return read_transforms_json(p, **kwargs)
    return read_colmap(p, **kwargs)
