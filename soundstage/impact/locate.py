"""Where did that hit come from? Rank a scene's objects and regions for a recorded hit.

Method
------
1. *Signature of the recording* (``hit_signature``): from the onset on, a long
   windowed spectrum; its modal peaks are the local maxima standing ``threshold_db``
   above a running low percentile over 2/3 octave (the floor that room colouring,
   distance and noise set), each with its height above that floor. Peak
   frequencies survive reverberation, distance and noise; absolute levels do not,
   so only frequencies and relative heights are used.
2. *Prediction per candidate*: every object's modal model (cached) gives, at each
   of its surface samples, the level each mode would ring with for a hit there
   (participation at that point times radiation gain times the contact pulse's
   spectrum, over the mode's damping).
3. *Score*: the candidate's modes define a density over log-frequency, a mixture
   of Gaussians of width ``tolerance`` (model error) weighted by the predicted
   levels on a dB scale, plus a small uniform floor for peaks no mode explains.
   The log-likelihood of the observed peaks (weighted by their heights) is the
   sample's score; an object's score is the log of the mean likelihood over its
   samples (the hit could be anywhere on it), turned into probabilities with a
   softmax over the scene.
4. *Regions*: each object's samples are grouped into up to ``n_regions`` patches
   (farthest-point seeds, nearest-seed assignment); a region's probability is the
   sum of its samples' posterior. ``vertex_scores`` spreads the sample scores to
   the mesh vertices for heat-map painting.

The listener's position is not needed (level-free features), and scene objects
may be posed with any 4x4 matrix, scale and shear included (the modal analysis
uses the stretched shape, so a scaled object has scaled frequencies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import percentile_filter, uniform_filter1d
from scipy.signal import find_peaks

from soundstage.errors import AudioError, GeometryError, SoundstageError
from soundstage.impact.hit import appearance_from_file, resolve_material
from soundstage.impact.materials import Material
from soundstage.impact.mesh import load_mesh
from soundstage.impact.modal import ModalModel, modal_model
from soundstage.impact.synth import contact_time, half_sine_transform
from soundstage.impact.voxel import CELL_BUDGET

#: Analysis band, Hz.
F_LO, F_HI = 40.0, 22000.0
#: Relative frequency tolerance of the mode match (standard deviation in log f) when a
#: model has no error estimate.
TOLERANCE = 0.04
#: Smallest tolerance: spectral resolution, the room's colouring of broad peaks, and
#: what the error estimate misses.
TOLERANCE_MIN = 0.012
#: Weight of the uniform floor of the mode density (peaks no mode explains).
FLOOR_WEIGHT = 0.05
#: Dynamic range (dB) of predicted mode levels that may explain an observed peak.
DYNAMIC_RANGE_DB = 40.0
#: Predicted modes within this range (dB) of the strongest must show up in the recording.
REQUIRED_RANGE_DB = 20.0
#: Spread (dB) of observed mode levels around the prediction (room colouring, noise).
LEVEL_SIGMA_DB = 6.0
#: Weight of the level comparison relative to the frequency match.
LEVEL_WEIGHT = 0.5


class SceneError(SoundstageError):
    """The scene description for ``locate`` is invalid."""


@dataclass
class SceneObject:
    """A candidate object: its mesh in its own frame, its pose and its material.

    Attributes
    ----------
    name : str
    mesh : trimesh.Trimesh
        Object-frame geometry, metres.
    matrix_world : ndarray, shape (4, 4)
        Object frame -> world (Blender's matrix_world), row-major.
    material : Material
    material_reason : str
        "given" or why it was guessed.
    """

    name: str
    mesh: object
    matrix_world: np.ndarray
    material: Material
    material_reason: str = "given"

    def split_pose(self):
        """``matrix_world`` as rotation U (3x3, may include a reflection), stretch P (3x3) and translation t.

        ``world = U @ (P @ x) + t``: the modal model is built on the stretched
        shape ``P x`` so scale and shear change its frequencies as they should.
        """
        from scipy.linalg import polar

        A = np.asarray(self.matrix_world, dtype=float)[:3, :3]
        if not np.all(np.isfinite(A)) or abs(np.linalg.det(A)) < 1e-12:
            raise SceneError(f"object '{self.name}': matrix_world is singular or not finite")
        U, P = polar(A, side="right")
        return U, P, np.asarray(self.matrix_world, dtype=float)[:3, 3]


def _matrix(value, where: str) -> np.ndarray:
    if value is None:
        return np.eye(4)
    try:
        m = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise SceneError(f"{where}: matrix_world must be 16 numbers") from None
    if m.size != 16 or not np.all(np.isfinite(m)):
        raise SceneError(f"{where}: matrix_world must be 16 finite numbers (row-major 4x4)")
    return m.reshape(4, 4)


def load_scene(path) -> list:
    """Read the candidate objects of a scene.

    Two forms:

    * JSON: ``{"objects": [{"name": "pan", "mesh": "pan.obj", "material": "steel",
      "appearance": {...}, "matrix_world": [16 numbers, row-major]}, ...]}``;
      ``mesh`` is relative to the JSON file; ``material`` is optional (guessed from
      ``appearance`` or the mesh file's render material when absent).
    * A mesh scene file (.glb, .gltf, .obj with several objects...): each node with
      geometry is an object, posed by its node transform, its material guessed from
      its render material.

    Returns
    -------
    list of SceneObject

    Raises
    ------
    SceneError, GeometryError
    """
    import trimesh

    p = Path(path)
    if not p.is_file():
        raise SceneError(f"{p}: scene file not found")
    objects = []
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SceneError(f"{p}: not a readable JSON scene ({str(e)[:100]})") from None
        items = doc.get("objects") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise SceneError(f"{p}: needs a non-empty 'objects' list")
        for i, item in enumerate(items):
            where = f"{p}: objects[{i}]"
            if not isinstance(item, dict) or "mesh" not in item:
                raise SceneError(f"{where}: needs a 'mesh' path")
            name = str(item.get("name", f"object{i}"))
            mesh_path = (p.parent / item["mesh"]).resolve()
            appearance = item.get("appearance")
            if item.get("material") is None and appearance is None:
                appearance = appearance_from_file(mesh_path) if mesh_path.is_file() else None
            mat, reason = resolve_material(item.get("material"), appearance)
            objects.append(SceneObject(name, load_mesh(mesh_path), _matrix(item.get("matrix_world"), where),
                                       mat, reason))
    else:
        try:
            scene = trimesh.load(str(p), force="scene", process=False)
        except Exception as e:
            raise SceneError(f"{p}: cannot read scene ({type(e).__name__}: {str(e)[:100]})") from None
        for node in scene.graph.nodes_geometry:
            transform, gname = scene.graph[node]
            geom = scene.geometry[gname]
            if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
                continue
            appearance = None
            mat = getattr(getattr(geom, "visual", None), "material", None)
            if mat is not None:
                appearance = {"name": getattr(mat, "name", None) or str(node)}
                if isinstance(mat, trimesh.visual.material.PBRMaterial):
                    if mat.metallicFactor is not None:
                        appearance["metallic"] = float(mat.metallicFactor)
                    if mat.roughnessFactor is not None:
                        appearance["roughness"] = float(mat.roughnessFactor)
                    if mat.baseColorFactor is not None:
                        c = np.asarray(mat.baseColorFactor, dtype=float)[:3]
                        appearance["base_color"] = tuple((c / 255.0 if c.max() > 1 else c).tolist())
            else:
                appearance = {"name": str(node)}
            m, reason = resolve_material(None, appearance)
            objects.append(SceneObject(str(node), geom, np.asarray(transform, dtype=float), m, reason))
    if not objects:
        raise SceneError(f"{p}: no object with triangles in the scene")
    return objects


# --- the recording's signature ---------------------------------------------------------


@dataclass
class HitSignature:
    """Modal peaks of a recorded hit.

    Attributes
    ----------
    freqs : ndarray, shape (P,), Hz
    height_db : ndarray, shape (P,)
        Height above the local spectral floor, dB.
    band : tuple (lo, hi), Hz
        Band that was searched.
    onset_s : float
        Where the analysis window starts, s.
    grid_freqs, grid_height : ndarray, shape (G,)
        The whole smoothed spectrum's height above its floor (dB) on a
        1/600-octave grid, for the level comparison.
    """

    freqs: np.ndarray
    height_db: np.ndarray
    band: tuple
    onset_s: float
    grid_freqs: np.ndarray = None
    grid_height: np.ndarray = None


def hit_signature(audio: np.ndarray, sample_rate: float, *, window_s: float = 1.0, threshold_db: float = 10.0,
                  prominence_db: float = 6.0, max_peaks: int = 40) -> HitSignature:
    """Find the modal peaks of a recorded hit.

    Parameters
    ----------
    audio : ndarray, shape (n,)
        Mono recording (any level).
    sample_rate : float, Hz
    window_s : float
        Analysis length after the onset, s.
    threshold_db : float
        Minimum height of a peak above the running floor (20th percentile over 2/3 octave), dB.
    prominence_db : float
        Minimum topographic prominence of a peak, dB.
    max_peaks : int
        Keep at most this many peaks (the highest).

    Returns
    -------
    HitSignature
    """
    x = np.asarray(audio, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)) or not np.any(x):
        raise AudioError("hit recording is empty, silent or has non-finite samples")
    fs = float(sample_rate)
    # Onset: first point where the 1-ms energy envelope reaches a tenth of its maximum
    # (the hit itself, not the reverberant build-up after it).
    env = uniform_filter1d(x * x, max(1, int(fs * 0.001)))
    start = int(np.argmax(env >= 0.1 * env.max()))
    start = max(0, start - int(0.002 * fs))
    n = min(len(x) - start, int(window_s * fs))
    seg = x[start : start + n]
    # Flat at the start (the hit), half-Hann fade over the last 30 %.
    w = np.ones(n)
    nf = max(1, int(0.3 * n))
    w[-nf:] = 0.5 * (1 + np.cos(np.pi * np.arange(nf) / nf))
    nfft = 1 << int(np.ceil(np.log2(max(2 * n, 8192))))
    spec = np.abs(np.fft.rfft(seg * w, nfft)) ** 2
    f = np.fft.rfftfreq(nfft, 1 / fs)
    hi = min(F_HI, 0.46 * fs)
    # Average the power spectrum into log-frequency bins (1/600 octave), so that
    # smoothing and the running floor have the same relative width at every
    # frequency. Bins narrower than the FFT's resolution (low frequencies) take the
    # FFT bin they fall in.
    n_log = int(np.log2(hi / F_LO) * 600)
    edges = F_LO * 2 ** (np.arange(n_log + 1) / 600)
    idx = np.clip(np.searchsorted(f, edges), 0, len(f) - 1)
    csum = np.concatenate([[0.0], np.cumsum(spec)])
    counts = idx[1:] - idx[:-1]
    p = np.where(counts > 0, (csum[idx[1:]] - csum[idx[:-1]]) / np.maximum(counts, 1), spec[idx[:-1]])
    # Smooth over 1/40 octave: tames the noise's bin-to-bin scatter and the fine
    # ripple a room imprints on a broad (well-damped) mode.
    raw = p
    p = uniform_filter1d(p, 15)
    level = 10 * np.log10(p + 1e-30)
    # Floor: the 20th percentile over 2/3 octave, computed on blocks of 8 bins. A
    # low percentile rather than the median, because a lightly damped mode's skirts
    # or a dense cluster of modes can fill half of the window.
    nb = len(level) // 8
    blocks = np.median(level[: nb * 8].reshape(nb, 8), axis=1)
    fl = percentile_filter(blocks, 20, size=51, mode="reflect")
    floor = np.interp(np.arange(len(level)), np.arange(nb) * 8 + 3.5, fl)
    height = level - floor
    # A peak must stand above the floor and also above the valleys that separate
    # it from higher ground (prominence): bumps on the skirt of a broad mode are
    # the room's ripple, not modes of their own.
    peaks, _ = find_peaks(height, height=threshold_db, prominence=prominence_db,
                          distance=15)  # >= 1/40 octave apart
    # A mode is a local peak of the spectrum itself, not only of its height above the
    # floor estimate (which has broad humps where two strong modes' skirts meet):
    # it must stand 3 dB above the spectrum 1/12 octave away on both sides.
    side = 50
    lv = np.pad(level, side, mode="edge")
    contrast = level[peaks] - np.maximum(lv[peaks], lv[peaks + 2 * side])
    peaks = peaks[contrast >= 3.0]
    # Smoothing flattens a narrow peak into a plateau whose higher edge find_peaks
    # may pick; the unsmoothed spectrum within the plateau gives the frequency.
    offs = np.arange(-7, 8)
    win = np.clip(peaks[:, None] + offs[None, :], 0, len(raw) - 1)
    peaks = win[np.arange(len(peaks)), np.argmax(raw[win], axis=1)] if len(peaks) else peaks
    fc = np.sqrt(edges[:-1] * edges[1:])
    order = np.argsort(-height[peaks])[:max_peaks]
    peaks = peaks[order]
    return HitSignature(freqs=fc[peaks], height_db=height[peaks], band=(F_LO, hi), onset_s=start / fs,
                        grid_freqs=fc, grid_height=height)


# --- predictions and scores ----------------------------------------------------------


def predicted_levels(model: ModalModel, force: float = 20.0, window_s: float = 1.0) -> np.ndarray:
    """Predicted spectral peak level (dB, arbitrary reference) of each mode at each surface sample.

    A mode of amplitude A and decay rate s gives a spectral peak of about
    ``A / s`` when it dies within the window, ``A * window`` otherwise.

    Returns
    -------
    ndarray, shape (S, K), dB
    """
    mat = model.material
    zeta = mat.damping_ratio(model.frequencies)
    w = 2 * np.pi * model.frequencies
    lam = -zeta * w + 1j * w * np.sqrt(1 - zeta**2)
    pulse = contact_time(mat, force)
    pulse_gain = np.abs(half_sine_transform(lam, pulse, pulse)) * force
    decay = zeta * w
    amp = model.radiation_gain() * pulse_gain * np.minimum(1.0 / np.maximum(decay, 1e-9), window_s)
    a = np.abs(model.surface_modes.astype(float)) * amp[None, :]
    return 20 * np.log10(a + 1e-30)


def _ramp_weights(levels_db: np.ndarray, range_db: float) -> np.ndarray:
    """Linear-in-dB weights of levels within ``range_db`` of each row's maximum, rows summing to 1."""
    w = np.clip(levels_db - (levels_db.max(axis=-1, keepdims=True) - range_db), 0.0, None)
    return w / np.maximum(w.sum(axis=-1, keepdims=True), 1e-30)


def sample_log_likelihood(sig: HitSignature, freqs: np.ndarray, levels_db: np.ndarray,
                          tolerance=TOLERANCE) -> np.ndarray:
    """Match score of the observed peaks against each candidate hit point's predicted modes.

    Two terms, both log-densities over log-frequency:

    * forward: each observed peak (weighted by its height) under the candidate's
      mode mixture (predicted levels within ``DYNAMIC_RANGE_DB`` of the strongest,
      weighted linearly in dB) -- the candidate must explain what was heard;
    * reverse: each strongly predicted mode (within ``REQUIRED_RANGE_DB``) under the
      mixture of observed peaks -- what the candidate says must ring was heard.
      Without it a candidate with many modes explains any set of peaks.

    Parameters
    ----------
    sig : HitSignature
    freqs : ndarray, shape (K,), Hz
        The candidate object's modal frequencies.
    levels_db : ndarray, shape (S, K)
        Predicted levels at S points.
    tolerance : float or ndarray, shape (K,)
        Standard deviation of the match in natural-log frequency (relative error),
        one for all modes or one per mode.

    Returns
    -------
    ndarray, shape (S,)
    """
    lo, hi = sig.band
    inband = (freqs >= lo) & (freqs <= hi)
    S = levels_db.shape[0]
    if len(sig.freqs) == 0:
        return np.zeros(S)
    lf_obs = np.log(np.asarray(sig.freqs))
    v = np.clip(sig.height_db / 10.0, 0.0, 4.0)
    uniform = 1.0 / np.log(hi / lo)
    if not inband.any():
        return np.full(S, 2 * float(np.sum(v * np.log(FLOOR_WEIGHT * uniform))))
    L = levels_db[:, inband]
    lf_modes = np.log(freqs[inband])
    tol = np.broadcast_to(np.asarray(tolerance, dtype=float), freqs.shape)[inband][None, :]
    g = np.exp(-0.5 * ((lf_obs[:, None] - lf_modes[None, :]) / tol) ** 2) / (tol * np.sqrt(2 * np.pi))
    # forward: observed peaks under the candidate's modes
    dens_f = (1 - FLOOR_WEIGHT) * _ramp_weights(L, DYNAMIC_RANGE_DB) @ g.T + FLOOR_WEIGHT * uniform  # (S, P)
    forward = np.log(dens_f) @ v
    # reverse: strongly predicted modes under the observed peaks
    dens_r = (1 - FLOOR_WEIGHT) * (v / v.sum()) @ g + FLOOR_WEIGHT * uniform  # (K,)
    reverse = _ramp_weights(L, REQUIRED_RANGE_DB) @ np.log(dens_r)  # (S,)
    return forward + v.sum() * reverse


def level_log_likelihood(sig: HitSignature, freqs: np.ndarray, levels_db: np.ndarray, tolerance,
                         sigma_db: float = LEVEL_SIGMA_DB) -> np.ndarray:
    """How well the relative mode levels predicted at each point match the recording.

    At each predicted mode the recording's height above its floor (the highest
    within the mode's tolerance) is compared with the predicted level plus an
    offset fitted per point (distance, force and microphone are unknown), the
    prediction being clipped at the floor (a mode predicted below the noise is
    not expected to show). Residuals are scored as Gaussian with ``sigma_db``,
    which absorbs the room's colouring. This is what separates points on the
    same object: which modes ring, and how strongly, depends on where it is hit.

    Returns
    -------
    ndarray, shape (S,)
    """
    lo, hi = sig.band
    inband = (freqs >= lo) & (freqs <= hi)
    S = levels_db.shape[0]
    if sig.grid_freqs is None or not inband.any():
        return np.zeros(S)
    f = freqs[inband]
    tol = np.broadcast_to(np.asarray(tolerance, dtype=float), freqs.shape)[inband]
    lg = np.log(sig.grid_freqs)
    a = np.searchsorted(lg, np.log(f) - tol)
    b = np.maximum(np.searchsorted(lg, np.log(f) + tol), a + 1)
    b = np.minimum(b, len(lg))
    a = np.minimum(a, b - 1)
    obs = np.maximum.reduceat(np.r_[sig.grid_height, 0.0], np.stack([a, b], 1).ravel())[::2]
    obs = np.clip(obs, 0.0, None)  # (K,)
    L = levels_db[:, inband]
    rel = L - L.max(axis=1, keepdims=True)
    use = rel > -DYNAMIC_RANGE_DB  # modes that could matter at each point
    # Offset: align the predicted strongest modes with what was observed there.
    seen = use & (obs[None, :] > 0)
    off = np.where(seen.any(axis=1), np.nanmedian(np.where(seen, obs[None, :] - rel, np.nan), axis=1), 0.0)
    pred = np.clip(rel + off[:, None], 0.0, None)
    r = np.where(use, pred - obs[None, :], 0.0)
    return -0.5 * np.sum(r**2, axis=1) / sigma_db**2


def _regions(points: np.ndarray, n_regions: int) -> np.ndarray:
    """Region label of each point: farthest-point seeds, nearest-seed assignment."""
    n_regions = max(1, min(n_regions, len(points)))
    seeds = [0]
    d = np.linalg.norm(points - points[0], axis=1)
    for _ in range(1, n_regions):
        seeds.append(int(np.argmax(d)))
        d = np.minimum(d, np.linalg.norm(points - points[seeds[-1]], axis=1))
    dist = np.linalg.norm(points[:, None, :] - points[seeds][None, :, :], axis=2)
    return np.argmin(dist, axis=1)


@dataclass
class ObjectScore:
    """Result for one object.

    Attributes
    ----------
    name : str
    probability : float
        Posterior that the hit came from this object (sums to 1 over the scene).
    log_likelihood : float
    best_point : ndarray, shape (3,)
        World position of the most likely surface sample.
    sample_points : ndarray, shape (S, 3)
        World positions of the scored surface samples.
    sample_scores : ndarray, shape (S,)
        Posterior of each sample (sums to ``probability`` over the object).
    region_labels : ndarray of int, shape (S,)
    region_centers : ndarray, shape (R, 3), world
    region_probabilities : ndarray, shape (R,)
    material : str
    material_reason : str
    """

    name: str
    probability: float
    log_likelihood: float
    best_point: np.ndarray
    sample_points: np.ndarray
    sample_scores: np.ndarray
    region_labels: np.ndarray
    region_centers: np.ndarray
    region_probabilities: np.ndarray
    material: str
    material_reason: str
    _obj: SceneObject = field(default=None, repr=False)
    _relative: np.ndarray = field(default=None, repr=False)

    def vertex_scores(self, k: int = 4) -> np.ndarray:
        """Heat-map value per mesh vertex, in [0, 1] (1 = the scene's most likely sample).

        Inverse-distance average of the ``k`` nearest samples' relative likelihoods.

        Returns
        -------
        ndarray, shape (V,) for the object's mesh vertices (in mesh order)
        """
        from scipy.spatial import cKDTree

        obj = self._obj
        M = np.asarray(obj.matrix_world, dtype=float)
        v = np.asarray(obj.mesh.vertices) @ M[:3, :3].T + M[:3, 3]
        k = min(k, len(self.sample_points))
        d, i = cKDTree(self.sample_points).query(v, k=k)
        d, i = d.reshape(len(v), k), i.reshape(len(v), k)
        w = 1.0 / np.maximum(d, 1e-9)
        return (w * self._relative[i]).sum(axis=1) / w.sum(axis=1)


@dataclass
class LocateResult:
    """Ranking of the scene's objects for one hit.

    Attributes
    ----------
    objects : list of ObjectScore, most likely first
    signature : HitSignature
    """

    objects: list
    signature: HitSignature

    def to_dict(self, vertex_scores: bool = False) -> dict:
        out = {"peaks_hz": [round(float(f), 2) for f in self.signature.freqs], "objects": []}
        for rank, o in enumerate(self.objects, 1):
            d = dict(rank=rank, name=o.name, probability=float(o.probability),
                     log_likelihood=float(o.log_likelihood), best_point=[float(x) for x in o.best_point],
                     material=o.material, material_reason=o.material_reason,
                     regions=[dict(center=[float(x) for x in c], probability=float(p))
                              for c, p in zip(o.region_centers, o.region_probabilities)])
            if vertex_scores:
                d["vertex_scores"] = [round(float(x), 4) for x in o.vertex_scores()]
            out["objects"].append(d)
        return out


def object_models(objects, *, budget: int = CELL_BUDGET, cache: bool = True, progress=None) -> list:
    """Modal model of each scene object (built on its stretched shape, from the cache when possible)."""
    import trimesh

    models = []
    for i, obj in enumerate(objects):
        if progress:
            progress(i / max(1, len(objects)), f"modes of {obj.name}")
        U, P, t = obj.split_pose()
        local = np.asarray(obj.mesh.vertices, dtype=float) @ P.T
        mesh = trimesh.Trimesh(local, np.asarray(obj.mesh.faces), process=False)
        try:
            models.append(modal_model(mesh, obj.material, budget=budget, cache=cache, name=obj.name))
        except GeometryError as e:
            # One unusable object must not stop the ranking of the others.
            models.append(e)
    return models


def locate(objects, audio: np.ndarray, sample_rate: float, *, models=None, n_regions: int = 8,
           budget: int = CELL_BUDGET, cache: bool = True, tolerance: float | None = None) -> LocateResult:
    """Rank ``objects`` by how likely ``audio`` is a hit on them, and regions on each.

    Parameters
    ----------
    objects : list of SceneObject
    audio : ndarray, shape (n,)
        The recorded hit (mono, any level, may include reverberation and noise).
    sample_rate : float, Hz
    models : list of ModalModel, optional
        Precomputed ``object_models(objects)``.
    n_regions : int
        Regions per object.
    budget : int
        Modal-analysis cell budget when models are computed here.
    tolerance : float, optional
        Relative frequency tolerance of the mode match; by default each mode's
        estimated discretisation error combined with ``TOLERANCE_MIN``.

    Returns
    -------
    LocateResult
    """
    if not objects:
        raise SceneError("no candidate objects to rank")
    sig = hit_signature(audio, sample_rate)
    models = models if models is not None else object_models(objects, budget=budget, cache=cache)
    per_obj = []
    for obj, model in zip(objects, models):
        U, P, t = obj.split_pose()
        if isinstance(model, Exception):
            per_obj.append((obj, None, np.full(1, -np.inf), np.zeros((1, 3))))
            continue
        if tolerance is not None:
            tol = tolerance
        elif model.frequency_error is not None:
            tol = np.sqrt(TOLERANCE_MIN**2 + np.asarray(model.frequency_error) ** 2)
        else:
            tol = TOLERANCE
        levels = predicted_levels(model)
        ll = sample_log_likelihood(sig, model.frequencies, levels, tol)
        if LEVEL_WEIGHT:
            ll = ll + LEVEL_WEIGHT * level_log_likelihood(sig, model.frequencies, levels, tol)
        world = model.surface_points @ U.T + t
        per_obj.append((obj, model, ll, world))
    all_ll = np.concatenate([p[2] for p in per_obj])
    top = np.max(all_ll[np.isfinite(all_ll)]) if np.any(np.isfinite(all_ll)) else 0.0
    # Each object gets prior 1/N, spread evenly over its samples.
    obj_ll = np.array([np.log(np.mean(np.exp(p[2] - top))) + top if np.any(np.isfinite(p[2])) else -np.inf
                       for p in per_obj])
    post = np.exp(obj_ll - np.max(obj_ll))
    post /= post.sum()
    scores = []
    for (obj, model, ll, world), prob, oll in zip(per_obj, post, obj_ll):
        if model is None:
            scores.append(ObjectScore(obj.name, 0.0, float("-inf"), np.full(3, np.nan), world, np.zeros(1),
                                      np.zeros(1, int), world, np.zeros(1), obj.material.name, obj.material_reason,
                                      obj, np.zeros(1)))
            continue
        rel = np.exp(ll - top)
        samp = prob * rel / rel.sum()
        labels = _regions(world, n_regions)
        R = labels.max() + 1
        centers = np.array([world[labels == r].mean(axis=0) for r in range(R)])
        rprob = np.array([samp[labels == r].sum() for r in range(R)])
        scores.append(ObjectScore(obj.name, float(prob), float(oll), world[int(np.argmax(ll))], world, samp, labels,
                                  centers, rprob, obj.material.name, obj.material_reason, obj, rel))
    scores.sort(key=lambda s: -s.probability)
    return LocateResult(scores, sig)
