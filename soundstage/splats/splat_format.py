"""The 32-byte ``.splat`` layout (antimatter15's web viewer and its converters).

No header: the file is a sequence of 32-byte records, little-endian::

    offset  size  content
    0       12    position x, y, z      3 x float32
    12      12    scale sx, sy, sz      3 x float32, linear (not logs)
    24      4     colour R, G, B, A     4 x uint8; A is the opacity * 255
    28      4     rotation w, x, y, z   4 x uint8, each round(q * 128 + 128) clipped

(as written by antimatter15/splat ``convert.py``, which normalises the
quaternion first and stores ``0.5 + C0 * f_dc`` as the colour). There is no
SH beyond the base colour.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from soundstage.splats.model import Splats, SplatError, normalise_quaternions
from soundstage.splats.ply import DEFAULT_CHUNK, _check_plausible_positions

RECORD = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
assert RECORD.itemsize == 32


def read_splat(path, *, nonfinite: str = "error", chunk: int = DEFAULT_CHUNK) -> Splats:
    """Read a ``.splat`` file.

    Parameters
    ----------
    path : str or Path
    nonfinite : {"error", "drop"}
        As in ``read_ply``.
    chunk : int
        Records decoded per step (bounded temporary memory).

    Returns
    -------
    Splats
        ``sh_degree`` 0, ``sh_rest`` and ``sh_dc`` None.

    Raises
    ------
    SplatError
        Empty file, a size that is not a multiple of 32 bytes (truncated), a
        PLY file given a ``.splat`` name, absurd or NaN values.
    """
    import warnings

    from soundstage.splats.ply import SplatWarning

    path = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise SplatError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(4)
        if head[:3] == b"ply":
            raise SplatError(f"{path}: this is a PLY file, not a .splat file; rename it to .ply")
        n, part = divmod(size, RECORD.itemsize)
        if n == 0:
            raise SplatError(f"{path}: the file is empty (a .splat file holds 32 bytes per gaussian)")
        if part:
            raise SplatError(f"{path}: {size} bytes is not a multiple of 32 ({n} whole gaussians and "
                             f"{part} stray bytes); the file is truncated or not a .splat file")
        fh.seek(0)
        pos = np.empty((n, 3), np.float32)
        scales = np.empty((n, 3), np.float32)
        rot = np.empty((n, 4), np.float32)
        colors = np.empty((n, 3), np.float32)
        opac = np.empty(n, np.float32)
        bad = np.empty(n, bool)
        n_zero = 0
        # Everything is converted chunk by chunk into the outputs, so the
        # temporary memory stays at one chunk.
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            rec = np.frombuffer(fh.read(m * RECORD.itemsize), RECORD, count=m)
            s = slice(start, start + m)
            pos[s] = rec["pos"]
            scales[s] = rec["scale"]
            colors[s] = rec["rgba"][:, :3]
            colors[s] /= 255.0
            opac[s] = rec["rgba"][:, 3]
            opac[s] /= 255.0
            rot[s], zeros = normalise_quaternions((rec["rot"].astype(np.float32) - 128.0) / 128.0)
            n_zero += zeros
            if start == 0:
                _check_plausible_positions(path, pos[: min(n, 4096)], "float32 little-endian")
            with np.errstate(invalid="ignore"):
                bad[s] = ~(np.isfinite(pos[s]).all(axis=1) & np.isfinite(scales[s]).all(axis=1)) \
                    | (scales[s] < 0).any(axis=1)
    n_bad = int(np.count_nonzero(bad))
    splats = Splats(pos, scales, rot, opac, colors, source=path)
    if n_zero:
        warnings.warn(f"{path}: {n_zero} gaussians have a zero rotation; given the identity", SplatWarning,
                      stacklevel=2)
    if n_bad:
        if nonfinite != "drop":
            raise SplatError(f"{path}: {n_bad} of {n} gaussians have NaN, infinite or negative position/scale "
                             "values; re-export the scene, or read it with nonfinite='drop' to skip them")
        warnings.warn(f"{path}: dropped {n_bad} of {n} gaussians with NaN or infinite attributes",
                      SplatWarning, stacklevel=2)
        splats = splats.subset(~bad)
    return splats


def splats_to_splat_records(splats: Splats, start: int = 0, stop: int | None = None) -> np.ndarray:
    """32-byte records for ``splats[start:stop]``, shape (stop - start,), dtype ``RECORD``."""
    stop = len(splats) if stop is None else stop
    s = slice(start, stop)
    out = np.empty(stop - start, RECORD)
    out["pos"] = splats.positions[s]
    out["scale"] = splats.scales[s]
    rgba = np.concatenate([splats.colors[s], splats.opacities[s, None]], axis=1)
    out["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255).astype(np.uint8)
    out["rot"] = np.clip(np.round(splats.rotations[s] * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return out


def write_splat(path, splats: Splats, *, chunk: int = DEFAULT_CHUNK) -> None:
    """Write ``splats`` as a ``.splat`` file, atomically (SH beyond DC is lost).

    Gaussians are written in their current order (the antimatter15 converter
    sorts by size times opacity; viewers do not depend on it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            for start in range(0, len(splats), chunk):
                fh.write(splats_to_splat_records(splats, start, min(len(splats), start + chunk)).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
