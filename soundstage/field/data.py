"""Training data for learned acoustic fields: captures, RWAVS scenes, impulse-response sets.

Three inputs are read, all into the same in-memory objects:

* the **capture layout** (``capture.json``, see ``docs/field.md``): one long binaural
  recording, the source audio the speaker played, the speaker's position, and camera
  poses from COLMAP or a nerfstudio ``transforms.json``;
* the **RWAVS layout** of AV-NeRF (Liang et al., NeurIPS 2023): per scene a
  ``binaural_syn.wav``, a ``source_syn.wav``, ``transforms_scale_{train,val}.json``
  with ``camera_path`` entries whose ``file_path`` stem is the time in seconds, and a
  ``position.json`` (``{scene: {"source_position": [...]}}``) beside the scene folder;
* an **impulse-response set** (``irs.json`` + ``irs.npy``): binaural impulse responses
  at listener poses, for the impulse-response field.

``synthetic_walk`` and ``synthetic_irs`` make both kinds with the engine (a shoebox,
the KEMAR HRTF, 20 dB SNR noise) for tests and the demo.

Conventions: times are seconds on the recording's clock; poses are Blender camera
matrices (the listener looks along local -Z, its right ear is local +X); the azimuth of
the source is measured in the listener's horizontal plane, 0 ahead and +pi/2 to the
left, in (-pi, pi].
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstage.errors import AudioError, SoundstageError

#: Sample rate of the fields (AV-NeRF's RWAVS setting), Hz.
FIELD_RATE = 22050
CAPTURE_FORMAT = "soundstage-capture"
IRSET_FORMAT = "soundstage-irs"
DATA_VERSION = 1
SPEED_OF_SOUND = 343.0

#: A furnished 6 x 5 x 3 m room (T30 about 0.45 s) used by the synthetic data.
DEFAULT_ROOM = {
    "type": "shoebox", "min": [0.0, 0.0, 0.0], "max": [6.0, 5.0, 3.0],
    "materials": {
        "floor": "carpet_cotton",
        "ceiling": {"absorption": 0.2},
        "walls": {"absorption": {"125": 0.15, "250": 0.18, "500": 0.22, "1000": 0.25, "2000": 0.28,
                                 "4000": 0.3, "8000": 0.3}},
    },
}
DEFAULT_SOURCE = [3.7, 2.3, 1.2]


class FieldDataError(SoundstageError):
    """A capture, RWAVS scene or impulse-response set is missing, malformed or inconsistent."""


# --------------------------------------------------------------------------- geometry helpers
def listener_axes(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and listener frames (ahead, left, up columns) of camera matrices, shapes (n, 3), (n, 3, 3)."""
    from soundstage.poses import listener_frame

    return listener_frame(np.asarray(matrices, dtype=float).reshape(-1, 4, 4))


def source_azimuth(positions: np.ndarray, frames: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Azimuth of the source seen from each listener, radians in (-pi, pi].

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
    frames : ndarray, shape (n, 3, 3)
        World-from-listener rotations whose columns are the ahead, left and up axes.
    source : ndarray, shape (3,)

    Returns
    -------
    ndarray, shape (n,)
        0 when the source is straight ahead, +pi/2 on the left, -pi/2 on the right.
    """
    v = np.asarray(source, float)[None, :] - np.asarray(positions, float)
    local = np.einsum("nji,nj->ni", np.asarray(frames, float), v)  # R^T v
    return np.arctan2(local[:, 1], local[:, 0])


def source_elevation(positions: np.ndarray, frames: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Elevation of the source above the listener's horizontal plane, radians in [-pi/2, pi/2], shape (n,)."""
    v = np.asarray(source, float)[None, :] - np.asarray(positions, float)
    local = np.einsum("nji,nj->ni", np.asarray(frames, float), v)
    return np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1]))


