"""Evaluating fields on held-out data, and the baselines they must beat.

Recording fields (A-NeRF) are scored like AV-NeRF's Table 1 on 1 s clips of the
held-out part of a walk (``soundstage.metrics``): MAG on STFT magnitudes and ENV on
Hilbert envelopes (both summed over the two ears), plus STFT distance, D-phase and
SNR. The baselines, as the paper defines them, use the source audio as it was played:

* **Mono-Mono**: the source clip copied to both ears;
* **Mono-Energy**: the source clip scaled so its mean energy equals the target's mean
  energy over both ears (an oracle level), copied to both ears;
* **Stereo-Energy**: the source clip scaled separately for each ear to that ear's mean
  energy (an oracle level per ear).

Because the field takes the propagation delay out of the source
(``Capture.retarded_source``), the same three baselines are also reported on the
delay-compensated source (``aligned``), so a win in ENV cannot come from alignment
alone. For the field MAG follows the paper's protocol (the predicted magnitudes against
the recording's); ``mag_wave`` re-analyses the field's output waveform instead.

Impulse-response fields are scored like AV-NeRF's SoundSpaces table: T60 error in
percent, C50 error in dB and EDT error in seconds between the predicted and the
simulated responses at held-out poses, averaged over poses and ears.
"""

from __future__ import annotations

import numpy as np
import torch

from soundstage import metrics
from soundstage.errors import SoundstageError
from soundstage.field.checkpoint import Field


