"""Head-related transfer functions: loading SOFA files, interpolation, diffuse-field data.

``load_hrtf(spec, sample_rate)`` reads a SOFA ``SimpleFreeFieldHRIR`` file (``"default"``
is the MIT KEMAR "normal pinna" set shipped in ``soundstage/data``) and returns an
``HRTF``: per measured direction, a pair of onset-aligned impulse responses plus the
two ears' onset delays. Rendering a source in direction ``d`` means convolving the
source signal, delayed by ``ear_delays`` (on top of its propagation delay), with the
aligned pair from ``HRTF.interpolate(d)``; interpolating aligned responses and delays
separately avoids the comb filtering of mixing misaligned impulse responses.

Frame of every direction here (SOFA's own): x ahead of the listener, y to the left,
z up; azimuth counter-clockwise from the front (+90 degrees is the left), elevation
up from the horizontal plane. A Blender camera looks along its local -Z with up +Y,
so ahead = -Z_cam, left = -X_cam, up = +Y_cam.

Ear index 0 is always the left ear, 1 the right ear.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft
import soxr
from scipy.signal import resample_poly
from scipy.spatial import ConvexHull, QhullError, cKDTree

from soundstage.errors import HRTFError

SUPPORTED_CONVENTIONS = ("SimpleFreeFieldHRIR",)

#: Onset threshold: the onset is where the rectified, 8x upsampled impulse response
#: first reaches this level (dB) below its peak.
ONSET_THRESHOLD_DB = -20.0
#: Upsampling factor used to find onsets with sub-sample precision.
ONSET_UPSAMPLE = 8
#: Time (s) kept before the aligned onset; 0.5 ms is 24 samples at 48 kHz.
LEAD_SECONDS = 0.5e-3
#: Energy fraction the truncated aligned responses keep (over the whole set).
KEEP_ENERGY = 0.999
#: Length (s) of the half-Hann fade-out that ends the truncated responses (32 samples at 48 kHz).
FADE_SECONDS = 32 / 48000
#: Default HRTF shipped with the package.
DEFAULT_SOFA = "mit_kemar_normal_pinna.sofa"

_PAD_SECONDS = 64 / 44100  # zeros around each raw IR so resampling can ring freely
_EAR_CHECK_MIN_DB = 3.0  # a broadband level difference smaller than this proves nothing
_EAR_CHECK_MAX_ANGLE = math.radians(30.0)


class HRTFWarning(UserWarning):
    """An HRTF file loads but something about it is doubtful (e.g. its ear labels)."""


def _sph_to_cart(az_deg: np.ndarray, el_deg: np.ndarray, r: np.ndarray) -> np.ndarray:
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)], axis=-1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class HRTF:
    """A set of HRIRs at one sample rate, split into aligned responses and ear delays.

    Attributes
    ----------
    name : str
        Human-readable name (database and subject from the file, else the file name).
    path : str
        The SOFA file's path, or ``"default"`` for the shipped KEMAR set.
    sample_rate : int
        Hz.
    directions : ndarray, shape (M, 3)
        Unit vectors of the measured directions in the listener frame (x ahead, y left, z up).
    hrirs : ndarray, shape (M, 2, L), float32
        Onset-aligned impulse responses, ear 0 left, ear 1 right: each response's onset
        sits exactly at sample ``lead``. Read-only.
    ear_delays : ndarray, shape (M, 2)
        Onset of each ear relative to the head centre, in seconds (negative = earlier):
        onset minus the median over directions of the mean of both ears' onsets. For
        KEMAR a source at the left gives -0.26 ms left and +0.36 ms right, one straight
        ahead -0.06 ms in both ears. Includes SOFA Data.Delay. Read-only.
    lead : int
        Samples before the aligned onset in ``hrirs`` (about 0.5 ms).
    notes : tuple of str
        Warnings raised while loading (re-issued as ``HRTFWarning`` by ``load_hrtf``).
    solid_angles : ndarray, shape (M,)
        Solid angle (sr) each measured direction stands for; sums to 4 pi.
    triangulated : bool
        True when interpolation is barycentric on the spherical triangulation.

    Notes
    -----
    Onsets are found per (direction, ear) on the response upsampled 8x (polyphase,
    scipy.signal.resample_poly): the first crossing of -20 dB below the peak of its
    absolute value, linearly interpolated between upsampled samples. Each response is
    then shifted by a fractional delay in the frequency domain (zero-padded FFT, so
    nothing wraps into the kept part) to put that onset at ``lead``, then all responses
    are truncated to the shortest common length that, with a half-Hann fade-out over
    its last ``FADE_SECONDS``, keeps 99.9 % of the whole set's energy (383 taps at
    48 kHz for KEMAR).

    Onsets are measured on the file's responses at the file's own rate, before
    resampling, so ear delays do not depend on the rendering rate. The reference (head
    centre) is the median over directions of the mean of both ears' onsets; for KEMAR a
    source at +90 degrees gives about -0.26 ms (left) and +0.36 ms (right): the far ear
    lags more than the near ear leads, as the sound travels around the head (Woodworth's
    model predicts -0.25 / +0.40 ms for a 8.75 cm sphere).
    """

    def __init__(
        self,
        *,
        name: str,
        path: str,
        sample_rate: int,
        directions: np.ndarray,
        hrirs: np.ndarray,
        ear_delays: np.ndarray,
        lead: int,
        raw_hrirs: np.ndarray,
        raw_delays: np.ndarray,
        notes: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.path = path
        self.sample_rate = int(sample_rate)
        self.directions = _readonly(np.asarray(directions, dtype=np.float64))
        self.hrirs = _readonly(np.asarray(hrirs, dtype=np.float32))
        self.ear_delays = _readonly(np.asarray(ear_delays, dtype=np.float64))
        self.lead = int(lead)
        self.notes = tuple(notes)
        # Unaligned responses (delays included) for diffuse-field statistics; raw_delays
        # are extra per-(direction, ear) delays in seconds that the raw responses lack
        # (SOFA Data.Delay).
        self._raw = _readonly(np.asarray(raw_hrirs, dtype=np.float32))
        self._raw_delays = _readonly(np.asarray(raw_delays, dtype=np.float64))
        self._triangulate()

    def __repr__(self) -> str:
        m, _, length = self.hrirs.shape
        return f"HRTF({self.name!r}, path={self.path!r}, {m} directions, {self.sample_rate} Hz, {length} taps, lead={self.lead})"

    # --- triangulation and weights -------------------------------------------------------

    def _triangulate(self) -> None:
        """Spherical triangulation (convex hull) of the directions, and solid-angle weights."""
        d = self.directions
        self._kdtree = cKDTree(d)
        self._faces = None
        try:
            hull = ConvexHull(d)
        except (QhullError, ValueError):
            hull = None
        # The ray from the origin through any direction hits exactly one hull face only if
        # the origin is strictly inside the hull (the set is not confined to a hemisphere
        # or a plane), and every direction must be a hull vertex to be reproduced exactly.
        if hull is not None and np.all(hull.equations[:, -1] < -1e-9) and len(hull.vertices) == len(d):
            faces = hull.simplices
            mats = np.transpose(d[faces], (0, 2, 1))  # (F, 3, 3), columns are the vertices
            self._faces = faces
            self._face_inv = np.linalg.inv(mats)
            centroids = _unit(d[faces].mean(axis=1))
            self._face_tree = cKDTree(centroids)
            # Solid angle of each spherical triangle (Van Oosterom & Strackee, 1983), a
            # third of it to each of its vertices: the weights sum to 4 pi.
            a, b, c = d[faces[:, 0]], d[faces[:, 1]], d[faces[:, 2]]
            num = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
            den = 1 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c) + np.einsum("ij,ij->i", c, a)
            omega = 2 * np.arctan2(num, den)
            w = np.zeros(len(d))
            np.add.at(w, faces.ravel(), np.repeat(omega / 3, 3))
            self.solid_angles = _readonly(w)
        else:
            # No usable triangulation: equal weights.
            self.solid_angles = _readonly(np.full(len(d), 4 * np.pi / len(d)))

    @property
    def triangulated(self) -> bool:
        """True when interpolation is barycentric on the hull, False for the 3-nearest fallback."""
        return self._faces is not None

    def barycentric(self, directions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Indices and weights of the measured directions that interpolate ``directions``.

        Parameters
        ----------
        directions : array_like, shape (n, 3) or (3,)
            Directions in the listener frame; need not be unit length; zero is an error.

        Returns
        -------
        index : ndarray, shape (n, 3), int
            Rows of ``self.directions``.
        weight : ndarray, shape (n, 3), float64
            Non-negative, summing to 1 per row.

        Notes
        -----
        With a valid triangulation (the origin strictly inside the convex hull of the
        measured directions, which holds for KEMAR even without directions below -40
        degrees: wide bottom faces cover those rays) the weights are the barycentric
        coordinates of the ray's intersection with the hull face it crosses. Otherwise
        (directions confined to a plane or a hemisphere) they are inverse-distance weights
        of the 3 nearest measured directions.
        """
        q = _query_directions(directions)
        if self._faces is None:
            return self._idw(q)
        return self._barycentric_fast(q)

    def _idw(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(3, len(self.directions))
        dist, idx = self._kdtree.query(q, k=k)
        dist, idx = dist.reshape(len(q), k), idx.reshape(len(q), k)
        w = 1.0 / np.maximum(dist, 1e-12)
        exact = dist[:, 0] < 1e-9
        w[exact] = 0.0
        w[exact, 0] = 1.0
        w /= w.sum(axis=1, keepdims=True)
        if k < 3:
            idx = np.concatenate([idx, np.repeat(idx[:, :1], 3 - k, axis=1)], axis=1)
            w = np.concatenate([w, np.zeros((len(q), 3 - k))], axis=1)
        return idx, w

    def _barycentric_fast(self, q: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        n = len(q)
        k = min(k, len(self._faces))
        _, cand = self._face_tree.query(q, k=k)
        cand = cand.reshape(n, k)
        lam = np.einsum("nkij,nj->nki", self._face_inv[cand], q)  # (n, k, 3)
        score = lam.min(axis=2)
        best = np.argmax(score, axis=1)
        face = cand[np.arange(n), best]
        found = score[np.arange(n), best] >= -1e-10
        lam_best = lam[np.arange(n), best]
        # Rays whose face is not among the k nearest centroids (long thin faces, e.g. the
        # bottom cap of KEMAR): search all faces.
        miss = np.flatnonzero(~found)
        for start in range(0, miss.size, 256):
            rows = miss[start : start + 256]
            lam_all = np.einsum("fij,nj->nfi", self._face_inv, q[rows])
            f = np.argmax(lam_all.min(axis=2), axis=1)
            face[rows] = f
            lam_best[rows] = lam_all[np.arange(rows.size), f]
        return self._normalise(self._faces[face], lam_best)

    @staticmethod
    def _normalise(idx: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.clip(lam, 0.0, None)
        w /= w.sum(axis=1, keepdims=True)
        # Snap round-off so that a measured direction gets weight exactly 1 on itself.
        w[w < 1e-12] = 0.0
        w /= w.sum(axis=1, keepdims=True)
        return idx, w

    def _barycentric_reference(self, directions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Slow, obviously correct twin of ``barycentric``: every face, one query at a time."""
        q = _query_directions(directions)
        if self._faces is None:
            return self._idw(q)
        idx_out = np.zeros((len(q), 3), dtype=int)
        lam_out = np.zeros((len(q), 3))
        for i, v in enumerate(q):
            best, best_score = None, -np.inf
            for f, tri in enumerate(self._faces):
                lam = np.linalg.solve(self.directions[tri].T, v)
                if lam.min() > best_score:
                    best, best_score = f, lam.min()
            idx_out[i] = self._faces[best]
            lam_out[i] = np.linalg.solve(self.directions[self._faces[best]].T, v)
        return self._normalise(idx_out, lam_out)

    # --- interpolation -----------------------------------------------------------------

    def interpolate(self, directions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Aligned HRIR pairs and ear delays for arbitrary directions.

        Parameters
        ----------
        directions : array_like, shape (n, 3) or (3,)
            Directions in the listener frame (x ahead, y left, z up); any non-zero length.

        Returns
        -------
        hrirs : ndarray, shape (n, 2, L), float32
            Weighted sum of the aligned responses of the enclosing measured triangle
            (see ``barycentric``); onset at sample ``lead``. At a measured direction it
            is that measurement exactly.
        ear_delays : ndarray, shape (n, 2)
            Same weights applied to the measured ear delays, seconds.

        Raises
        ------
        ValueError
            A zero or non-finite direction, or a wrong shape.
        """
        idx, w = self.barycentric(directions)
        hrirs = np.einsum("nk,nkel->nel", w.astype(np.float32), self.hrirs[idx])
        delays = np.einsum("nk,nke->ne", w, self.ear_delays[idx])
        return hrirs, delays

    # --- diffuse field -------------------------------------------------------------------

    def diffuse_field(self, band_edges: Any) -> tuple[np.ndarray, np.ndarray]:
        """Diffuse-field power per ear and interaural coherence, per frequency band.

        Parameters
        ----------
        band_edges : array_like, shape (B + 1,) or (B, 2)
            Band edges in Hz: consecutive edges, or one (low, high) pair per band. Parts
            above the Nyquist frequency are ignored.

        Returns
        -------
        power : ndarray, shape (2, B)
            Per ear (0 left, 1 right), the solid-angle-weighted mean over directions of
            |H(f)|^2, averaged over the band's frequency bins (linear power gain, 1.0 = 0 dB).
            0 for a band entirely above Nyquist.
        coherence : ndarray, shape (B,)
            Real part of the solid-angle-weighted cross-spectrum sum over the band,
            normalised by the geometric mean of the two ears' power sums: the interaural
            coherence of an ideal diffuse field. 0 for a band entirely above Nyquist.

        Notes
        -----
        Uses the unaligned responses (interaural delays included). Solid-angle weights:
        each hull triangle's spherical area, one third to each of its vertices (they sum
        to 4 pi; regions without measurements, such as below -40 degrees for KEMAR, are
        credited to the nearest measured ring). Without a valid triangulation all
        directions weigh the same.
        """
        edges = np.asarray(band_edges, dtype=np.float64)
        if edges.ndim == 1:
            if edges.size < 2:
                raise ValueError("band_edges needs at least two edges")
            lo, hi = edges[:-1], edges[1:]
        elif edges.ndim == 2 and edges.shape[1] == 2:
            lo, hi = edges[:, 0], edges[:, 1]
        else:
            raise ValueError(f"band_edges must have shape (B+1,) or (B, 2), got {edges.shape}")
        if np.any(~np.isfinite(edges)) or np.any(lo < 0) or np.any(hi <= lo):
            raise ValueError("band edges must be finite, non-negative and increasing within each band")
        fs = self.sample_rate
        nyq = fs / 2
        width = np.min(np.minimum(hi, nyq) - lo, initial=np.inf, where=lo < nyq)
        n = self._raw.shape[-1]
        # Zero-padded frequency grid: 4x the response length (sampling |H|^2 only at the
        # response's own bins misestimates band means by ~10 %), and at least ~8 bins in
        # the narrowest band.
        target = 8 * fs / width if np.isfinite(width) and width > 0 else n
        nfft = sfft.next_fast_len(int(min(max(4 * n, target), 1 << 18)), real=True)
        freqs = np.fft.rfftfreq(nfft, 1 / fs)
        spec = sfft.rfft(self._raw.astype(np.float64), n=nfft, axis=-1)  # (M, 2, F)
        spec *= np.exp(-2j * np.pi * freqs * self._raw_delays[..., None])
        w = self.solid_angles / self.solid_angles.sum()
        p = np.einsum("m,mef->ef", w, np.abs(spec) ** 2)  # (2, F)
        cross = np.einsum("m,mf->f", w, spec[:, 0] * np.conj(spec[:, 1]))  # (F,)
        power = np.zeros((2, lo.size))
        coherence = np.zeros(lo.size)
        for b in range(lo.size):
            sel = (freqs >= lo[b]) & (freqs < min(hi[b], nyq))
            if not sel.any():
                if lo[b] >= nyq:
                    continue
                sel = np.zeros_like(sel)
                sel[np.argmin(np.abs(freqs - 0.5 * (lo[b] + min(hi[b], nyq))))] = True
            pl, pr = p[0, sel].sum(), p[1, sel].sum()
            power[:, b] = [pl / sel.sum(), pr / sel.sum()]
            coherence[b] = cross[sel].sum().real / math.sqrt(pl * pr) if pl > 0 and pr > 0 else 0.0
        return power, coherence


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _query_directions(directions: Any) -> np.ndarray:
    q = np.asarray(directions, dtype=np.float64)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"directions must have shape (n, 3) or (3,), got {np.shape(directions)}")
    norm = np.linalg.norm(q, axis=1)
    if not np.all(np.isfinite(norm)):
        raise ValueError("directions must be finite")
    if np.any(norm == 0):
        raise ValueError(f"direction {int(np.argmin(norm))} is the zero vector; a direction needs a non-zero length")
    return q / norm[:, None]


# --- loading -----------------------------------------------------------------------------


def _default_path() -> Path:
    res = resources.files("soundstage") / "data" / DEFAULT_SOFA
    # The package is installed as plain files (editable or wheel), so this is a real path.
    return Path(str(res))


def load_hrtf(spec: str | os.PathLike, sample_rate: int) -> HRTF:
    """Load an HRTF for rendering at ``sample_rate``.

    Parameters
    ----------
    spec : str or path-like
        ``"default"`` (MIT KEMAR, normal pinna, shipped with the package) or the path of
        a SOFA file of convention SimpleFreeFieldHRIR (any version).
    sample_rate : int
        Rendering rate in Hz; the responses are resampled with soxr (very high quality).

    Returns
    -------
    HRTF
        Cached per (resolved file, modification time, size, sample rate): loading the
        same file twice returns the same read-only object.

    Raises
    ------
    HRTFError
        One line naming the file: missing, unreadable or not SOFA, unsupported convention
        (naming the one found and listing what is supported), not two receivers, unusable
        positions. There is never a silent fall-back to the default.

    Warns
    -----
    HRTFWarning
        When the file's data contradict its ear labels (see ``_ear_order``).
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if isinstance(spec, str) and spec == "default":
        path, shown = _default_path(), "default"
    else:
        path = Path(spec).expanduser()
        shown = str(spec)
    try:
        resolved = path.resolve(strict=True)
        st = resolved.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise HRTFError(f"HRTF file '{shown}' not found; give the path of a SOFA file or \"default\"") from None
    except OSError as err:
        raise HRTFError(f"HRTF file '{shown}' cannot be opened: {err.strerror or err}") from None
    if not resolved.is_file():
        raise HRTFError(f"HRTF file '{shown}' is not a file; give the path of a SOFA file or \"default\"")
    hrtf = _load_cached(str(resolved), st.st_mtime_ns, st.st_size, int(sample_rate), shown)
    for note in hrtf.notes:
        warnings.warn(HRTFWarning(note), stacklevel=2)
    return hrtf


#: Bump when the processing in ``_build`` changes, so old disk-cache entries are ignored.
_CACHE_VERSION = 1
_CACHED_FIELDS = ("directions", "hrirs", "ear_delays", "_raw", "_raw_delays")


@functools.lru_cache(maxsize=8)
def _load_cached(resolved: str, mtime_ns: int, size: int, sample_rate: int, shown: str) -> HRTF:
    """Build once per process; across processes reuse the processed arrays from disk.

    Reading the SOFA file, resampling and finding onsets takes about a second;
    the disk entry (keyed by the file's bytes, the rate and ``_CACHE_VERSION``)
    brings that down to a few milliseconds. Any problem with the cache falls back
    to building from the file.
    """
    from soundstage.cachedir import cache_dir, file_digest

    d = cache_dir("hrtf")
    entry = d / f"{file_digest(resolved, sample_rate, _CACHE_VERSION)}.npz" if d else None
    if entry is not None and entry.exists():
        try:
            with np.load(entry, allow_pickle=False) as z:
                return HRTF(name=str(z["name"]), path=shown, sample_rate=sample_rate, directions=z["directions"],
                            hrirs=z["hrirs"], ear_delays=z["ear_delays"], lead=int(z["lead"]),
                            raw_hrirs=z["_raw"], raw_delays=z["_raw_delays"],
                            notes=tuple(str(n) for n in z["notes"]))
        except (OSError, KeyError, ValueError):
            pass  # unreadable entry: rebuild and overwrite it
    hrtf = _build(Path(resolved), shown, sample_rate)
    if entry is not None:
        try:
            from soundstage.audio_io import atomic_path

            with atomic_path(entry) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, name=hrtf.name, lead=hrtf.lead, notes=np.array(hrtf.notes, dtype=str),
                             **{k: getattr(hrtf, k) for k in _CACHED_FIELDS})
        except OSError:
            pass  # a read-only cache only costs speed
    return hrtf


def _read_sofa(path: Path, shown: str):
    import sofar  # imported here: it pulls in netCDF4, which only HRTF loading needs

    try:
        with warnings.catch_warnings():
            # sofar reports convention upgrades and optional fields as warnings; we
            # check what matters ourselves below.
            warnings.simplefilter("ignore")
            return sofar.read_sofa(str(path), verify=False, verbose=False)
    except Exception as err:  # netCDF4/h5py raise many types for junk files
        msg = " ".join(str(err).split()) or type(err).__name__
        raise HRTFError(
            f"HRTF file '{shown}' cannot be read as SOFA ({msg}); supported: SOFA (netCDF-4) files of "
            f"convention {', '.join(SUPPORTED_CONVENTIONS)}"
        ) from None


def _get(sofa: Any, name: str, default: Any = None) -> Any:
    try:
        return getattr(sofa, name)
    except AttributeError:
        return default


def _positions(sofa: Any, name: str, shown: str, count: int) -> np.ndarray:
    """A SOFA position variable as cartesian metres, shape (count, 3), broadcasting I to M."""
    value = _get(sofa, name)
    if value is None:
        raise HRTFError(f"HRTF file '{shown}' has no {name}")
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] not in (1, count):
        raise HRTFError(f"HRTF file '{shown}': {name} has shape {arr.shape}, expected (1, 3) or ({count}, 3)")
    kind = str(_get(sofa, f"{name}_Type", "cartesian") or "cartesian").lower()
    if name in ("ListenerView", "ListenerUp"):
        kind = str(_get(sofa, "ListenerView_Type", "cartesian") or "cartesian").lower()
    if kind.startswith("spherical") and "harmonic" not in kind:
        units = str(_get(sofa, f"{name}_Units", "degree") or "degree").lower()
        if "rad" in units.split(",")[0]:
            arr = arr.copy()
            arr[:, :2] = np.degrees(arr[:, :2])
        arr = _sph_to_cart(arr[:, 0], arr[:, 1], arr[:, 2])
    elif kind != "cartesian":
        raise HRTFError(f"HRTF file '{shown}': {name}_Type '{kind}' is not supported (use cartesian or spherical)")
    if not np.all(np.isfinite(arr)):
        raise HRTFError(f"HRTF file '{shown}': {name} has non-finite values")
    return np.broadcast_to(arr, (count, 3)).copy()


def _listener_frame(sofa: Any, shown: str, m: int) -> np.ndarray:
    """Rotation matrices (M, 3, 3) whose rows are the listener's x (view), y (left), z (up) in file coordinates."""
    view = _positions(sofa, "ListenerView", shown, m) if _get(sofa, "ListenerView") is not None else np.tile([1.0, 0, 0], (m, 1))
    up = _positions(sofa, "ListenerUp", shown, m) if _get(sofa, "ListenerUp") is not None else np.tile([0, 0, 1.0], (m, 1))
    vn = np.linalg.norm(view, axis=1)
    if np.any(vn < 1e-12):
        raise HRTFError(f"HRTF file '{shown}': ListenerView is the zero vector")
    x = view / vn[:, None]
    z = up - np.einsum("ij,ij->i", up, x)[:, None] * x
    zn = np.linalg.norm(z, axis=1)
    if np.any(zn < 1e-9):
        raise HRTFError(f"HRTF file '{shown}': ListenerUp is parallel to ListenerView, the listener's orientation is undefined")
    z /= zn[:, None]
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _ear_order(ir: np.ndarray, directions: np.ndarray, receiver_y: np.ndarray, shown: str) -> tuple[int, list[str]]:
    """Which receiver is the left ear, checking the metadata against the data.

    The metadata say the receiver with the larger ReceiverPosition y (listener frame) is
    the left ear. The data say so too when, at the measured directions nearest +90 and
    -90 degrees azimuth, that receiver's broadband level is higher for the left source and
    lower for the right one; the test statistic is half the difference of the two
    interaural level differences, and it must exceed 3 dB (KEMAR: about 12 dB). If data
    and metadata disagree we follow the data (a left/right swap is the most audible
    possible error, and measured levels cannot lie about which ear faced the source)
    and warn. If the data are inconclusive we follow the metadata; if both are, receiver
    0 is taken as left, with a warning.

    Returns
    -------
    left : int
        Index (0 or 1) of the left-ear receiver in the file.
    notes : list of str
        Warning texts.
    """
    notes: list[str] = []
    meta = None
    if abs(receiver_y[0] - receiver_y[1]) > 1e-6:
        meta = 0 if receiver_y[0] > receiver_y[1] else 1
    data = None
    level = 10 * np.log10(np.sum(ir.astype(np.float64) ** 2, axis=-1) + 1e-30)  # (M, 2)
    i_left = int(np.argmax(directions @ np.array([0.0, 1.0, 0.0])))
    i_right = int(np.argmax(directions @ np.array([0.0, -1.0, 0.0])))
    near = min(directions[i_left, 1], -directions[i_right, 1]) >= math.cos(_EAR_CHECK_MAX_ANGLE)
    stat = 0.5 * ((level[i_left, 0] - level[i_left, 1]) - (level[i_right, 0] - level[i_right, 1]))
    if near and abs(stat) >= _EAR_CHECK_MIN_DB:
        data = 0 if stat > 0 else 1
    if data is not None and meta is not None and data != meta:
        notes.append(
            f"HRTF file '{shown}': its receiver positions say receiver {meta} is the left ear, but the "
            f"measured levels say receiver {data} is (it is {abs(stat):.1f} dB louder for sources at the "
            f"left); using the data, i.e. treating receiver {data} as the left ear"
        )
        return data, notes
    if data is not None:
        return data, notes
    if meta is not None:
        return meta, notes
    notes.append(
        f"HRTF file '{shown}': cannot tell the left ear from its receiver positions or its data; "
        f"assuming receiver 0 is the left ear"
    )
    return 0, notes


def _onsets(x: np.ndarray) -> np.ndarray:
    """Sub-sample onset (in samples) of each row of ``x`` (shape (K, N)); see ``HRTF`` notes."""
    up = np.abs(resample_poly(x, ONSET_UPSAMPLE, 1, axis=-1))
    peak = up.max(axis=-1)
    thr = peak * 10 ** (ONSET_THRESHOLD_DB / 20)
    above = up >= thr[:, None]
    i = np.argmax(above, axis=-1)  # first sample at or above the threshold
    rows = np.arange(x.shape[0])
    prev = up[rows, np.maximum(i - 1, 0)]
    cur = up[rows, i]
    frac = np.where((i > 0) & (cur > prev), (thr - prev) / np.where(cur > prev, cur - prev, 1.0), 0.0)
    return (i - 1 + frac + (i == 0)) / ONSET_UPSAMPLE


def _fractional_shift(x: np.ndarray, shift: np.ndarray, nfft: int) -> np.ndarray:
    """Delay each row of ``x`` (K, N) by ``shift`` samples (K,), any real value, in a zero-padded FFT of ``nfft``."""
    spec = sfft.rfft(x, n=nfft, axis=-1)
    k = np.arange(spec.shape[-1])
    spec *= np.exp(-2j * np.pi * k[None, :] * shift[:, None] / nfft)
    return sfft.irfft(spec, n=nfft, axis=-1)


def _truncate(aligned: np.ndarray, fade: int) -> np.ndarray:
    """Shortest prefix of the rows of ``aligned`` (K, N) keeping ``KEEP_ENERGY`` of their total
    energy once a half-Hann fade-out over its last ``fade`` samples is applied; shape (K, L)."""
    per_sample = np.sum(aligned**2, axis=0)
    total = per_sample.sum()
    cum = np.cumsum(per_sample)
    ramp = np.cos(0.5 * np.pi * (np.arange(fade) + 1) / fade) ** 2
    ramp[-1] = 0.0  # cos(pi/2) is 6e-17 in floating point; end on a true zero
    start = int(np.searchsorted(cum, KEEP_ENERGY * total)) + 1
    for length in range(max(start, fade), per_sample.size + 1):
        kept = cum[length - fade - 1] if length > fade else 0.0
        kept += np.dot(per_sample[length - fade : length], ramp**2)
        if kept >= KEEP_ENERGY * total:
            break
    out = aligned[:, :length].copy()
    out[:, length - fade :] *= ramp
    return out


def _name(sofa: Any, path: Path, shown: str) -> str:
    if shown == "default":
        return "MIT KEMAR (normal pinna)"
    parts = [str(_get(sofa, "GLOBAL_DatabaseName", "") or "").strip(), str(_get(sofa, "GLOBAL_ListenerShortName", "") or "").strip()]
    name = " ".join(p for p in parts if p)
    return name or path.stem


#: Plausible measurement rates of an HRIR set, Hz (anything else is a damaged file).
MIN_SOFA_RATE, MAX_SOFA_RATE = 8000.0, 384000.0


def _build(path: Path, shown: str, sample_rate: int) -> HRTF:
    sofa = _read_sofa(path, shown)
    convention = str(_get(sofa, "GLOBAL_SOFAConventions", "") or "unknown")
    version = str(_get(sofa, "GLOBAL_SOFAConventionsVersion", "") or "")
    if convention not in SUPPORTED_CONVENTIONS:
        raise HRTFError(
            f"HRTF file '{shown}' uses SOFA convention {convention} {version}".rstrip()
            + f"; supported: {', '.join(SUPPORTED_CONVENTIONS)} (any version); convert the file, e.g. with sofar or the SOFA toolbox"
        )
    ir = np.asarray(_get(sofa, "Data_IR"), dtype=np.float64)
    if ir.ndim != 3:
        raise HRTFError(f"HRTF file '{shown}': Data.IR has shape {ir.shape}, expected (measurements, receivers, samples)")
    m, r, n = ir.shape
    if r != 2:
        raise HRTFError(
            f"HRTF file '{shown}' ({convention}) has {r} receivers; a binaural HRTF needs exactly 2 (left and right ear)"
        )
    if m < 1 or n < 4:
        raise HRTFError(f"HRTF file '{shown}' has {m} measurements of {n} samples; nothing to use")
    if not np.all(np.isfinite(ir)):
        raise HRTFError(f"HRTF file '{shown}': Data.IR has NaN or infinite values")
    emitters = np.asarray(_get(sofa, "EmitterPosition", np.zeros((1, 3))))
    if emitters.ndim >= 1 and emitters.shape[0] != 1:
        raise HRTFError(f"HRTF file '{shown}' has {emitters.shape[0]} emitters; SimpleFreeFieldHRIR needs one")
    fs_in = np.asarray(_get(sofa, "Data_SamplingRate", 0.0), dtype=np.float64).ravel()
    if fs_in.size == 0 or not np.all(fs_in == fs_in[0]) or not fs_in[0] > 0:
        raise HRTFError(f"HRTF file '{shown}': Data.SamplingRate {fs_in.tolist()} is not one positive rate")
    fs_in = float(fs_in[0])
    if not (np.isfinite(fs_in) and MIN_SOFA_RATE <= fs_in <= MAX_SOFA_RATE):
        raise HRTFError(
            f"HRTF file '{shown}': Data.SamplingRate {fs_in:g} Hz is outside "
            f"{MIN_SOFA_RATE:g}-{MAX_SOFA_RATE:g} Hz; the file is damaged or not an HRIR set"
        )

    # Directions in the listener frame.
    src = _positions(sofa, "SourcePosition", shown, m)
    listener = _positions(sofa, "ListenerPosition", shown, m) if _get(sofa, "ListenerPosition") is not None else np.zeros((m, 3))
    rel = src - listener
    if np.any(np.linalg.norm(rel, axis=1) < 1e-9):
        raise HRTFError(f"HRTF file '{shown}': a source position coincides with the listener")
    frame = _listener_frame(sofa, shown, m)
    directions = _unit(np.einsum("mij,mj->mi", frame, rel))

    # Drop repeated directions (e.g. several azimuths at the pole): the triangulation
    # needs distinct vertices. The first measurement of each direction is kept.
    _, keep = np.unique(np.round(directions, 9), axis=0, return_index=True)
    keep = np.sort(keep)
    directions, ir = directions[keep], ir[keep]

    receivers = np.asarray(_get(sofa, "ReceiverPosition", np.zeros((2, 3, 1))), dtype=np.float64)
    if receivers.ndim == 3:
        receivers = receivers[:, :, 0]
    if receivers.shape != (2, 3):
        receivers = np.zeros((2, 3))
    if str(_get(sofa, "ReceiverPosition_Type", "cartesian") or "cartesian").lower().startswith("spherical"):
        receivers = _sph_to_cart(receivers[:, 0], receivers[:, 1], receivers[:, 2])
    left, notes = _ear_order(ir, directions, receivers[:, 1], shown)
    order = [left, 1 - left]
    ir = ir[:, order]

    delay = np.asarray(_get(sofa, "Data_Delay", np.zeros((1, 2))), dtype=np.float64)
    if delay.ndim == 1:
        delay = delay[None, :]
    if delay.ndim != 2 or delay.shape[1] != 2 or delay.shape[0] not in (1, m) or not np.all(np.isfinite(delay)):
        raise HRTFError(f"HRTF file '{shown}': Data.Delay has shape {delay.shape}, expected (1, 2) or ({m}, 2) finite values")
    if delay.shape[0] == m and m != 1:
        delay = delay[keep]
    delay = np.broadcast_to(delay[:, order], (len(directions), 2)) / fs_in  # seconds

    # Zero-pad both sides so the resampling filter can ring freely.
    pad = int(round(_PAD_SECONDS * fs_in))
    k = len(directions) * 2
    flat = np.zeros((n + 2 * pad, k))
    flat[pad : pad + n] = ir.reshape(k, n).T
    # Onsets are found at the file's own rate: band-limiting to a lower rate adds
    # pre-ringing that would move the -20 dB crossing of sharp ipsilateral responses
    # earlier (by 0.3 ms at 16 kHz), so ear delays would depend on the rendering rate.
    onset_s = _onsets(flat.T) / fs_in  # seconds from the start of the padded response
    if fs_in != sample_rate:
        # soxr keeps time 0 at sample 0, so times carry over unchanged.
        flat = soxr.resample(flat, fs_in, sample_rate, quality="VHQ")
    raw = flat.T  # (K, N') at sample_rate

    lead = int(math.ceil(LEAD_SECONDS * sample_rate))
    nfft = sfft.next_fast_len(raw.shape[1] + 2 * lead + 64, real=True)
    aligned = _fractional_shift(raw, lead - onset_s * sample_rate, nfft)[:, : raw.shape[1]]
    hrirs = _truncate(aligned, max(4, int(round(FADE_SECONDS * sample_rate))))
    length = hrirs.shape[1]

    onset_s = onset_s.reshape(-1, 2) - pad / fs_in + delay  # (M, 2) seconds after the file's sample 0
    reference = np.median(onset_s.mean(axis=1))
    ear_delays = onset_s - reference

    return HRTF(
        name=_name(sofa, path, shown),
        path=shown,
        sample_rate=sample_rate,
        directions=directions,
        hrirs=hrirs.reshape(-1, 2, length),
        ear_delays=ear_delays,
        lead=lead,
        raw_hrirs=raw.reshape(-1, 2, raw.shape[1]),
        raw_delays=np.ascontiguousarray(delay),
        notes=tuple(notes),
    )


__all__ = ["HRTF", "HRTFWarning", "SUPPORTED_CONVENTIONS", "load_hrtf"]
