"""Reading and writing Gaussian splat scenes in the Inria PLY layout.

The layout written by the reference 3DGS trainer (Kerbl et al. 2023) and most
tools since: one ``vertex`` element whose properties are ``x y z``, optionally
``nx ny nz``, ``f_dc_0..2`` (SH DC colour), ``f_rest_0..3K-1`` (higher SH
bands, channel-major: the K coefficients of red, then green, then blue),
``opacity`` (a logit), ``scale_0..2`` (natural logs of standard deviations) and
``rot_0..3`` (a quaternion, real part first, not necessarily normalised).

Why a hand-written parser rather than plyfile: to say precisely *how* a header
lies (a truncated body, a wrong vertex count, a mislabelled byte order, a
missing ``end_header``) and to read a million gaussians in bounded memory by
decoding the body in chunks. plyfile serves as the independent oracle in the
tests.
"""

from __future__ import annotations

import io
import itertools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from soundstage.splats.model import (
    SH_C0,
    Splats,
    SplatError,
    normalise_quaternions,
    sh_coeff_count,
    sh_degree_from_rest,
)

#: PLY scalar type names (both spellings) to numpy type codes.
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NUMPY_TO_PLY = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
                 "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}

#: Properties every splat file must have; their absence means "not a splat file".
SPLAT_CORE = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
#: A header longer than this without ``end_header`` is not a header.
MAX_HEADER_BYTES = 4 << 20
#: Vertices decoded per chunk: bounds the temporary memory (~17 MB at SH degree 3).
DEFAULT_CHUNK = 65536


class SplatWarning(UserWarning):
    """Something in a splat file was repaired (dropped NaNs, zero quaternions)."""


@dataclass
class PlyProperty:
    """One property of a PLY element.

    ``dtype`` is a numpy type code (``"f4"``); ``list_count`` is the count's type
    code for list properties, else None.
    """

    name: str
    dtype: str
    list_count: str | None = None


@dataclass
class PlyElement:
    """One element of a PLY header: a name, an instance count and properties."""

    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)

    @property
    def is_fixed_size(self) -> bool:
        return all(p.list_count is None for p in self.properties)

    def names(self) -> list[str]:
        return [p.name for p in self.properties]

    def dtype(self, byte_order: str) -> np.dtype:
        """Structured dtype of one binary record (fixed-size elements only)."""
        return np.dtype([(p.name, byte_order + p.dtype) for p in self.properties])


@dataclass
class PlyHeader:
    """A parsed PLY header.

    Attributes
    ----------
    path : str
    format : str
        ``ascii``, ``binary_little_endian`` or ``binary_big_endian``.
    elements : list of PlyElement
    comments : list of str
        ``comment`` and ``obj_info`` lines, without the keyword.
    size : int
        Bytes from the start of the file to the first body byte.
    """

    path: str
    format: str
    version: str
    elements: list[PlyElement]
    comments: list[str]
    size: int

    def element(self, name: str) -> PlyElement | None:
        for el in self.elements:
            if el.name == name:
                return el
        return None


def _fail(path, message: str) -> SplatError:
    return SplatError(f"{path}: {message}")


def read_ply_header(path) -> PlyHeader:
    """Parse and check the header of a PLY file.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    PlyHeader

    Raises
    ------
    SplatError
        Not a PLY file, a malformed line, or no ``end_header`` line.
    """
    path = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise _fail(path, f"cannot open: {exc.strerror}") from None
    with fh:
        return _parse_header(fh, path)