class PosePath:
    """Smooth listener poses between timed camera matrices (the engine's own splines).

    Parameters
    ----------
    times : ndarray, shape (P,)
        Strictly increasing seconds.
    matrices : ndarray, shape (P, 4, 4)
    """

    def __init__(self, times: np.ndarray, matrices: np.ndarray):
        from soundstage.poses import PositionPath, RotationPath

        self.times = np.asarray(times, float)
        pos, rot = listener_axes(matrices)
        self._pos = PositionPath(self.times, pos)
        self._rot = RotationPath(self.times, rot)

    def __call__(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Positions (n, 3) and listener frames (n, 3, 3) at times ``t`` (held outside the range)."""
        t = np.atleast_1d(np.asarray(t, float))
        return self._pos(t), self._rot(t)


# --------------------------------------------------------------------------- audio
def _read_binaural(path: Path, rate: int, label: str) -> np.ndarray:
    """A two-channel recording as float32 (n, 2) at ``rate`` (checked like the engine's audio)."""
    import soundfile as sf

    from soundstage.audio_io import read_audio, resample

    read_audio(path, None, label=label)  # the engine's checks: missing, corrupt, truncated, NaN, rate
    data, fs = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[1] != 2:
        raise FieldDataError(f"{label}: audio file '{path}' has {data.shape[1]} channel(s); a binaural recording "
                             "has two (left, right)")
    if fs != rate:
        data = resample(data, fs, rate).astype(np.float32)
    return np.ascontiguousarray(data)


def _read_mono(path: Path, rate: int, label: str) -> np.ndarray:
    from soundstage.audio_io import read_audio

    return read_audio(path, rate, label=label)[0]


def _peak(x: np.ndarray, what: str) -> float:
    p = float(np.max(np.abs(x))) if x.size else 0.0
    if not p > 0:
        raise FieldDataError(f"{what} is silent (all samples are zero); a field needs sound to learn from")
    return p


# --------------------------------------------------------------------------- the capture
@dataclass
class Capture:
    """A recording walk: what a moving binaural listener heard while one source played.

    Attributes
    ----------
    name : str
    path : Path
        ``capture.json`` or the RWAVS scene folder.
    layout : str
        ``"capture"`` or ``"rwavs"``.
    sample_rate : int
        Hz (``FIELD_RATE``).
    recording : ndarray, shape (n, 2), float32
        Left and right ear, scaled to peak 1 (as AV-NeRF does).
    source : ndarray, shape (m,), float32
        What the source played, scaled to peak 1.
    level_gain : float
        Recording peak / source peak before scaling: the absolute level relation a
        render restores.
    source_position : ndarray, shape (3,)
    source_start_s : float
        Recording time at which the source's first sample played.
    pose_times : ndarray, shape (P,)
        Seconds on the recording's clock, increasing.
    pose_matrices : ndarray, shape (P, 4, 4)
        Blender camera matrices.
    metric : bool
        Whether coordinates are metres (False for RWAVS' scaled coordinates; then no
        propagation delay is applied and no ray-cast scene features are made).
    room : dict or None
        A job-format room describing the scene (for scene features), if known.
    holdout : list of (float, float)
        Time ranges kept for evaluation (capture layout).
    split_times : dict or None
        RWAVS: ``{"train": times, "val": times}`` of the 1 s clips' centres.
    notes : list of str
    """

    name: str
    path: Path
    layout: str
    sample_rate: int
    recording: np.ndarray
    source: np.ndarray
    level_gain: float
    source_position: np.ndarray
    source_start_s: float
    pose_times: np.ndarray
    pose_matrices: np.ndarray
    metric: bool = True
    room: dict | None = None
    holdout: list = field(default_factory=list)
    split_times: dict | None = None
    notes: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length of the recording in seconds."""
        return len(self.recording) / self.sample_rate

    def poses(self) -> PosePath:
        return PosePath(self.pose_times, self.pose_matrices)

    def retarded_source(self) -> np.ndarray:
        """The source signal as emitted when the sound now arriving left it, on the recording's clock.

        Sample n is the source read at ``t_n - source_start_s - d(t_n) / c``, where
        ``d`` is the distance from the source to the (interpolated) listener: the
        direct sound's propagation delay is taken out, so the field's masks and the
        source's phase line up with the recording. Non-metric captures (RWAVS) only
        get the ``source_start_s`` shift. Windowed-sinc fractional reads (the engine's
        own delay line).

        Returns
        -------
        ndarray, shape (n,), float32
            Same length as ``recording``.
        """
        from soundstage.dsp import fractional_read

        n = len(self.recording)
        t = np.arange(n) / self.sample_rate
        delay = np.zeros(n)
        if self.metric:
            # The listener moves slowly: distances at 100 Hz, interpolated per sample.
            tk = np.arange(0.0, self.duration + 0.01, 0.01)
            pos, _ = self.poses()(tk)
            d = np.linalg.norm(pos - self.source_position[None, :], axis=1)
            delay = np.interp(t, tk, d) / SPEED_OF_SOUND
        idx = (t - self.source_start_s - delay) * self.sample_rate
        return fractional_read(self.source.astype(np.float32), idx).astype(np.float32)

    def span(self) -> tuple[float, float]:
        """Recording time range covered by the poses, the recording and the source audio alike, seconds."""
        src_end = self.source_start_s + len(self.source) / self.sample_rate
        lo = max(float(self.pose_times[0]), 0.0, self.source_start_s)
        hi = min(float(self.pose_times[-1]), self.duration, src_end)
        return lo, hi

    def clip_centres(self, split: str, clip_s: float = 1.0, stride_s: float = 0.5) -> np.ndarray:
        """Centres (s) of the clips of a split (``"train"``, ``"val"`` or ``"all"``).

        RWAVS uses its own split's pose times. A capture takes clips every
        ``stride_s`` within ``span()``: a validation clip lies wholly inside a held-out
        range, a training clip wholly outside them; clips that straddle a boundary are
        dropped so nothing leaks.
        """
        half = clip_s / 2
        if self.split_times is not None:
            keys = ["train", "val"] if split == "all" else [split]
            t = np.concatenate([np.asarray(self.split_times.get(k, []), float) for k in keys])
            return np.sort(t[(t - half >= -1e-9) & (t + half <= self.duration + 1e-9)])
        lo, hi = self.span()
        lo, hi = lo + half, hi - half
        if hi < lo:
            return np.zeros(0)
        c = np.arange(lo, hi + 1e-9, stride_s)
        inside = np.zeros(len(c), bool)
        touches = np.zeros(len(c), bool)
        for a, b in self.holdout:
            inside |= (c - half >= a - 1e-9) & (c + half <= b + 1e-9)
            touches |= (c + half > a) & (c - half < b)
        if split == "val":
            return c[inside]
        if split == "train":
            return c[~touches]
        return c[inside | ~touches]


# --------------------------------------------------------------------------- capture.json
def _load_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FieldDataError(f"{what} '{path}' not found; check the path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FieldDataError(f"{what} '{path}' is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise FieldDataError(f"{what} '{path}' must hold a JSON object")
    return doc


def _vec3(value, where: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise FieldDataError(f"{where}: expected [x, y, z] numbers, got {value!r}") from None
    if v.shape != (3,) or not np.isfinite(v).all():
        raise FieldDataError(f"{where}: expected three finite numbers [x, y, z], got {value!r}")
    return v


def _room(value, base: Path, where: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _load_json(base / value, f"{where} file")
    from soundstage.rooms.factory import room_from_spec

    room_from_spec(value, where)  # validate now: a bad room should fail before training
    return value


def _frame_number(name: str) -> int | None:
    m = re.findall(r"\d+", Path(str(name)).stem)
    return int(m[-1]) if m else None


def _pose_times(cams, spec, where: str) -> np.ndarray:
    """Seconds of each pose from a CameraPath and the capture's ``pose_times``."""
    if spec is None or spec == "names":
        if cams.times is None:
            raise FieldDataError(f"{where}: the pose file names ({cams.names[0]!r}, ...) are not times in seconds; "
                                 "set \"pose_times\": {\"fps\": 30, \"first_frame\": 1} (video frame rate) "
                                 "or a list of seconds")
        return np.asarray(cams.times, float)
    if isinstance(spec, list):
        t = np.asarray(spec, dtype=float)
        if t.shape != (len(cams),) or not np.isfinite(t).all():
            raise FieldDataError(f"{where}: pose_times lists {t.size} times for {len(cams)} poses")
        return t
    if isinstance(spec, dict) and "fps" in spec:
        fps = float(spec["fps"])
        if not fps > 0:
            raise FieldDataError(f"{where}: pose_times.fps must be positive, got {spec['fps']!r}")
        first = int(spec.get("first_frame", 1))
        start = float(spec.get("start_s", 0.0))
        nums = [_frame_number(n) for n in cams.names]
        if any(n is None for n in nums):
            bad = cams.names[nums.index(None)]
            raise FieldDataError(f"{where}: pose image {bad!r} has no frame number in its name")
        return (np.asarray(nums, float) - first) / fps + start
    raise FieldDataError(f"{where}: pose_times must be \"names\", a list of seconds or {{\"fps\": ...}}, got {spec!r}")


def read_capture(path) -> Capture:
    """Read a capture folder (or its ``capture.json``) and check it.

    Raises
    ------
    FieldDataError, AudioError
        One line naming the file and what to do: missing files, a recording that is
        not two-channel, poses that run past the recording, audio that does not line
        up with the poses in time (see ``check_alignment``).
    """
    p = Path(path)
    cfile = p / "capture.json" if p.is_dir() else p
    doc = _load_json(cfile, "capture file")
    base = cfile.parent
    where = str(cfile)
    if doc.get("format", CAPTURE_FORMAT) != CAPTURE_FORMAT:
        raise FieldDataError(f"{where}: format is {doc.get('format')!r}, expected {CAPTURE_FORMAT!r}")
    if doc.get("version", DATA_VERSION) != DATA_VERSION:
        raise FieldDataError(f"{where}: version {doc.get('version')!r} is not supported (this reads {DATA_VERSION})")
    for key in ("recording", "source_audio", "source_position", "poses"):
        if key not in doc:
            raise FieldDataError(f"{where}: missing \"{key}\" (see docs/field.md for the capture layout)")
    rate = FIELD_RATE
    rec = _read_binaural(base / doc["recording"], rate, f"{where} recording")
    src = _read_mono(base / doc["source_audio"], rate, f"{where} source_audio")
    src_pos = _vec3(doc["source_position"], f"{where} source_position")
    from soundstage.splats.cameras import read_camera_path

    pose_path = base / doc["poses"]
    if not pose_path.exists():
        raise FieldDataError(f"{where}: pose file '{pose_path}' not found; check \"poses\"")
    kwargs = {}
    if "world_transform" in doc:
        kwargs["world_transform"] = doc["world_transform"]
    cams = read_camera_path(pose_path, **kwargs)
    times = _pose_times(cams, doc.get("pose_times"), where)
    order = np.argsort(times, kind="stable")
    times, mats = times[order], np.asarray(cams.matrices)[order]
    if len(times) < 2:
        raise FieldDataError(f"{where}: {len(times)} pose(s); a walk needs at least two timed poses")
    dup = np.flatnonzero(np.diff(times) <= 0)
    if len(dup):
        raise FieldDataError(f"{where}: two poses at the same time {times[dup[0]]:.3f} s; times must differ")
    start = float(doc.get("source_start_s", 0.0))
    holdout = doc.get("holdout")
    if holdout is None:
        a = times[0] + 0.8 * (times[-1] - times[0])
        holdout = [[a, float(times[-1])]]
    try:
        holdout = [(float(a), float(b)) for a, b in holdout]
    except (TypeError, ValueError):
        raise FieldDataError(f"{where}: holdout must be a list of [start_s, end_s] pairs, got {holdout!r}") from None
    cap = Capture(
        name=str(doc.get("name", base.name)), path=cfile, layout="capture", sample_rate=rate,
        recording=rec / _peak(rec, f"{where} recording"), source=src / _peak(src, f"{where} source_audio"),
        level_gain=_peak(rec, "recording") / _peak(src, "source"), source_position=src_pos,
        source_start_s=start, pose_times=times, pose_matrices=mats, metric=True,
        room=_room(doc.get("room"), base, f"{where} room"), holdout=holdout,
    )
    check_alignment(cap)
    return cap


# --------------------------------------------------------------------------- RWAVS
def read_rwavs(scene_dir) -> Capture:
    """Read one RWAVS scene folder (AV-NeRF's real-world dataset layout).

    ``position.json`` is looked for in the scene folder, then beside it (the
    dataset's layout), keyed by the scene folder's name. Coordinates are the
    dataset's scaled ones (not metres), so propagation delays and ray-cast scene
    features are off; clips are centred on the poses of each split file.
    """
    d = Path(scene_dir)
    if not d.is_dir():
        raise FieldDataError(f"RWAVS scene folder '{d}' not found")
    rate = FIELD_RATE
    rec = _read_binaural(d / "binaural_syn.wav", rate, f"RWAVS scene '{d.name}'")
    src = _read_mono(d / "source_syn.wav", rate, f"RWAVS scene '{d.name}'")
    pos_file = d / "position.json" if (d / "position.json").is_file() else d.parent / "position.json"
    pos_doc = _load_json(pos_file, "RWAVS position file")
    entry = pos_doc.get(d.name)
    if not isinstance(entry, dict) or "source_position" not in entry:
        raise FieldDataError(f"{pos_file}: no entry {d.name!r} with a source_position for this scene")
    from soundstage.splats.cameras import read_transforms_json

    split_times, mats, times = {}, [], []
    for split in ("train", "val"):
        f = d / f"transforms_scale_{split}.json"
        if not f.is_file():
            raise FieldDataError(f"RWAVS scene '{d.name}': {f.name} not found")
        cams = read_transforms_json(f)
        if cams.times is None:
            raise FieldDataError(f"{f}: camera_path file_path stems must be times in seconds (e.g. '12.png')")
        split_times[split] = np.asarray(cams.times, float)
        mats.append(np.asarray(cams.matrices))
        times.append(np.asarray(cams.times, float))
    t = np.concatenate(times)
    m = np.concatenate(mats)
    t, keep = np.unique(t, return_index=True)
    m = m[keep]
    sp = np.asarray(entry["source_position"], float).reshape(-1)
    if sp.size == 2:  # the dataset's code uses (x, y); put the source at the cameras' mean height
        sp = np.r_[sp, m[:, 2, 3].mean()]
    cap = Capture(
        name=d.name, path=d, layout="rwavs", sample_rate=rate,
        recording=rec / _peak(rec, "RWAVS binaural_syn.wav"), source=src / _peak(src, "RWAVS source_syn.wav"),
        level_gain=_peak(rec, "recording") / _peak(src, "source"), source_position=_vec3(sp[:3], f"{pos_file}"),
        source_start_s=0.0, pose_times=t, pose_matrices=m, metric=False, split_times=split_times,
    )
    check_alignment(cap)
    return cap


def export_rwavs(capture: Capture, out_dir, scene: str = "1", every_s: float = 1.0) -> Path:
    """Write a capture in the RWAVS layout (for tests and for tools that read RWAVS).

    Poses are sampled every ``every_s`` seconds on whole-second times (file names
    ``<seconds>.png``); held-out times go to ``transforms_scale_val.json``.

    Returns
    -------
    Path
        The scene folder ``out_dir/scene``.
    """
    from soundstage.audio_io import write_json, write_wav

    root = Path(out_dir)
    sd = root / scene
    sd.mkdir(parents=True, exist_ok=True)
    write_wav(sd / "binaural_syn.wav", capture.recording, capture.sample_rate)
    src = np.zeros(len(capture.recording), np.float32)
    o = int(round(capture.source_start_s * capture.sample_rate))
    n = min(len(src) - max(o, 0), len(capture.source) - max(-o, 0))
    if n > 0:
        src[max(o, 0):max(o, 0) + n] = capture.source[max(-o, 0):max(-o, 0) + n]
    write_wav(sd / "source_syn.wav", src, capture.sample_rate)
    t = np.arange(math.ceil(capture.pose_times[0] + 0.5), capture.pose_times[-1] - 0.5 + 1e-9, every_s)
    pos, rot = capture.poses()(t)
    val = np.zeros(len(t), bool)
    for a, b in capture.holdout:
        val |= (t - 0.5 >= a) & (t + 0.5 <= b)
    for split, sel in (("train", ~val), ("val", val)):
        entries = []
        for ti, p, r in zip(t[sel], pos[sel], rot[sel]):
            m = np.eye(4)
            # Listener frame (ahead, left, up) back to a Blender camera (X right, Y up, Z back).
            m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = -r[:, 1], r[:, 2], -r[:, 0], p
            entries.append({"camera_to_world": m.reshape(-1).tolist(), "file_path": f"images/{ti:g}.png"})
        write_json(sd / f"transforms_scale_{split}.json", {"camera_path": entries})
    write_json(root / "position.json", {scene: {"source_position": capture.source_position.tolist()}})
    return sd


# --------------------------------------------------------------------------- alignment
def _gcc_phat_lag(ref: np.ndarray, sig: np.ndarray, fs: int, max_lag_s: float) -> tuple[float, float]:
    """Lag (s) by which ``sig`` trails ``ref`` (GCC-PHAT peak) and the peak's prominence.

    Hand-written because scipy has no phase-transform weighting; it is a few FFTs.
    Prominence is the peak over the median absolute correlation: above ~10 the
    estimate is trustworthy.
    """
    import scipy.fft as sfft

    n = len(ref) + len(sig)
    nf = sfft.next_fast_len(n)
    X = sfft.rfft(ref, nf)
    Y = sfft.rfft(sig, nf)
    cross = Y * np.conj(X)
    r = sfft.irfft(cross / np.maximum(np.abs(cross), 1e-12), nf)
    m = min(int(max_lag_s * fs), nf // 2 - 1)
    lags = np.r_[np.arange(0, m + 1), np.arange(-m, 0)]
    vals = np.r_[r[: m + 1], r[-m:]]
    k = int(np.argmax(vals))
    prom = float(vals[k] / max(np.median(np.abs(vals)), 1e-12))
    return lags[k] / fs, prom


def check_alignment(cap: Capture, *, max_search_s: float = 5.0, window_s: float = 60.0) -> None:
    """Check that the recording, the source audio and the poses share one clock.

    * the poses must lie within the recording (0.5 s of slack);
    * poses, recording and source audio must overlap for at least 2 s (only the
      overlap is used, see ``Capture.span``);
    * the recording must trail the source by about the direct sound's travel time:
      GCC-PHAT on up to ``window_s`` seconds finds the actual lag; when it is off by
      more than 50 ms plus the room's size over c, the message gives the
      ``source_start_s`` that would line them up.

    Raises
    ------
    FieldDataError
    """
    where = str(cap.path)
    dur = cap.duration
    t0, t1 = float(cap.pose_times[0]), float(cap.pose_times[-1])
    if t1 > dur + 0.5 or t0 < -0.5:
        raise FieldDataError(
            f"{where}: the camera poses run from {t0:.2f} s to {t1:.2f} s but the recording lasts {dur:.2f} s; "
            "the audio and the poses do not line up in time (check pose_times and the recording)")
    if t1 - t0 < 1.0:
        raise FieldDataError(f"{where}: the poses cover only {t1 - t0:.2f} s; a walk needs at least a few seconds")
    src_end = cap.source_start_s + len(cap.source) / cap.sample_rate
    lo, hi = cap.span()
    if hi - lo < 2.0:
        raise FieldDataError(
            f"{where}: the source audio (playing {cap.source_start_s:.2f}-{src_end:.2f} s on the recording's clock), "
            f"the recording (0-{dur:.2f} s) and the poses ({t0:.2f}-{t1:.2f} s) overlap for "
            f"{max(hi - lo, 0.0):.2f} s; the audio and the poses do not line up in time (check source_start_s)")
    if hi - lo < 0.8 * (min(t1, dur) - max(t0, 0.0)):
        cap.notes.append(f"only {lo:.2f}-{hi:.2f} s of the walk has source audio; the rest is not used")
    if not cap.metric:
        return
    fs = cap.sample_rate
    a = int(lo * fs)
    b = min(int(hi * fs), a + int(window_s * fs))
    rec = cap.recording[a:b].mean(axis=1).astype(float)
    s0 = int(round((lo - cap.source_start_s) * fs))
    src = np.zeros(b - a)
    seg = cap.source[max(s0, 0): max(s0, 0) + (b - a)]
    src[max(-s0, 0): max(-s0, 0) + len(seg)] = seg[: len(src) - max(-s0, 0)]
    lag, prom = _gcc_phat_lag(src, rec, fs, max_search_s)
    pos, _ = cap.poses()(np.linspace(lo, hi, 50))
    d = np.linalg.norm(pos - cap.source_position, axis=1)
    expected = float(np.median(d)) / SPEED_OF_SOUND
    spread = (float(d.max() - d.min()) + 3.0) / SPEED_OF_SOUND
    if prom < 8.0:
        cap.notes.append(f"could not confirm the audio alignment (cross-correlation prominence {prom:.1f})")
        return
    if abs(lag - expected) > 0.05 + spread:
        raise FieldDataError(
            f"{where}: the recording trails the source audio by {lag:+.3f} s (cross-correlation) but the poses put "
            f"the source {np.median(d):.1f} m away ({expected * 1000:.0f} ms); the audio and the poses do not line up "
            f"in time: set \"source_start_s\": {cap.source_start_s + lag - expected:.3f} in the capture file")


# --------------------------------------------------------------------------- writing a capture
def write_capture(folder, *, recording: np.ndarray, source_audio: np.ndarray, sample_rate: int,
                  source_position, matrices: np.ndarray, times: np.ndarray, room: dict | None = None,
                  holdout=None, source_start_s: float = 0.0, name: str | None = None) -> Path:
    """Write a capture in the layout ``read_capture`` reads (what Blender's bridge calls).

    Parameters
    ----------
    folder : path
        Created if needed; gets ``recording.wav``, ``source.wav``, ``transforms.json``
        (nerfstudio frames whose file names are the pose times) and ``capture.json``.
    recording : ndarray, shape (n, 2)
        Left, right.
    source_audio : ndarray, shape (m,)
    sample_rate : int
        Hz, of both signals.
    source_position : (3,) array_like
    matrices : ndarray, shape (P, 4, 4)
        Blender camera matrices of the listener.
    times : ndarray, shape (P,)
        Recording time of each pose, seconds.
    room : dict, optional
        A job-format room, for scene features.
    holdout : list of (start_s, end_s), optional
        Default: the last 20 % of the poses' time span.

    Returns
    -------
    Path
        The ``capture.json`` written.
    """
    from soundstage.audio_io import write_json, write_wav

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    rec = np.asarray(recording, dtype=np.float32)
    if rec.ndim != 2 or rec.shape[1] != 2:
        raise ValueError(f"recording must have shape (n, 2), got {rec.shape}")
    write_wav(d / "recording.wav", rec, int(sample_rate))
    write_wav(d / "source.wav", np.asarray(source_audio, np.float32), int(sample_rate))
    mats = np.asarray(matrices, float).reshape(-1, 4, 4)
    times = np.asarray(times, float)
    frames = [{"file_path": f"images/{t:.4f}.png", "transform_matrix": m.tolist()} for t, m in zip(times, mats)]
    write_json(d / "transforms.json", {"camera_model": "OPENCV", "frames": frames})
    doc = {"format": CAPTURE_FORMAT, "version": DATA_VERSION, "name": name or d.name,
           "recording": "recording.wav", "source_audio": "source.wav",
           "source_position": np.asarray(source_position, float).tolist(), "source_start_s": float(source_start_s),
           "poses": "transforms.json", "pose_times": "names"}
    if room is not None:
        doc["room"] = room
    if holdout is not None:
        doc["holdout"] = [[float(a), float(b)] for a, b in holdout]
    write_json(d / "capture.json", doc)
    return d / "capture.json"


# --------------------------------------------------------------------------- synthetic data
def synthetic_source(seconds: float, sample_rate: int = FIELD_RATE, seed: int = 0) -> np.ndarray:
    """A music-like test signal: overlapping harmonic notes and noise bursts over a quiet noise bed.

    Notes (110-880 Hz fundamentals, six harmonics with a random tilt) and band-limited
    noise bursts start every 0.12-0.5 s with 5-30 ms attacks and 0.1-0.6 s decays, so
    every frequency band and level changes over time, like the speech and music of
    RWAVS. Peak 0.5.

    Returns
    -------
    ndarray, shape (round(seconds * sample_rate),), float32
    """
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    y = np.zeros(n)
    t = 0.0
    while t < seconds:
        i0 = int(t * sample_rate)
        dur = rng.uniform(0.25, 0.9)
        m = min(n - i0, int(dur * sample_rate))
        tt = np.arange(m) / sample_rate
        att = rng.uniform(0.005, 0.03)
        env = np.minimum(tt / att, 1.0) * np.exp(-tt / rng.uniform(0.1, 0.6))
        if rng.random() < 0.6:
            f0 = 110.0 * 2 ** rng.uniform(0, 3)
            tilt = rng.uniform(0.5, 1.5)
            sig = sum(np.sin(2 * np.pi * f0 * k * tt + rng.uniform(0, 2 * np.pi)) / k ** tilt
                      for k in range(1, 7) if f0 * k < 0.45 * sample_rate)
        else:
            fc = 200.0 * 2 ** rng.uniform(0, 5.5)
            lo, hi = fc / 2 ** 0.75, min(fc * 2 ** 0.75, 0.45 * sample_rate)
            sos = butter(2, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
            sig = sosfilt(sos, rng.standard_normal(m)) * 3.0
        y[i0:i0 + m] += env * sig * rng.uniform(0.3, 1.0)
        t += rng.uniform(0.12, 0.5)
    bed = rng.standard_normal(n)
    sos = butter(1, 2000.0, fs=sample_rate, output="sos")
    y += 0.02 * sosfilt(sos, bed) + 0.005 * bed
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def walk_path(seconds: float, fps: float, room: dict = DEFAULT_ROOM, seed: int = 0,
              lap_s: float = 24.0, growth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A listener walking loops around a room while turning its head.

    Laps of about ``lap_s`` seconds on a wobbling ellipse around the room's centre
    (so later laps pass near, not on, earlier ones), at ear height 1.5-1.7 m; the
    head looks along the walk, turned by up to +-100 degrees with a period that is
    not a multiple of the lap, so a place is revisited facing another way. With
    ``growth`` > 0 the loop widens steadily (by that fraction of its size over the
    walk), so the last lap runs outside the earlier ones: held out, it tests
    extrapolation rather than interpolation.

    Returns
    -------
    times : ndarray, shape (F,)
        ``arange(F) / fps`` with F = round(seconds * fps) + 1.
    matrices : ndarray, shape (F, 4, 4)
        Blender camera matrices.
    """
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(room["min"], float), np.asarray(room["max"], float)
    c, size = (lo + hi) / 2, hi - lo
    nf = int(round(seconds * fps)) + 1
    t = np.arange(nf) / fps
    ph = rng.uniform(0, 2 * np.pi, 4)
    ang = 2 * np.pi * t / lap_s + ph[0]
    grow = (1.0 - growth / 2) + growth * t / max(seconds, 1e-9)
    rx = size[0] * grow * (0.32 + 0.08 * np.sin(2 * np.pi * t / (2.7 * lap_s) + ph[1]))
    ry = size[1] * grow * (0.30 + 0.08 * np.sin(2 * np.pi * t / (3.4 * lap_s) + ph[2]))
    pos = np.stack([c[0] + rx * np.cos(ang), c[1] + ry * np.sin(ang),
                    lo[2] + 1.6 + 0.08 * np.sin(2 * np.pi * t / 5.3 + ph[3])], axis=1)
    vel = np.gradient(pos, t, axis=0)
    heading = np.unwrap(np.arctan2(vel[:, 1], vel[:, 0]))
    yaw = heading + np.radians(100.0) * np.sin(2 * np.pi * t / 11.3 + ph[1])
    mats = np.zeros((nf, 4, 4))
    base = Rotation.from_euler("xyz", [90, 0, -90], degrees=True)  # camera looking along +X, +Z up
    for i in range(nf):
        m = np.eye(4)
        m[:3, :3] = (Rotation.from_euler("z", yaw[i]) * base).as_matrix()
        m[:3, 3] = pos[i]
        mats[i] = m
    return t, mats


def synthetic_walk(out_dir, *, seconds: float = 120.0, seed: int = 0, room: dict = DEFAULT_ROOM,
                   source_position=DEFAULT_SOURCE, snr_db: float = 20.0, holdout_fraction: float = 0.2,
                   fps: float = 10.0, growth: float = 0.0, progress=None) -> Path:
    """Simulate a recording walk with the engine and write it as a capture.

    The engine bakes what a binaural listener walking ``walk_path`` hears while the
    source plays ``synthetic_source``; white noise at ``snr_db`` (independent per ear,
    relative to the recording's mean power) stands in for microphone and room noise.
    The last ``holdout_fraction`` of the walk is held out for evaluation; ``growth``
    widens the loop over time (see ``walk_path``).

    Returns
    -------
    Path
        ``out_dir/capture.json``.
    """
    from soundstage.audio_io import write_wav
    from soundstage.bake import bake

    report = progress or (lambda f, m: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fs = FIELD_RATE
    src = synthetic_source(seconds, fs, seed)
    times, mats = walk_path(seconds, fps, room, seed, growth=growth)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        write_wav(Path(tmp) / "source.wav", src, fs)
        job = {
            "version": 1, "sample_rate": fs, "fps": fps, "frame_start": 1, "frame_end": len(times) - 1,
            "room": room,
            "listener": {"name": "Walker", "matrix_world": [m.reshape(-1).tolist() for m in mats[:-1]]},
            "sources": [{"name": "Speaker", "audio": str(Path(tmp) / "source.wav"),
                         "position": list(map(float, source_position))}],
            "output": {"format": "binaural", "path": str(Path(tmp) / "rec.wav")},
            "render": {"seed": int(seed)},
        }
        res = bake(job, out=Path(tmp) / "rec.wav", fmt="binaural",
                   progress=lambda f, m: report(0.9 * f, f"simulating the walk: {m}"))
        import soundfile as sf

        rec, _ = sf.read(str(res.path), dtype="float64", always_2d=True)
    rng = np.random.default_rng(seed + 7919)
    noise_power = np.mean(rec ** 2) / 10 ** (snr_db / 10)
    rec = rec + rng.standard_normal(rec.shape) * np.sqrt(noise_power)
    t_end = times[-1] - 1.0 / fps  # the bake covers frames 1..F-1
    a = (1 - holdout_fraction) * t_end
    report(0.95, "writing the capture")
    path = write_capture(out, recording=rec.astype(np.float32), source_audio=src, sample_rate=fs,
                         source_position=source_position, matrices=mats[:-1], times=times[:-1], room=room,
                         holdout=[(a, t_end)], name=f"synthetic walk (seed {seed})")
    report(1.0, "done")
    return path


# --------------------------------------------------------------------------- impulse-response sets
@dataclass
class IRSet:
    """Binaural impulse responses at listener poses (the impulse-response field's data).

    Attributes
    ----------
    name : str
    path : Path
    sample_rate : int
    irs : ndarray, shape (N, 2, L), float32
        Left, right; time 0 is when the source emits.
    matrices : ndarray, shape (N, 4, 4)
        Blender camera matrices of the listener.
    split : ndarray of str, shape (N,)
        ``"train"`` or ``"val"``.
    source_position : ndarray, shape (3,)
    room : dict or None
    """

    name: str
    path: Path
    sample_rate: int
    irs: np.ndarray
    matrices: np.ndarray
    split: np.ndarray
    source_position: np.ndarray
    room: dict | None = None
    notes: list = field(default_factory=list)

    def select(self, split: str) -> np.ndarray:
        """Indices of a split (``"train"``, ``"val"`` or ``"all"``)."""
        return np.arange(len(self.irs)) if split == "all" else np.flatnonzero(self.split == split)


def write_irs(folder, *, irs: np.ndarray, sample_rate: int, matrices: np.ndarray, split, source_position,
              room: dict | None = None, name: str | None = None) -> Path:
    """Write an impulse-response set (``irs.json`` + ``irs.npy``); returns the JSON path."""
    from soundstage.audio_io import atomic_path, write_json

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(irs, np.float32)
    with atomic_path(d / "irs.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    doc = {"format": IRSET_FORMAT, "version": DATA_VERSION, "name": name or d.name, "sample_rate": int(sample_rate),
           "ir_samples": int(arr.shape[-1]), "source_position": np.asarray(source_position, float).tolist(),
           "irs": "irs.npy",
           "poses": [{"matrix": np.asarray(m, float).reshape(-1).tolist(), "split": str(s)}
                     for m, s in zip(matrices, split)]}
    if room is not None:
        doc["room"] = room
    write_json(d / "irs.json", doc)
    return d / "irs.json"


def read_irs(path) -> IRSet:
    """Read an impulse-response set folder (or its ``irs.json``)."""
    p = Path(path)
    jf = p / "irs.json" if p.is_dir() else p
    doc = _load_json(jf, "impulse-response set")
    where = str(jf)
    if doc.get("format") != IRSET_FORMAT:
        raise FieldDataError(f"{where}: format is {doc.get('format')!r}, expected {IRSET_FORMAT!r}")
    if doc.get("version") != DATA_VERSION:
        raise FieldDataError(f"{where}: version {doc.get('version')!r} is not supported (this reads {DATA_VERSION})")
    npy = jf.parent / str(doc.get("irs", "irs.npy"))
    if not npy.is_file():
        raise FieldDataError(f"{where}: impulse responses '{npy}' not found")
    try:
        irs = np.load(npy, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise FieldDataError(f"{npy}: cannot read the impulse responses ({e}); regenerate the set") from None
    poses = doc.get("poses")
    if not isinstance(poses, list) or not poses:
        raise FieldDataError(f"{where}: no poses")
    if irs.ndim != 3 or irs.shape[0] != len(poses) or irs.shape[1] != 2:
        raise FieldDataError(f"{npy}: expected shape ({len(poses)}, 2, samples), got {irs.shape}")
    if not np.isfinite(irs).all():
        raise FieldDataError(f"{npy}: holds NaN or infinite samples")
    try:
        mats = np.array([np.asarray(q["matrix"], float).reshape(4, 4) for q in poses])
        split = np.array([str(q.get("split", "train")) for q in poses])
    except (KeyError, TypeError, ValueError):
        raise FieldDataError(f"{where}: every pose needs a 16-number \"matrix\" and a \"split\"") from None
    rate = int(doc.get("sample_rate", 0))
    if rate != FIELD_RATE:
        raise FieldDataError(f"{where}: sample_rate {rate} Hz; impulse-response fields use {FIELD_RATE} Hz")
    return IRSet(name=str(doc.get("name", jf.parent.name)), path=jf, sample_rate=rate, irs=irs.astype(np.float32),
                 matrices=mats, split=split, source_position=_vec3(doc.get("source_position"), where),
                 room=_room(doc.get("room"), jf.parent, f"{where} room"))


def random_poses(n: int, room: dict, source, rng: np.random.Generator, margin: float = 0.5,
                 min_source_distance: float = 0.5) -> np.ndarray:
    """``n`` camera matrices at random places (``margin`` from the walls, 1.2-1.8 m high) and headings."""
    from scipy.spatial.transform import Rotation

    lo, hi = np.asarray(room["min"], float), np.asarray(room["max"], float)
    base = Rotation.from_euler("xyz", [90, 0, -90], degrees=True)
    out = []
    while len(out) < n:
        p = np.array([rng.uniform(lo[0] + margin, hi[0] - margin), rng.uniform(lo[1] + margin, hi[1] - margin),
                      lo[2] + rng.uniform(1.2, 1.8)])
        if np.linalg.norm(p - np.asarray(source, float)) < min_source_distance:
            continue
        m = np.eye(4)
        m[:3, :3] = (Rotation.from_euler("z", rng.uniform(-np.pi, np.pi)) * base).as_matrix()
        m[:3, 3] = p
        out.append(m)
    return np.array(out)


def simulate_irs(matrices: np.ndarray, *, room: dict, source_position, ir_seconds: float = 0.5, seed: int = 0,
                 progress=None, cancel=None) -> np.ndarray:
    """Binaural impulse responses from the engine, one job per pose (an impulse source).

    Every job gets the same noise ``seed``: the engine's late reverberation is shaped
    noise, and with a new draw per pose C50 scatters by about 0.3 dB and EDT by about
    17 ms at one fixed pose, randomness no field can learn. With one draw the
    responses vary smoothly with the pose, like a deterministic simulation.

    Returns
    -------
    ndarray, shape (N, 2, round(ir_seconds * FIELD_RATE)), float32
    """
    from soundstage.audio_io import write_wav
    from soundstage.job import load_job
    from soundstage.render import make_canceller, render_job

    report = progress or (lambda f, m: None)
    check = make_canceller(cancel)
    fs = FIELD_RATE
    L = int(round(ir_seconds * fs))
    out = np.zeros((len(matrices), 2, L), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        imp = np.zeros(L, np.float32)
        imp[0] = 1.0
        write_wav(Path(tmp) / "impulse.wav", imp, fs)
        for i, m in enumerate(matrices):
            check()
            job = {"version": 1, "sample_rate": fs, "fps": 1.0 / ir_seconds, "frame_start": 1, "frame_end": 1,
                   "room": room, "listener": {"name": "Listener", "matrix_world": np.asarray(m).reshape(-1).tolist()},
                   "sources": [{"name": "Impulse", "audio": str(Path(tmp) / "impulse.wav"),
                                "position": list(map(float, source_position))}],
                   "output": {"format": "binaural", "path": str(Path(tmp) / "unused.wav")},
                   "render": {"seed": int(seed)}}
            h = render_job(load_job(job)).audio
            out[i] = h[:L].T
            report((i + 1) / len(matrices), f"impulse response {i + 1}/{len(matrices)}")
    return out


def synthetic_irs(out_dir, *, n_train: int = 200, n_val: int = 50, seed: int = 0, room: dict = DEFAULT_ROOM,
                  source_position=DEFAULT_SOURCE, ir_seconds: float = 0.5, progress=None, cancel=None) -> Path:
    """Simulate an impulse-response set (random poses; ``n_val`` held-out positions) and write it.

    Returns
    -------
    Path
        ``out_dir/irs.json``.
    """
    rng = np.random.default_rng(seed)
    mats = random_poses(n_train + n_val, room, source_position, rng)
    irs = simulate_irs(mats, room=room, source_position=source_position, ir_seconds=ir_seconds, seed=seed,
                       progress=progress, cancel=cancel)
    split = np.array(["train"] * n_train + ["val"] * n_val)
    return write_irs(out_dir, irs=irs, sample_rate=FIELD_RATE, matrices=mats, split=split,
                     source_position=source_position, room=room, name=f"synthetic impulse responses (seed {seed})")


# --------------------------------------------------------------------------- dispatch
def data_kind(path) -> str:
    """``"capture"``, ``"rwavs"`` or ``"irs"`` for a data folder or file, by what it holds."""
    p = Path(path)
    if not p.exists():
        raise FieldDataError(f"data '{p}' not found; give a capture folder, an RWAVS scene folder or an "
                             "impulse-response set")
    if p.is_file():
        if p.name == "irs.json":
            return "irs"
        return "capture"
    if (p / "capture.json").is_file():
        return "capture"
    if (p / "irs.json").is_file():
        return "irs"
    if (p / "transforms_scale_train.json").is_file() or (p / "binaural_syn.wav").is_file():
        return "rwavs"
    raise FieldDataError(f"'{p}' holds no capture.json, irs.json or RWAVS scene (binaural_syn.wav, "
                         "transforms_scale_train.json); see docs/field.md")


def load_data(path):
    """Read any supported data: a ``Capture`` (capture layout or RWAVS) or an ``IRSet``."""
    kind = data_kind(path)
    if kind == "irs":
        return read_irs(path)
    if kind == "rwavs":
        return read_rwavs(path)
    return read_capture(path)


__all__ = [
    "FIELD_RATE", "DEFAULT_ROOM", "DEFAULT_SOURCE", "Capture", "IRSet", "FieldDataError", "PosePath",
    "source_azimuth", "source_elevation", "listener_axes", "read_capture", "read_rwavs", "export_rwavs", "check_alignment",
    "write_capture", "synthetic_source", "walk_path", "synthetic_walk", "write_irs", "read_irs", "random_poses",
    "simulate_irs", "synthetic_irs", "data_kind", "load_data", "AudioError",
]
