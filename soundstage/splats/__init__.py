"""Gaussian Splatting scenes for the engine (no bpy).

Readers for the Inria PLY layout and the 32-byte ``.splat`` layout, an
acoustic room proxy fitted to the splats, ray casting against the gaussians
(impact clicks, source placement) and camera paths from COLMAP and nerfstudio.
See ``docs/splats.md``.
"""

from __future__ import annotations

from pathlib import Path

from soundstage.splats.cameras import (  # noqa: F401
    CameraPath,
    CameraPathError,
    read_camera_path,
    read_colmap,
    read_transforms_json,
)
from soundstage.splats.model import SH_C0, Splats, SplatError  # noqa: F401
from soundstage.splats.ply import SplatWarning, read_ply, read_ply_header, write_ply  # noqa: F401
from soundstage.splats.proxy import RoomProxy, estimate_room, guess_material, room_from_corners  # noqa: F401
from soundstage.splats.raycast import RayHits, SplatRaycaster, cast_rays_reference  # noqa: F401
from soundstage.splats.splat_format import read_splat, write_splat  # noqa: F401
from soundstage.splats.synthetic import SyntheticRoom, make_synthetic_room  # noqa: F401

__all__ = [
    "Splats", "SplatError", "SplatWarning", "SH_C0",
    "read_splats", "read_ply", "read_ply_header", "write_ply", "read_splat", "write_splat",
    "estimate_room", "RoomProxy", "room_from_corners", "guess_material",
    "SplatRaycaster", "RayHits", "cast_rays_reference",
    "read_camera_path", "read_colmap", "read_transforms_json", "CameraPath", "CameraPathError",
    "make_synthetic_room", "SyntheticRoom",
]


def read_splats(path, **kwargs) -> Splats:
    """Read a splat scene, choosing the reader by content.

    A file starting with ``ply`` is read by ``read_ply``; otherwise a
    ``.splat`` extension selects ``read_splat``.

    Parameters
    ----------
    path : str or Path
    **kwargs
        Passed to the reader (``nonfinite``, ``max_sh_degree`` for PLY, ``chunk``).

    Raises
    ------
    SplatError
        Missing file, unknown format, or any reader error.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(3)
    except OSError as exc:
        raise SplatError(f"{p}: cannot open: {exc.strerror}") from None
    if magic == b"ply":
        return read_ply(p, **kwargs)
    if p.suffix.lower() == ".splat":
        kwargs.pop("max_sh_degree", None)
        kwargs.pop("keep_extra", None)
        return read_splat(p, **kwargs)
    raise SplatError(f"{p}: unknown splat format (expected a .ply file starting with 'ply' or a .splat file)")