def baseline_mono_mono(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Mono-Mono: the source (n,) on both ears, shape (2, n)."""
    return np.stack([src, src])


def baseline_mono_energy(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Mono-Energy: the source scaled to the target's mean energy over both ears, on both ears, shape (2, n)."""
    g = np.sqrt(np.mean(np.asarray(tgt, float) ** 2) / max(np.mean(np.asarray(src, float) ** 2), 1e-20))
    return np.stack([g * src, g * src])


def baseline_stereo_energy(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Stereo-Energy: the source scaled per ear to each ear's mean energy, shape (2, n)."""
    e_src = max(np.mean(np.asarray(src, float) ** 2), 1e-20)
    g = np.sqrt(np.mean(np.asarray(tgt, float) ** 2, axis=1) / e_src)
    return g[:, None] * np.asarray(src, float)[None, :]


BASELINES = {"mono_mono": baseline_mono_mono, "mono_energy": baseline_mono_energy,
             "stereo_energy": baseline_stereo_energy}


def _scores(pred_wav: np.ndarray, gt: dict, spectral, pred_mag: np.ndarray | None = None) -> dict:
    """Scores of one prediction (2, n) against a reference prepared by ``_reference``."""
    n_fft, hop = spectral.n_fft, spectral.hop
    P = metrics.stft(pred_wav, n_fft, hop)
    Pd = metrics.stft(pred_wav[0] - pred_wav[1], n_fft, hop)
    wave_mag = np.abs(P)
    s = {"mag": metrics.magnitude_distance_spectra(wave_mag if pred_mag is None else pred_mag, gt["mag"]),
         "env": metrics.envelope_distance(pred_wav, gt["wav"]),
         "stft": metrics.stft_distance_spectra(P, gt["spec"]),
         "dphase": metrics.dphase_distance_spectra(Pd, gt["diff"]),
         "snr": metrics.snr_db(pred_wav, gt["wav"])}
    if pred_mag is not None:
        s["mag_wave"] = metrics.magnitude_distance_spectra(wave_mag, gt["mag"])
    return s


def _reference(wav: np.ndarray, spectral) -> dict:
    S = metrics.stft(wav, spectral.n_fft, spectral.hop)
    return {"wav": wav, "spec": S, "mag": np.abs(S),
            "diff": metrics.stft(wav[0] - wav[1], spectral.n_fft, spectral.hop)}


def _mean(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@torch.no_grad()
def predict_clips(f: Field, clips, device="cpu", batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The field's magnitudes and waveforms for clips (one pose per clip, at its centre).

    Returns
    -------
    mag : ndarray, shape (N, 2, T, F)
    wav : ndarray, shape (N, 2, L)
        Inverse STFT with the (retarded) source's phase.
    """
    from soundstage.field.spectral import istft

    model = f.model.to(device).eval()
    spec = model.config.spectral
    pos_n = torch.as_tensor(f.normalise(clips.positions))
    scene = f.scene_features(clips.positions)
    mags, wavs = [], []
    L = clips.tgt_wav.shape[-1]
    for a in range(0, len(clips), batch):
        sl = slice(a, a + batch)
        sc = None if scene is None else torch.as_tensor(scene[sl]).to(device)
        out = model(clips.src_mag[sl].to(device), pos_n[sl].to(device), clips.azimuth[sl].to(device), sc)
        m = out["binaural"]
        X = m * torch.exp(1j * clips.src_phase[sl].to(device))[:, None]
        mags.append(m.cpu().numpy())
        wavs.append(istft(X, spec, L).cpu().numpy())
    return np.concatenate(mags), np.concatenate(wavs)


def evaluate_anerf(f: Field, cap, split: str = "val", device="cpu", clips=None) -> dict:
    """Scores of a recording field and of the baselines on a capture's clips.

    Returns
    -------
    dict
        ``{"clips": N, "field": {...}, "mono_mono": {...}, "mono_energy": {...},
        "stereo_energy": {...}, "aligned": {baseline: {...}}, "warning": str or None}``;
        each score dict holds ``mag``, ``env``, ``stft``, ``dphase`` and ``snr``.
    """
    from soundstage.field.train import prepare_clips

    spec = f.model.config.spectral
    if clips is None:
        clips = prepare_clips(cap, split, spec)
    mag, wav = predict_clips(f, clips, device)
    gt = clips.tgt_wav.numpy().astype(float)
    refs = [_reference(g, spec) for g in gt]
    n = len(clips)
    res = {"clips": n, "field": _mean([_scores(wav[i], refs[i], spec, mag[i]) for i in range(n)])}
    for name, fn in BASELINES.items():
        res[name] = _mean([_scores(fn(clips.played_wav[i].numpy(), gt[i]), refs[i], spec) for i in range(n)])
    res["aligned"] = {name: _mean([_scores(fn(clips.src_wav[i].numpy(), gt[i]), refs[i], spec) for i in range(n)])
                      for name, fn in BASELINES.items()}
    res["warning"] = f.area_warning(clips.positions, "evaluation poses")
    return res


@torch.no_grad()
def predict_irs(f: Field, positions: np.ndarray, frames: np.ndarray, *, griffin_lim: int = 8, device="cpu",
                batch: int = 64) -> np.ndarray:
    """Impulse responses from an impulse-response field at poses.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
    frames : ndarray, shape (N, 3, 3)
        Listener frames (ahead, left, up columns).

    Returns
    -------
    ndarray, shape (N, 2, ir_samples), float32
    """
    from soundstage.field.data import SPEED_OF_SOUND, source_azimuth, source_elevation
    from soundstage.field.irfield import early_stft, pose_prior, prior_from_early, synthesize

    model = f.model.to(device).eval()
    cfg = model.config
    pos_n = torch.as_tensor(f.normalise(positions))
    az = torch.as_tensor(source_azimuth(positions, frames, f.source_position), dtype=torch.float32)
    el = torch.as_tensor(source_elevation(positions, frames, f.source_position), dtype=torch.float32)
    dist = np.linalg.norm(positions - f.source_position, axis=1)
    delays = torch.as_tensor(dist / SPEED_OF_SOUND * cfg.sample_rate)
    dist = torch.as_tensor(dist, dtype=torch.float32)
    scene = f.scene_features(positions)
    out = []
    for a in range(0, len(positions), batch):
        sl = slice(a, a + batch)
        sc = None if scene is None else torch.as_tensor(scene[sl]).to(device)
        early = None
        if cfg.early_render:  # the engine's early response: the prior, and the phase to synthesise it with
            early = early_stft(f.room, f.source_position, positions[sl], frames[sl], cfg)
            pr = prior_from_early(early, cfg)
            early = early.to(device)
        else:
            pr = pose_prior(f.room, f.source_position, positions[sl], frames[sl], cfg)
        pr = None if pr is None else torch.as_tensor(pr).to(device)
        lm = model(pos_n[sl].to(device), az[sl].to(device), el[sl].to(device), dist[sl].to(device), sc, pr)
        out.append(synthesize(lm, delays[sl].to(device), cfg, griffin_lim, early=early).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, cfg.ir_samples), np.float32)


def ir_errors(pred: np.ndarray, gt: np.ndarray, fs: int) -> dict:
    """T60 (%), C50 (dB) and EDT (s) errors of predicted responses, averaged over responses and ears.

    Parameters
    ----------
    pred, gt : ndarray, shape (N, 2, L)

    Returns
    -------
    dict
        ``t60_pct``, ``c50_db``, ``edt_s`` (mean absolute errors; EDT as ISO 3382),
        ``edt_crossing_s`` (the same for ``metrics.edt_crossing``) and the ground
        truth's mean ``t60_s``, ``c50_db_gt``, ``edt_s_gt``; responses whose decay
        cannot be measured are counted in ``skipped``.
    """
    rows, skipped = [], 0
    for p, g in zip(pred, gt):
        for c in range(2):
            try:
                t_g, t_p = metrics.t30(g[c], fs), metrics.t30(p[c], fs)
                e_g, e_p = metrics.edt(g[c], fs), metrics.edt(p[c], fs)
            except ValueError:
                skipped += 1
                continue
            c_g, c_p = metrics.clarity(g[c], fs), metrics.clarity(p[c], fs)
            x_g, x_p = metrics.edt_crossing(g[c], fs), metrics.edt_crossing(p[c], fs)
            rows.append((100 * abs(t_p - t_g) / t_g, abs(c_p - c_g), abs(e_p - e_g), t_g, c_g, e_g, abs(x_p - x_g)))
    if not rows:
        raise SoundstageError("no impulse response decays far enough to measure T60; use longer responses")
    r = np.asarray(rows)
    return {"t60_pct": float(r[:, 0].mean()), "c50_db": float(r[:, 1].mean()), "edt_s": float(r[:, 2].mean()),
            "edt_crossing_s": float(r[:, 6].mean()),
            "t60_s": float(r[:, 3].mean()), "c50_db_gt": float(r[:, 4].mean()), "edt_s_gt": float(r[:, 5].mean()),
            "responses": int(len(pred)), "skipped": skipped}


def evaluate_irfield(f: Field, irset, split: str = "val", *, griffin_lim: int = 8, device="cpu") -> dict:
    """Scores of an impulse-response field at a set's poses (T60, C50, EDT errors)."""
    from soundstage.field.data import listener_axes

    idx = irset.select(split)
    if len(idx) == 0:
        raise SoundstageError(f"{irset.path}: no {split} impulse responses")
    pos, rot = listener_axes(irset.matrices[idx])
    pred = predict_irs(f, pos, rot, griffin_lim=griffin_lim, device=device)
    L = pred.shape[-1]
    gt = irset.irs[idx][..., :L]
    if gt.shape[-1] < L:
        gt = np.pad(gt, ((0, 0), (0, 0), (0, L - gt.shape[-1])))
    res = ir_errors(pred, gt, irset.sample_rate)
    res["warning"] = f.area_warning(pos, "evaluation poses")
    return res


def pick_field(fields: list[Field], data, which: str | int | None = None) -> Field:
    """The field of a (stacked) model that matches the data: by ``which`` (name or index), else the data's name."""
    if which is not None:
        if isinstance(which, int) or str(which).isdigit():
            i = int(which)
            if not 0 <= i < len(fields):
                raise SoundstageError(f"the model has {len(fields)} field(s); no field {i}")
            return fields[i]
        for f in fields:
            if f.source_name == which:
                return f
        raise SoundstageError(f"the model has no field named {which!r} (it has "
                              f"{', '.join(repr(f.source_name) for f in fields)})")
    name = getattr(data, "name", None)
    for f in fields:
        if f.source_name == name:
            return f
    return fields[0]


def evaluate(model_path, data_path, *, split: str = "val", field: str | int | None = None, device=None,
             griffin_lim: int = 8) -> dict:
    """Evaluate a model file on data (what ``soundstage field eval`` prints)."""
    from soundstage.field.checkpoint import load_fields
    from soundstage.field.data import IRSet, load_data
    from soundstage.field.train import pick_device

    dev = pick_device(device)
    fields = load_fields(model_path, dev)
    data = load_data(data_path)
    f = pick_field(fields, data, field)
    if isinstance(data, IRSet):
        if f.kind != "irfield":
            raise SoundstageError(f"'{data_path}' is an impulse-response set but the field is a recording field")
        res = evaluate_irfield(f, data, split, griffin_lim=griffin_lim, device=dev)
    else:
        if f.kind != "anerf":
            raise SoundstageError(f"'{data_path}' is a recording but the field is an impulse-response field")
        res = evaluate_anerf(f, data, split, dev)
    res.update(kind=f.kind, source=f.source_name, split=split)
    return res