def _parse_header(fh, path: str) -> PlyHeader:
    first = fh.readline(16)
    if first.rstrip(b"\r\n") != b"ply":
        raise _fail(path, "not a PLY file (it does not start with the line 'ply')")
    fmt = version = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    line_no = 1
    while True:
        raw = fh.readline(65536)
        line_no += 1
        if not raw:
            raise _fail(path, f"the header has no 'end_header' line (end of file after {line_no - 1} lines); "
                              "the file is truncated or not a PLY file")
        if fh.tell() > MAX_HEADER_BYTES:
            raise _fail(path, f"no 'end_header' line in the first {MAX_HEADER_BYTES} bytes; "
                              "the header is missing its end_header line")
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _fail(path, f"the header has no 'end_header' line (line {line_no} is binary data); "
                              "add 'end_header' after the last property line") from None
        if not text:
            continue
        words = text.split()
        key = words[0]
        if key == "end_header":
            break
        if key in ("comment", "obj_info"):
            comments.append(text[len(key):].strip())
        elif key == "format":
            if len(words) != 3 or words[1] not in FORMATS:
                raise _fail(path, f"header line {line_no} {text!r}: format must be ascii, "
                                  "binary_little_endian or binary_big_endian")
            fmt, version = words[1], words[2]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise _fail(path, f"header line {line_no} {text!r}: expected 'element NAME COUNT' "
                                  "with a non-negative integer count")
            elements.append(PlyElement(words[1], int(words[2])))
        elif key == "property":
            if not elements:
                raise _fail(path, f"header line {line_no}: 'property' before any 'element'")
            prop = _parse_property(words, path, line_no, text)
            if prop.name in elements[-1].names():
                raise _fail(path, f"header line {line_no}: property {prop.name!r} appears twice "
                                  f"in element {elements[-1].name!r}")
            elements[-1].properties.append(prop)
        else:
            raise _fail(path, f"the header has no 'end_header' line before line {line_no} "
                              f"({text[:40]!r} is not a header keyword)")
    if fmt is None:
        raise _fail(path, "the header has no 'format' line")
    return PlyHeader(path, fmt, version, elements, comments, fh.tell())


def _parse_property(words, path, line_no, text) -> PlyProperty:
    if len(words) == 3 and words[1] in PLY_TYPES:
        return PlyProperty(words[2], PLY_TYPES[words[1]])
    if (len(words) == 5 and words[1] == "list"
            and words[2] in PLY_TYPES and words[3] in PLY_TYPES):
        return PlyProperty(words[4], PLY_TYPES[words[3]], list_count=PLY_TYPES[words[2]])
    raise _fail(path, f"header line {line_no} {text!r}: not a valid property "
                      "(expected 'property TYPE NAME' or 'property list TYPE TYPE NAME')")


@dataclass
class _Layout:
    """Which vertex properties hold what, decided from the header."""

    sh_degree: int          # degree in the file
    sh_keep: int            # degree kept in memory
    extra: list[str]


