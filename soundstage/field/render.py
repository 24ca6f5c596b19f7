"""Baking a job with a learned field instead of the room simulator.

``render_field_job`` reads the same job documents as ``soundstage bake`` (the listener's
camera path, the sources' audio, start frames and gains, the output path) and writes
the same outputs (a float WAV and its JSON sidecar, atomically), but the sound comes
from trained fields:

* a **recording field** (A-NeRF) plays the source through the masks it predicts at the
  listener's pose at every STFT frame (5.8 ms), refined by its convolution and
  resynthesised with the source's own phase. The source is first delayed by its
  distance over c (the same propagation delay training took out), so arrival times
  follow the listener;
* an **impulse-response field** predicts a binaural response at the listener's pose
  every 1024 samples (46 ms) and filters the source with them, crossfading between
  control points (the engine's ``tv_convolve``).

A field belongs to the place its source was recorded in: the job's room is ignored,
and a job source away from the field's source position is rendered as if it were
there (the sidecar notes both). Poses away from the trained area are rendered too,
with a warning in the notes and an ``OutsideTrainedArea`` warning. Output is
binaural only.
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from soundstage import __version__
from soundstage.errors import SoundstageError
from soundstage.field.checkpoint import Field, OutsideTrainedArea, load_fields
from soundstage.field.data import SPEED_OF_SOUND, PosePath, source_azimuth

#: Frames per chunk when querying masks and refining (bounds memory on long renders).
CHUNK_FRAMES = 1024
#: Control-point spacing of impulse-response rendering, samples at the field's rate.
IR_CONTROL_SPACING = 1024


def match_sources(fields: list[Field], sources) -> list[tuple[Field, object]]:
    """Pair each job source with a field: by name, else one-to-one in order.

    Raises
    ------
    SoundstageError
        When the pairing is ambiguous.
    """
    by_name = {f.source_name: f for f in fields}
    if all(s.name in by_name for s in sources):
        return [(by_name[s.name], s) for s in sources]
    if len(fields) == len(sources):
        return list(zip(fields, sources))
    if len(fields) == 1:
        return [(fields[0], s) for s in sources]
    raise SoundstageError(
        f"the model has {len(fields)} fields ({', '.join(repr(f.source_name) for f in fields)}) but the job has "
        f"{len(sources)} sources ({', '.join(repr(s.name) for s in sources)}); name the sources like the fields")


def _listener_path(job) -> tuple[PosePath, float]:
    n = job.n_frames
    mats = np.asarray(job.listener.matrices, float).reshape(-1, 4, 4)
    if len(mats) == 1:
        mats = np.repeat(mats, 2, axis=0)
        times = np.array([0.0, max(n - 1, 1) / job.fps])
    else:
        times = np.arange(len(mats)) / job.fps
    return PosePath(times, mats), times[-1]


def _emitted(audio: np.ndarray, start_s: float, fs: int, n: int, pre: int) -> np.ndarray:
    """``out[pre + k]`` is what the source emits at output sample k (k from -pre)."""
    sig = np.zeros(pre + n, np.float32)
    o = int(round(start_s * fs)) + pre
    a, b = max(0, -o), min(len(audio), len(sig) - o)
    if b > a:
        sig[o + a:o + b] = audio[a:b]
    return sig


@torch.no_grad()
def render_anerf(f: Field, audio: np.ndarray, start_s: float, path: PosePath, n: int, *, device="cpu",
                 check=lambda: None, report=lambda fr, m: None) -> np.ndarray:
    """A recording field's binaural rendering of a source.

    Parameters
    ----------
    audio : ndarray, shape (m,)
        The source's sound at the field's rate.
    start_s : float
        Output time of the audio's first sample.
    path : PosePath
        Listener poses over output time.
    n : int
        Output samples.

    Returns
    -------
    ndarray, shape (n, 2), float32
    """
    from soundstage.dsp import fractional_read
    from soundstage.field.spectral import istft, stft

    model = f.model.to(device).eval()
    cfg = model.config
    spec = cfg.spectral
    fs = cfg.sample_rate
    t = np.arange(n) / fs
    delay = np.zeros(n)
    if f.metric:
        tk = np.arange(0.0, n / fs + 0.01, 0.01)
        pos, _ = path(tk)
        delay = np.interp(t, tk, np.linalg.norm(pos - f.source_position, axis=1)) / SPEED_OF_SOUND
    src = fractional_read(audio.astype(np.float32), (t - start_s - delay) * fs)
    S = stft(torch.as_tensor(src, device=device), spec)  # (T, F)
    T = S.shape[0]
    frame_t = np.arange(T) * spec.hop / fs
    pos, rot = path(frame_t)
    pos_n = torch.as_tensor(f.normalise(pos), device=device)
    az = torch.as_tensor(source_azimuth(pos, rot, f.source_position), dtype=torch.float32, device=device)
    scene = f.scene_features(pos)
    mag = S.abs()
    out = torch.zeros((2, T, S.shape[1]), device=device)
    halo = 8  # the refinement sees 5 frames either side; 8 keeps chunk seams exact
    for a in range(0, T, CHUNK_FRAMES):
        check()
        b = min(T, a + CHUNK_FRAMES)
        lo, hi = max(0, a - halo), min(T, b + halo)
        sc = None if scene is None else torch.as_tensor(scene[lo:hi], device=device)
        mix, diff = model.masks(pos_n[lo:hi], az[lo:hi], sc)
        res = model.apply_masks(mag[None, lo:hi], mix[None], diff[None])["binaural"][0]
        out[:, a:b] = res[:, a - lo:b - lo]
        report(b / T, "field masks")
    X = out * torch.exp(1j * torch.angle(S))[None]
    y = istft(X, spec, n).cpu().numpy().T * f.level_gain
    return y.astype(np.float32)


@torch.no_grad()
def impulse_responses(f: Field, positions: np.ndarray, frames: np.ndarray, *, griffin_lim: int = 8,
                      device="cpu") -> np.ndarray:
    """Binaural impulse responses of an impulse-response field at poses, shape (N, 2, ir_samples)."""
    from soundstage.field.evaluate import predict_irs

    if f.kind != "irfield":
        raise SoundstageError(f"field '{f.source_name}' is a recording field; impulse responses need an "
                              "impulse-response field")
    return predict_irs(f, positions, frames, griffin_lim=griffin_lim, device=device)


def render_irfield(f: Field, audio: np.ndarray, start_s: float, path: PosePath, n: int, *, device="cpu",
                   griffin_lim: int = 8, check=lambda: None, report=lambda fr, m: None) -> np.ndarray:
    """An impulse-response field's binaural rendering of a source (time-varying convolution)."""
    import scipy.fft as sfft

    from soundstage.dsp import tv_convolve

    cfg = f.model.config
    fs = cfg.sample_rate
    L = cfg.ir_samples
    h = IR_CONTROL_SPACING
    centres = np.arange(0, n + h, h, dtype=float)
    pos, rot = path(centres / fs)
    irs = []
    for a in range(0, len(centres), 256):
        check()
        irs.append(impulse_responses(f, pos[a:a + 256], rot[a:a + 256], griffin_lim=griffin_lim, device=device))
        report(min(1.0, (a + 256) / len(centres)) * 0.7, "impulse responses")
    irs = np.concatenate(irs)
    pre = L + 2 * h
    x = _emitted(audio, start_s, fs, n, pre)

    def spectra(k0, k1, nfft):
        return sfft.rfft(irs[k0:k1], n=nfft, axis=-1)

    y = tv_convolve(x, centres, h, spectra, 2, L, n, cancel=check, x_start=-pre)
    report(1.0, "filtered")
    return y


