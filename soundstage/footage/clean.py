"""Outlier removal and gap filling for a 3-D track (Sonic4D's DBSCAN + interpolation).

Why residuals: DBSCAN on raw positions cannot tell a wild back-projection (the marker
slipped onto the wall behind) from a part of the path that is simply far away. The
time structure says which is which: a moving object is close to where it was a few
frames ago. So each sample is compared with a robust straight line (Theil-Sen)
through its neighbours in time (robust to the outliers themselves while fewer than
about 29 % of a window are wild), and DBSCAN clusters those 3-D residuals. The true samples form one dense
cluster around zero; wild samples are scattered far from it and come out as noise
(or as small clusters, which are dropped: only the cluster nearest zero is kept).
The local lines are fitted again to the inliers only and the clustering repeated
once, so a burst of outliers that pulled the first median is judged against a clean
reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.signal import savgol_filter

from soundstage.errors import SoundstageError

#: Samples per local robust line fit (the reference path the residuals are taken from).
DEFAULT_WINDOW = 11
#: Smallest default DBSCAN radius, metres (tracks with almost no noise).
MIN_EPS = 0.02


@dataclass
class CleanResult:
    """A cleaned, gap-free path.

    Attributes
    ----------
    frames : ndarray of int, shape (F,)
        Every frame from the first to the last input frame.
    positions : ndarray, shape (F, 3)
        Metres; inliers as measured (or smoothed), other frames interpolated (PCHIP
        between inliers) or held (before the first / after the last inlier).
    inlier : ndarray of bool, shape (F,)
        The frame had a measurement that was kept.
    filled : ndarray of bool, shape (F,)
        The frame's position is interpolated or held (no kept measurement).
    outlier_frames : list of int
        Frames whose measurement DBSCAN rejected.
    gap_frames : list of int
        Frames with no measurement at all (missing or NaN in the input).
    eps, min_samples : float, int
        The DBSCAN parameters used.
    """

    frames: np.ndarray
    positions: np.ndarray
    inlier: np.ndarray
    filled: np.ndarray
    outlier_frames: list = field(default_factory=list)
    gap_frames: list = field(default_factory=list)
    eps: float = 0.0
    min_samples: int = 0

    def summary(self) -> dict:
        return {"frames": int(len(self.frames)), "inliers": int(self.inlier.sum()),
                "outliers": len(self.outlier_frames), "gaps": len(self.gap_frames),
                "filled": int(self.filled.sum()), "eps_m": float(self.eps), "min_samples": int(self.min_samples)}


def local_line(frames: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Robust local straight-line fit of ``x`` against time, evaluated at each sample.

    For each sample, a Theil-Sen line (slope = median of the pairwise slopes, intercept
    = median of ``x - slope * t``) through the ``window`` samples around it (the window
    slides inwards at the ends rather than shrinking, so a moving path is not biased
    there). Unlike a running median it has no lag at the ends of a moving path, it uses
    real frame numbers (gaps are fine), and its breakdown point is about 29 %.
    Vectorised fast path; ``local_line_reference`` (scipy.stats.theilslopes per window)
    is the slow reference it is tested against.

    Parameters
    ----------
    frames : ndarray, shape (M,)
        Increasing sample times (frame numbers).
    x : ndarray, shape (M, D)
    window : int
        Samples per fit (at most M, at least 2).

    Returns
    -------
    ndarray, shape (M, D)
    """
    t = np.asarray(frames, dtype=float)
    m = len(t)
    w = min(window, m)
    start = np.clip(np.arange(m) - w // 2, 0, m - w)
    idx = start[:, None] + np.arange(w)  # (M, w)
    tw, xw = t[idx], x[idx]  # (M, w), (M, w, D)
    j, k = np.triu_indices(w, 1)
    slopes = (xw[:, k] - xw[:, j]) / (tw[:, k] - tw[:, j])[:, :, None]  # (M, pairs, D)
    b = np.median(slopes, axis=1)  # (M, D)
    a = np.median(xw - b[:, None, :] * tw[:, :, None], axis=1)
    return a + b * t[:, None]


def local_line_reference(frames: np.ndarray, x: np.ndarray, window: int) -> np.ndarray:
    """Slow reference for ``local_line``: ``scipy.stats.theilslopes`` per window and column."""
    from scipy.stats import theilslopes

    t = np.asarray(frames, dtype=float)
    m = len(t)
    w = min(window, m)
    out = np.empty_like(x, dtype=float)
    for i in range(m):
        s = min(max(i - w // 2, 0), m - w)
        for d in range(x.shape[1]):
            # method="joint" takes the intercept as median(y - slope * x), as local_line does.
            slope, icpt, _, _ = theilslopes(x[s:s + w, d], t[s:s + w], method="joint")
            out[i, d] = icpt + slope * t[i]
    return out


def _dbscan_inliers(pos: np.ndarray, ref: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    try:  # imported here so the rest of soundstage (and its command line) works without the extra
        from sklearn.cluster import DBSCAN
    except ImportError:
        raise SoundstageError("cleaning a track needs scikit-learn: install Soundstage with its 'tracks' extra "
                              "(pip install -e '.[tracks]')") from None
    resid = pos - ref
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(resid)
    keep = labels >= 0
    if not keep.any():
        return np.zeros(len(pos), dtype=bool)
    # The cluster whose median residual is nearest zero is the path; others are
    # groups of outliers that happen to agree with each other.
    best, best_d = None, np.inf
    for lab in np.unique(labels[keep]):
        d = np.linalg.norm(np.median(resid[labels == lab], axis=0))
        if d < best_d:
            best, best_d = lab, d
    return labels == best


def clean_path(frames, positions, *, eps: float | None = None, min_samples: int | None = None,
               window: int = DEFAULT_WINDOW, smooth: int = 0) -> CleanResult:
    """Remove outliers with DBSCAN, fill gaps by interpolation, optionally smooth.

    Parameters
    ----------
    frames : array_like of int, shape (N,)
        Frame numbers of the measurements (any order, no repeats).
    positions : array_like, shape (N, 3)
        Measured positions, metres; NaN rows are gaps.
    eps : float, optional
        DBSCAN radius in metres, on the residuals from the local lines. Default:
        three times the median residual length (about 4.6 sigma of isotropic
        Gaussian noise), at least ``MIN_EPS``.
    min_samples : int, optional
        DBSCAN core size. Default: 5 (at most a third of the measurements).
    window : int
        Samples per local robust line fit (>= 4; see ``local_line``).
    smooth : int
        Savitzky-Golay window in frames (odd, quadratic) applied to the final path;
        0 (default) does not smooth.

    Returns
    -------
    CleanResult

    Raises
    ------
    SoundstageError
        No finite position at all, or bad arguments.
    """
    f = np.atleast_1d(np.asarray(frames)).astype(int)
    p = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(f) != len(p):
        raise SoundstageError(f"clean_path: {len(f)} frames but {len(p)} positions")
    if len(set(f.tolist())) != len(f):
        raise SoundstageError("clean_path: a frame appears twice")
    if window < 4:
        raise SoundstageError(f"clean_path: window must be at least 4 samples, got {window}")
    order = np.argsort(f)
    f, p = f[order], p[order]
    ok = np.isfinite(p).all(axis=1)
    if not ok.any():
        raise SoundstageError("clean_path: no frame has a 3-D position; nothing to clean")
    fv, pv = f[ok], p[ok]
    m = len(pv)
    if min_samples is None:
        min_samples = int(max(2, min(5, m // 3)))
    keep = np.ones(m, dtype=bool)
    used_eps = eps
    if m >= 3:
        ref = local_line(fv, pv, window)
        if used_eps is None:
            used_eps = max(3.0 * float(np.median(np.linalg.norm(pv - ref, axis=1))), MIN_EPS)
        keep = _dbscan_inliers(pv, ref, used_eps, min_samples)
        if keep.sum() >= 3:
            # Second pass: the reference from the inliers only, interpolated to every sample.
            ref2_in = local_line(fv[keep], pv[keep], window)
            ref2 = np.stack([np.interp(fv, fv[keep], ref2_in[:, k]) for k in range(3)], axis=1)
            keep = _dbscan_inliers(pv, ref2, used_eps, min_samples)
        if not keep.any():
            raise SoundstageError(f"clean_path: DBSCAN kept no sample (eps {used_eps:.3g} m, min_samples "
                                  f"{min_samples}); raise eps")
    all_frames = np.arange(f[0], f[-1] + 1)
    fk, pk = fv[keep], pv[keep]
    if len(fk) >= 2:
        interp = PchipInterpolator(fk, pk, axis=0, extrapolate=False)
        out = interp(np.clip(all_frames, fk[0], fk[-1]))  # clip: hold the ends, never extrapolate
    else:
        out = np.repeat(pk, len(all_frames), axis=0)
    if smooth:
        if smooth < 3 or smooth % 2 == 0:
            raise SoundstageError(f"clean_path: smooth must be 0 or an odd number >= 3, got {smooth}")
        if smooth <= len(out):
            out = savgol_filter(out, smooth, 2, axis=0, mode="interp")
    inlier = np.isin(all_frames, fk)
    outliers = fv[~keep].tolist()
    gaps = sorted(set(all_frames.tolist()) - set(fv.tolist()))
    return CleanResult(all_frames, out, inlier, ~inlier, [int(x) for x in outliers], [int(x) for x in gaps],
                       float(used_eps or 0.0), int(min_samples))