def classify_vertex(header: PlyHeader) -> _Layout:
    """Check that the header describes Gaussian splats and map its properties.

    Raises
    ------
    SplatError
        A point cloud, a mesh, a compressed or otherwise unsupported layout.
    """
    path = header.path
    vertex = header.element("vertex")
    names = vertex.names() if vertex else []
    if header.element("chunk") is not None or any(n.startswith("packed_") for n in names):
        raise _fail(path, "this is a compressed splat PLY (chunk / packed_* properties, as written by "
                          "SuperSplat or PlayCanvas); export it uncompressed first")
    if vertex is None:
        found = ", ".join(e.name for e in header.elements) or "none"
        raise _fail(path, f"no 'vertex' element (elements: {found}); this is not a Gaussian splat file")
    if not vertex.is_fixed_size:
        raise _fail(path, "the vertex element has list properties; this is not a Gaussian splat file")
    missing_xyz = [n for n in ("x", "y", "z") if n not in names]
    if missing_xyz:
        raise _fail(path, f"the vertex element lacks {', '.join(missing_xyz)}; this is not a Gaussian splat file")
    missing = [n for n in SPLAT_CORE if n not in names]
    if len(missing) == len(SPLAT_CORE):
        face = header.element("face")
        kind = "a mesh" if face is not None and face.count > 0 else "a point cloud"
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise _fail(path, f"this is {kind} ({shown}), not a Gaussian splat file: it has no opacity, "
                          "scale_*, rot_* or f_dc_* properties; import it as a point cloud or train "
                          "a 3DGS model on it")
    if missing:
        raise _fail(path, f"not a complete Gaussian splat file: the vertex element lacks "
                          f"{', '.join(missing)}")
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]) if n[7:].isdigit() else -1)
    if rest:
        idx = [int(n[7:]) if n[7:].isdigit() else -1 for n in rest]
        degree = sh_degree_from_rest(len(rest) // 3) if len(rest) % 3 == 0 else None
        if idx != list(range(len(rest))) or degree is None:
            raise _fail(path, f"{len(rest)} f_rest_* properties do not form SH degree 1-4 "
                              "(expected f_rest_0..f_rest_{3((d+1)^2-1)-1}: 9, 24, 45 or 72)")
    else:
        degree = 0
    known = {"x", "y", "z", *SPLAT_CORE, *rest}
    extra = [n for n in names if n not in known]
    return _Layout(degree, degree, extra)


def _implausible_fraction(values: np.ndarray, log_scale: bool) -> float:
    """Fraction of values that real splat data essentially never holds.

    Byte-swapped float32 turn into NaNs, infinities, denormals or values
    beyond 1e30; genuine positions, logits and log-scales do not.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        v = values.astype(np.float64, copy=False)
        a = np.abs(v)
        limit = 100.0 if log_scale else 1e7
        ok = np.isfinite(v) & (a < limit) & ((a == 0) | (a > 1e-30))
    return 1.0 - float(np.count_nonzero(ok)) / max(v.size, 1)


def _check_plausible_positions(path: str, positions: np.ndarray, what: str) -> None:
    """Raise if sample positions are mostly NaN, infinite, denormal or beyond 1e7."""
    bad = _implausible_fraction(np.asarray(positions), log_scale=False)
    if bad > 0.05:
        raise _fail(path, f"{bad:.0%} of the sampled positions read as {what} are NaN, infinite or absurd; "
                          "the file is not a splat file of this kind or is corrupt")


def _check_byte_order(header: PlyHeader, sample: bytes, count: int) -> None:
    """Detect a binary body written in the other byte order than declared."""
    vertex = header.element("vertex")
    declared = FORMATS[header.format]
    other = ">" if declared == "<" else "<"
    names = ["x", "y", "z", "opacity", "f_dc_0", "f_dc_1", "f_dc_2",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    floats = [p.name for p in vertex.properties if p.name in names and p.dtype in ("f4", "f8")]
    if not floats or count == 0:
        return

    def score(order):
        arr = np.frombuffer(sample, dtype=vertex.dtype(order), count=count)
        return float(np.mean([_implausible_fraction(arr[n], n.startswith("scale_")) for n in floats]))

    bad_declared, bad_other = score(declared), score(other)
    if bad_declared > 0.05 and bad_other < 0.01:
        right = "binary_big_endian" if other == ">" else "binary_little_endian"
        raise _fail(header.path, f"the header says {header.format} but the data are {right.split('_')[1]}-endian "
                                 f"({bad_declared:.0%} of the first {count} gaussians decode to NaN, infinite "
                                 f"or absurd values); the header is mislabelled: change its format line to "
                                 f"'format {right} 1.0'")
    if bad_declared > 0.5:
        raise _fail(header.path, f"{bad_declared:.0%} of the first {count} gaussians decode to NaN, infinite or "
                                 "absurd values; the header's property list does not match the data")


def _element_nbytes(el: PlyElement, order: str) -> int:
    return el.count * el.dtype(order).itemsize


class _Converter:
    """Fills the output arrays of ``Splats`` from decoded chunks of records."""

    def __init__(self, n: int, layout: _Layout, keep_extra: bool, extra_dtypes: dict):
        self.n = n
        self.layout = layout
        self.pos = np.empty((n, 3), np.float32)
        self.scales = np.empty((n, 3), np.float32)
        self.rot = np.empty((n, 4), np.float32)
        self.opac = np.empty(n, np.float32)
        self.dc = np.empty((n, 3), np.float32)
        k_keep = sh_coeff_count(layout.sh_keep)
        self.k_file = sh_coeff_count(layout.sh_degree)
        self.rest = np.empty((n, k_keep, 3), np.float32) if k_keep else None
        self.extra = {name: np.empty(n, np.dtype(dt).newbyteorder("=")) for name, dt in extra_dtypes.items()} \
            if keep_extra else {}
        self.bad = np.zeros(n, bool)

    def put(self, start: int, rec) -> None:
        """Copy one chunk; ``rec`` maps a property name to a 1-D array."""
        stop = start + len(rec["x"])
        s = slice(start, stop)
        for j, name in enumerate("xyz"):
            self.pos[s, j] = rec[name]
        for j in range(3):
            self.scales[s, j] = rec[f"scale_{j}"]
            self.dc[s, j] = rec[f"f_dc_{j}"]
        for j in range(4):
            self.rot[s, j] = rec[f"rot_{j}"]
        self.opac[s] = rec["opacity"]
        if self.rest is not None:
            k_keep = self.rest.shape[1]
            for c in range(3):
                for k in range(k_keep):
                    self.rest[s, k, c] = rec[f"f_rest_{c * self.k_file + k}"]
        for name, arr in self.extra.items():
            arr[s] = rec[name]
        # A gaussian is unusable if any attribute that the renderer or the
        # acoustics use is not finite (checked on the raw values, per chunk).
        bad = ~np.isfinite(self.pos[s]).all(axis=1)
        bad |= ~np.isfinite(self.scales[s]).all(axis=1)
        bad |= ~np.isfinite(self.rot[s]).all(axis=1)
        bad |= ~np.isfinite(self.opac[s])
        bad |= ~np.isfinite(self.dc[s]).all(axis=1)
        if self.rest is not None:
            bad |= ~np.isfinite(self.rest[s].reshape(stop - start, -1)).all(axis=1)
        # Log-scales above ~88 overflow float32 when exponentiated.
        with np.errstate(invalid="ignore"):
            bad |= (self.scales[s] > 80).any(axis=1)
        self.bad[s] = bad
        # Convert in place: linear scales, opacity, unit quaternions.
        with np.errstate(over="ignore", invalid="ignore"):
            np.exp(self.scales[s], out=self.scales[s])
        expit(self.opac[s], out=self.opac[s])
        self.rot[s], n_zero = normalise_quaternions(self.rot[s])
        self.n_zero_quat = getattr(self, "n_zero_quat", 0) + n_zero

    def finish(self, path: str, nonfinite: str) -> Splats:
        colors = np.clip(0.5 + SH_C0 * self.dc, 0.0, 1.0).astype(np.float32, copy=False)
        splats = Splats(
            positions=self.pos, scales=self.scales, rotations=self.rot, opacities=self.opac,
            colors=colors, sh_rest=self.rest, sh_degree=self.layout.sh_keep, extra=self.extra,
            sh_dc=self.dc, source=path,
        )
        n_bad = int(np.count_nonzero(self.bad))
        if getattr(self, "n_zero_quat", 0):
            warnings.warn(f"{path}: {self.n_zero_quat} gaussians have a zero rotation quaternion; "
                          "they were given the identity rotation", SplatWarning, stacklevel=3)
        if n_bad:
            if nonfinite == "drop":
                warnings.warn(f"{path}: dropped {n_bad} of {self.n} gaussians with NaN or infinite "
                              "attributes", SplatWarning, stacklevel=3)
                splats = splats.subset(~self.bad)
            else:
                first = int(np.flatnonzero(self.bad)[0])
                raise _fail(path, f"{n_bad} of {self.n} gaussians have NaN or infinite attributes "
                                  f"(the first is vertex {first}); re-export the scene, or read it with "
                                  "nonfinite='drop' to skip them")
        if len(splats) == 0:
            raise _fail(path, "the file holds no usable gaussians")
        return splats


def read_ply(path, *, nonfinite: str = "error", max_sh_degree: int | None = None,
             keep_extra: bool = True, chunk: int = DEFAULT_CHUNK) -> Splats:
    """Read a Gaussian splat scene from an Inria-layout PLY file.

    Binary (either byte order) and ASCII bodies are decoded ``chunk`` vertices
    at a time, so the memory beyond the returned arrays stays bounded.

    Parameters
    ----------
    path : str or Path
    nonfinite : {"error", "drop"}
        What to do with gaussians holding NaN or infinite attributes: raise
        ``SplatError`` (the default) or drop them with a ``SplatWarning``.
    max_sh_degree : int, optional
        Keep at most this SH degree (0 drops ``sh_rest`` and saves memory).
    keep_extra : bool
        Keep unknown per-vertex properties in ``Splats.extra``.
    chunk : int
        Vertices decoded per step.

    Returns
    -------
    Splats

    Raises
    ------
    SplatError
        One line naming the file and what is wrong: not a PLY file, no
        ``end_header``, a point cloud or mesh, a truncated body, a vertex count
        that is too large or too small, a mislabelled byte order, NaN attributes.
    """
    if nonfinite not in ("error", "drop"):
        raise ValueError("nonfinite must be 'error' or 'drop'")
    path = str(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise _fail(path, f"cannot open: {exc.strerror}") from None
    with fh:
        header = _parse_header(fh, path)
        layout = classify_vertex(header)
        if max_sh_degree is not None:
            layout.sh_keep = min(layout.sh_degree, max(0, int(max_sh_degree)))
        vertex = header.element("vertex")
        if vertex.count == 0:
            raise _fail(path, "the header declares 0 vertices; the file holds no gaussians")
        extra_dtypes = {p.name: p.dtype for p in vertex.properties if p.name in layout.extra}
        conv = _Converter(vertex.count, layout, keep_extra, extra_dtypes)
        if header.format == "ascii":
            _read_ascii_body(fh, header, conv, chunk)
        else:
            _read_binary_body(fh, header, conv, chunk)
    return conv.finish(path, nonfinite)


def _read_binary_body(fh, header: PlyHeader, conv: _Converter, chunk: int) -> None:
    path = header.path
    order = FORMATS[header.format]
    vertex = header.element("vertex")
    dtype = vertex.dtype(order)
    rec_size = dtype.itemsize
    offset = header.size
    for el in header.elements:
        if el is vertex:
            break
        if not el.is_fixed_size:
            raise _fail(path, f"element {el.name!r} with list properties comes before the vertices; "
                              "this layout is not supported for splats")
        offset += _element_nbytes(el, order)
    after = header.elements[header.elements.index(vertex) + 1:]
    file_size = os.fstat(fh.fileno()).st_size
    need = vertex.count * rec_size
    have = file_size - offset
    if have < need:
        whole, part = divmod(max(have, 0), rec_size)
        if part:
            hint = (f"{whole} whole vertices and {part} bytes of a partial one follow the header); "
                    "the body is truncated: re-download or re-export the file")
        else:
            hint = (f"exactly {whole} whole vertices follow the header); the vertex count in the header "
                    f"is too large (or the file was cut at a vertex boundary): set 'element vertex {whole}'")
        raise _fail(path, f"the header declares {vertex.count} vertices of {rec_size} bytes "
                          f"({need} bytes) but only {max(have, 0)} bytes remain ({hint}")
    if all(el.is_fixed_size for el in after):
        expected_end = offset + need + sum(_element_nbytes(el, order) for el in after)
        if file_size < expected_end:
            raise _fail(path, f"the file ends {expected_end - file_size} bytes before the end of the "
                              "elements after the vertices; the body is truncated")
        trailing = file_size - expected_end
        if trailing:
            fh.seek(expected_end)
            tail = fh.read(min(trailing, rec_size))
            if trailing < rec_size and not tail.strip(b"\x00\r\n\t "):
                warnings.warn(f"{path}: ignored {trailing} padding bytes after the body", SplatWarning,
                              stacklevel=3)
            elif not after and trailing % rec_size == 0:
                raise _fail(path, f"the header declares {vertex.count} vertices but the body holds "
                                  f"{vertex.count + trailing // rec_size}; the vertex count in the header is "
                                  f"too small: set 'element vertex {vertex.count + trailing // rec_size}'")
            else:
                raise _fail(path, f"{trailing} unexpected bytes follow the {vertex.count} vertices the header "
                                  "declares; the vertex count in the header is too small or the file has "
                                  "garbage appended")
    fh.seek(offset)
    sample_n = min(vertex.count, 4096)
    _check_byte_order(header, fh.read(sample_n * rec_size), sample_n)
    fh.seek(offset)
    for start in range(0, vertex.count, chunk):
        n = min(chunk, vertex.count - start)
        buf = fh.read(n * rec_size)
        # Field views of the chunk; assignment into the native float32 outputs
        # does any byte swapping.
        rec = np.frombuffer(buf, dtype=dtype, count=n)
        conv.put(start, rec)
        del rec, buf


def _read_ascii_body(fh, header: PlyHeader, conv: _Converter, chunk: int) -> None:
    path = header.path
    vertex = header.element("vertex")
    names = vertex.names()
    ncol = len(names)
    text = io.TextIOWrapper(fh, encoding="ascii", errors="replace", newline=None)
    line_no = _header_line_count(header)
    lines = iter(text)
    for el in header.elements:
        if el is vertex:
            break
        skipped = sum(1 for _ in itertools.islice(lines, el.count))
        if skipped < el.count:
            raise _fail(path, f"the body ends inside element {el.name!r}; the file is truncated")
        line_no += el.count
    for start in range(0, vertex.count, chunk):
        n = min(chunk, vertex.count - start)
        block = list(itertools.islice(lines, n))
        if len(block) < n:
            got = start + len(block)
            raise _fail(path, f"the header declares {vertex.count} vertices but the body has only {got} "
                              "lines; the file is truncated or the vertex count in the header is too large: "
                              f"set 'element vertex {got}' if the data are complete")
        widths = [len(s.split()) for s in block]
        wrong = [i for i, w in enumerate(widths) if w != ncol]
        if wrong:
            i = wrong[0]
            raise _fail(path, f"line {line_no + start + i + 1} has {widths[i]} values, expected {ncol} "
                              "(one per vertex property); the body is truncated or malformed")
        try:
            arr = np.loadtxt(block, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise _fail(path, f"vertex data between lines {line_no + start + 1} and {line_no + start + n} "
                              f"are not numbers ({str(exc).splitlines()[0]})") from None
        conv.put(start, {name: arr[:, j] for j, name in enumerate(names)})
    line_no += vertex.count
    after = header.elements[header.elements.index(vertex) + 1:]
    for el in after:
        skipped = sum(1 for _ in itertools.islice(lines, el.count))
        if skipped < el.count:
            raise _fail(path, f"the body ends inside element {el.name!r}; the file is truncated")
    extra_lines = sum(1 for s in lines if s.strip())
    if extra_lines:
        if after:
            raise _fail(path, f"{extra_lines} unexpected lines follow the last element; the element "
                              "counts in the header are too small")
        raise _fail(path, f"the header declares {vertex.count} vertices but the body has {extra_lines} more "
                          f"lines; the vertex count in the header is too small: set "
                          f"'element vertex {vertex.count + extra_lines}'")
    text.detach()


def _header_line_count(header: PlyHeader) -> int:
    with open(header.path, "rb") as fh:
        return fh.read(header.size).count(b"\n")


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def splat_vertex_dtype(sh_degree: int, extra: dict | None = None, byte_order: str = "<") -> np.dtype:
    """The structured record type the Inria trainer writes (plus extras).

    Parameters
    ----------
    sh_degree : int
    extra : dict of name to array, optional
        Extra properties, appended after the standard ones.
    byte_order : {"<", ">"}
    """
    k = sh_coeff_count(sh_degree)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    fields = [(n, byte_order + "f4") for n in names]
    for name, arr in (extra or {}).items():
        fields.append((name, byte_order + np.asarray(arr).dtype.str[1:]))
    return np.dtype(fields)


def splats_to_records(splats: Splats, start: int = 0, stop: int | None = None,
                      byte_order: str = "<") -> np.ndarray:
    """Inria-layout records for ``splats[start:stop]`` (the inverse of the reader).

    Returns
    -------
    ndarray, structured, shape (stop - start,)
        Log-scales, logit opacities, raw quaternions, SH DC (from ``sh_dc`` when
        present, else from ``colors``) and ``f_rest`` channel-major.
    """
    stop = len(splats) if stop is None else stop
    s = slice(start, stop)
    dtype = splat_vertex_dtype(splats.sh_degree if splats.sh_rest is not None else 0, splats.extra, byte_order)
    out = np.empty(stop - start, dtype)
    for j, name in enumerate("xyz"):
        out[name] = splats.positions[s, j]
    dc = splats.sh_dc[s] if splats.sh_dc is not None else (splats.colors[s] - 0.5) / SH_C0
    for j in range(3):
        out[f"f_dc_{j}"] = dc[:, j]
        with np.errstate(divide="ignore"):
            out[f"scale_{j}"] = np.log(splats.scales[s, j])
    if splats.sh_rest is not None:
        k = splats.sh_rest.shape[1]
        for c in range(3):
            for i in range(k):
                out[f"f_rest_{c * k + i}"] = splats.sh_rest[s, i, c]
    p = np.clip(splats.opacities[s].astype(np.float64), 1e-7, 1 - 1e-7)
    out["opacity"] = np.log(p / (1 - p))
    for j in range(4):
        out[f"rot_{j}"] = splats.rotations[s, j]
    for name, arr in splats.extra.items():
        out[name] = arr[s]
    return out


def write_ply(path, splats: Splats, *, ascii: bool = False, byte_order: str = "<",
              comments=(), chunk: int = DEFAULT_CHUNK) -> None:
    """Write ``splats`` as an Inria-layout PLY file, atomically.

    The file appears complete or not at all (temporary file in the same
    folder, fsync, rename).

    Parameters
    ----------
    path : str or Path
    splats : Splats
    ascii : bool
        Text body instead of binary.
    byte_order : {"<", ">"}
        Binary byte order (``binary_little_endian`` or ``binary_big_endian``).
    comments : iterable of str
        Header comment lines.
    """
    path = Path(path)
    dtype = splat_vertex_dtype(splats.sh_degree if splats.sh_rest is not None else 0, splats.extra, byte_order)
    fmt = "ascii" if ascii else ("binary_little_endian" if byte_order == "<" else "binary_big_endian")
    head = ["ply", f"format {fmt} 1.0"]
    head += [f"comment {c}" for c in comments]
    head.append(f"element vertex {len(splats)}")
    head += [f"property {_NUMPY_TO_PLY[dtype[n].str[1:]]} {n}" for n in dtype.names]
    head.append("end_header")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(("\n".join(head) + "\n").encode("ascii"))
            for start in range(0, len(splats), chunk):
                rec = splats_to_records(splats, start, min(len(splats), start + chunk), byte_order)
                if ascii:
                    cols = [rec[n] for n in dtype.names]
                    np.savetxt(fh, np.column_stack(cols).astype(np.float64), fmt="%.9g")
                else:
                    fh.write(rec.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