def render_field_job(model, job, *, out=None, base_dir=None, progress=None, cancel=None, device=None,
                     griffin_lim: int = 8):
    """Bake a job with learned fields; the field counterpart of ``soundstage.bake.bake``.

    Parameters
    ----------
    model : path or list of Field
        A model file (``soundstage field train``) or loaded fields.
    job : dict or path
        A job document (docs/job-format.md); its output format must be binaural.
    out : path, optional
        Overrides ``output.path``.
    progress : callable(fraction, message), optional
    cancel : callable or threading.Event, optional
    device : str, optional
        Default: CUDA when available, else CPU.
    griffin_lim : int
        Phase iterations of impulse-response fields.

    Returns
    -------
    soundstage.bake.BakeResult
        ``info`` is the sidecar: like a bake's, with ``backend`` ``"field:anerf"`` or
        ``"field:irfield"``, ``model`` and the notes (trained area, source position,
        ignored room).

    Raises
    ------
    SoundstageError
        Bad job or model, with one line.
    """
    from soundstage.audio_io import read_audio, resample, write_json, write_wav
    from soundstage.bake import BakeResult, check_writable, sidecar_path
    from soundstage.field.train import pick_device
    from soundstage.job import load_job
    from soundstage.render import make_canceller

    t0 = time.perf_counter()
    report = progress or (lambda f, m: None)
    check = make_canceller(cancel)
    dev = pick_device(device)
    fields = load_fields(model, dev) if isinstance(model, (str, Path)) else list(model)
    j = load_job(job, base_dir, out=out)
    if j.output.format != "binaural":
        raise SoundstageError(f"output.format: a learned field renders binaural only, got '{j.output.format}'; "
                              "set it to binaural (or bake with the simulator)")
    check_writable(j.output.path)
    pairs = match_sources(fields, j.sources)
    path, _ = _listener_path(j)
    notes: list[str] = []
    if j.room is not None:
        notes.append("the job's room is ignored: a learned field carries the acoustics of the place it was "
                     "trained in")
    rate = j.sample_rate
    mix = np.zeros((j.n_samples, 2), np.float32)
    levels = {}
    frame_pos, _ = path(np.arange(j.n_frames) / j.fps)
    for i, (f, src) in enumerate(pairs):
        w = f.area_warning(frame_pos, "listener poses")
        if w:
            notes.append(w)
            warnings.warn(w, OutsideTrainedArea, stacklevel=2)
        off = float(np.max(np.linalg.norm(src.positions - f.source_position, axis=1)))
        if off > 0.5:
            notes.append(f"source '{src.name}' is up to {off:.2f} m from where field '{f.source_name}' learned its "
                         "source; it is rendered as heard from the learned position")
        fs = f.model.config.sample_rate
        n = int(math.ceil(j.n_samples * fs / rate)) + 1

        def sub(frac, msg, _i=i, _n=src.name):
            report((_i + 0.9 * frac) / len(pairs), f"{_n}: {msg}")

        sub(0.0, "reading audio")
        audio = read_audio(src.audio, fs, label=f"source '{src.name}'")[0] * np.float32(10 ** (src.gain_db / 20))
        start = (src.start_frame - j.frame_start) / j.fps
        if f.kind == "anerf":
            y = render_anerf(f, audio, start, path, n, device=dev, check=check, report=sub)
        else:
            y = render_irfield(f, audio, start, path, n, device=dev, griffin_lim=griffin_lim, check=check,
                               report=sub)
        y = resample(y.astype(np.float32), fs, rate) if fs != rate else y
        y = np.asarray(y, np.float32)[: j.n_samples]
        if len(y) < j.n_samples:
            y = np.pad(y, ((0, j.n_samples - len(y)), (0, 0)))
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) if len(y) else 0.0
        levels[src.name] = round(20 * np.log10(max(rms, 1e-12)), 2)
        mix += y
    check()
    if not np.isfinite(mix).all():
        raise RuntimeError("field render produced non-finite samples")  # a bug, not a user error
    wall = time.perf_counter() - t0
    duration = j.n_samples / rate
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    kinds = sorted({f.kind for f, _ in pairs})
    info = {
        "format": "binaural", "sample_rate": rate, "channels": ["L", "R"], "frames": int(len(mix)),
        "duration_s": round(duration, 6), "frame_start": j.frame_start, "frame_end": j.frame_end, "fps": j.fps,
        "peak": round(peak, 6), "peak_dbfs": round(20 * np.log10(max(peak, 1e-12)), 2),
        "sources": {name: {"level_dbfs": lv} for name, lv in levels.items()},
        "listener": j.listener.name, "hrtf": None, "room": "learned field",
        "wall_time_s": round(wall, 3), "realtime_factor": round(duration / wall, 2) if wall > 0 else None,
        "backend": "+".join(f"field:{k}" for k in kinds), "device": str(dev),
        "model": str(model) if isinstance(model, (str, Path)) else "in memory",
        "fields": {src.name: f.source_name for f, src in pairs},
        "engine": f"soundstage {__version__}", "python": platform.python_version(),
        "notes": list(dict.fromkeys(notes)) + (["peak above 0 dBFS: lower source gains to avoid clipping on "
                                                "integer export"] if peak > 1.0 else []),
    }
    report(0.95, "writing")
    write_wav(j.output.path, mix, rate)
    side = sidecar_path(j.output.path)
    write_json(side, info)
    report(1.0, "done")
    return BakeResult(Path(j.output.path), side, info)
