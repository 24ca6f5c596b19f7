"""Training fields: A-NeRF from recording walks, impulse-response fields from IR sets.

``train_fields`` is what ``soundstage field train`` and Blender's bridge call. It
reads each data folder (one source each; several folders give a stacked model),
prepares clips or impulse responses, trains with Adam on a fixed schedule, reports
progress, checks for cancellation every step, writes a resumable training checkpoint
every ``checkpoint_every`` steps, and finally the model file. Everything random is
seeded (initial weights, batches, feature noise), so the same inputs and options give
the same model, and a resumed run the same model as an uninterrupted one.

Presets
-------
``small`` trains in minutes on a 2-core CPU (64-wide MLPs, 8-channel refinement on
48-frame crops); ``paper`` is the AV-NeRF size (128-wide, 4 layers, 16 channels).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundstage.errors import SoundstageError
from soundstage.field.checkpoint import (
    DEFAULT_AREA_RADIUS, TRAINING_FORMAT, VERSION, Field, field_from_record, load_training, save_fields,
)
from soundstage.field.data import SPEED_OF_SOUND, Capture, IRSet, load_data, source_azimuth

PRESETS = {
    "anerf": {
        "small": {"model": {"hidden": 64, "layers": 3, "pos_freqs": 4, "freq_freqs": 8, "conv": True,
                            "conv_channels": 8},
                  "steps": 1000, "batch_size": 16, "lr": 2e-3, "crop_frames": 16, "clip_stride_s": 0.5},
        "paper": {"model": {"hidden": 128, "layers": 4, "pos_freqs": 6, "freq_freqs": 10, "conv": True,
                            "conv_channels": 16},
                  "steps": 20000, "batch_size": 32, "lr": 5e-4, "crop_frames": None, "clip_stride_s": 0.5},
    },
    "irfield": {
        "small": {"model": {"hidden": 128, "layers": 4, "pos_freqs": 3, "freq_freqs": 6, "early_render": True},
                  "steps": 4000, "batch_size": 16, "lr": 1e-3, "decay_loss": 1.0},
        "paper": {"model": {"hidden": 128, "layers": 4, "pos_freqs": 4, "freq_freqs": 6, "early_render": True},
                  "steps": 20000, "batch_size": 32, "lr": 5e-4, "decay_loss": 1.0},
    },
}


@dataclass
class TrainOptions:
    """What to train and how (everything optional has a preset default).

    Attributes
    ----------
    preset : str
        ``"small"`` or ``"paper"``.
    steps, batch_size : int, optional
    lr : float, optional
        Peak learning rate (5 % linear warm-up, then exponential decay to 1 %).
    seed : int
    scene : str
        ``"auto"`` (scene features when the data has a room), ``"on"`` or ``"off"``.
    use_direction : bool
        False is the ablation without the direction input.
    conv : bool, optional
        A-NeRF's convolution refinement (preset: on).
    early_render : bool, optional
        Impulse-response fields: start from the engine's own direct sound and early
        reflections (``IRFieldConfig.early_render``; preset: on). Turn it off for
        responses this engine did not make (measured ones), whose early part it
        would not reproduce.
    model : dict
        Further model settings (``ANeRFConfig`` / ``IRFieldConfig`` fields).
    crop_frames : int, optional
        A-NeRF: train on random crops of this many STFT frames (0: whole clips).
    clip_stride_s : float, optional
        A-NeRF: spacing of training clips in a capture.
    scene_noise : float
        Standard deviation of the noise added to scene features in training (AV-NeRF: 0.1).
    decay_loss : float, optional
        Impulse-response fields: weight of the energy-decay term (``decay_loss``).
    checkpoint_every : int
        Steps between training checkpoints.
    device : str, optional
        Default: ``cuda`` when available, else ``cpu``.
    threads : int, optional
        CPU threads torch may use while training (default: torch's own choice, one per
        core). On a busy machine one thread can be many times faster than two
        (docs/field.md, Figures); it does not change what is learned beyond rounding.
    """

    preset: str = "small"
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    scene: str = "auto"
    use_direction: bool = True
    conv: bool | None = None
    early_render: bool | None = None
    model: dict = field(default_factory=dict)
    crop_frames: int | None = None
    clip_stride_s: float | None = None
    scene_noise: float = 0.1
    decay_loss: float | None = None
    checkpoint_every: int = 250
    device: str | None = None
    threads: int | None = None

    def resolved(self, kind: str) -> dict:
        """Concrete settings for a field kind (``"anerf"`` / ``"irfield"``)."""
        if self.preset not in PRESETS[kind]:
            raise SoundstageError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS[kind])}")
        if self.scene not in ("auto", "on", "off"):
            raise SoundstageError(f"scene must be auto, on or off, got {self.scene!r}")
        p = PRESETS[kind][self.preset]
        model = dict(p["model"])
        model.update(self.model)
        model["use_direction"] = bool(self.use_direction)
        if kind == "anerf" and self.conv is not None:
            model["conv"] = bool(self.conv)
        if kind == "irfield" and self.early_render is not None:
            model["early_render"] = bool(self.early_render)
        r = {"kind": kind, "preset": self.preset, "model": model,
             "steps": int(self.steps or p["steps"]), "batch_size": int(self.batch_size or p["batch_size"]),
             "lr": float(self.lr or p["lr"]), "seed": int(self.seed), "scene": self.scene,
             "scene_noise": float(self.scene_noise)}
        if kind == "irfield":
            r["decay_loss"] = float(p["decay_loss"] if self.decay_loss is None else self.decay_loss)
        if kind == "anerf":
            r["crop_frames"] = int(p["crop_frames"] or 0) if self.crop_frames is None else int(self.crop_frames)
            r["clip_stride_s"] = float(self.clip_stride_s or p["clip_stride_s"])
        if r["steps"] < 1 or r["batch_size"] < 1 or not r["lr"] > 0:
            raise SoundstageError("steps and batch size must be at least 1 and the learning rate positive")
        return r


@dataclass
class TrainResult:
    """What training produced.

    Attributes
    ----------
    path : Path
        The model file.
    fields : list of Field
    info : list of dict
        Per field: data, steps, seconds, final loss, device.
    """

    path: Path
    fields: list
    info: list


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with torch limited to ``n`` intra-op CPU threads (None: leave as is), then restore."""
    if n is None:
        yield
        return
    if int(n) < 1:
        raise SoundstageError(f"threads must be at least 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- shared pieces
def normaliser(positions: np.ndarray, metric: bool) -> tuple[np.ndarray, float]:
    """Centre and scale that map the training positions into about [-1, 1] (same scale on every axis)."""
    p = np.asarray(positions, float)
    lo, hi = p.min(0), p.max(0)
    centre = (lo + hi) / 2
    scale = max(float(np.max(hi - lo)) / 2 * 1.1, 0.5 if metric else 1e-3)
    return centre, scale


def _area_sample(positions: np.ndarray, n: int = 2000) -> np.ndarray:
    p = np.asarray(positions, float)
    if len(p) <= n:
        return p
    return p[np.linspace(0, len(p) - 1, n).round().astype(int)]


def lr_at(step: int, steps: int, lr: float) -> float:
    """5 % linear warm-up, then exponential decay from ``lr`` to ``lr / 100``."""
    warm = max(1, int(0.05 * steps))
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.01 ** ((step - warm) / max(1, steps - warm))


def _scene_for(opts: dict, room, metric: bool, where: str) -> bool:
    if opts["scene"] == "off":
        return False
    if room is None or not metric:
        if opts["scene"] == "on":
            raise SoundstageError(f"{where}: scene features need a room in metres; add \"room\" to the capture "
                                  "(for a splat scene: soundstage splats room SCENE.ply --out room.json)")
        return False
    return True


# --------------------------------------------------------------------------- A-NeRF data
@dataclass
class ClipSet:
    """Clips of a capture ready for the field (tensors on the CPU).

    Attributes
    ----------
    centres : ndarray, shape (N,)
    src_mag, src_phase : Tensor, shape (N, T, F)
        STFT of the (retarded) source clip.
    tgt_mag : Tensor, shape (N, 2, T, F)
    tgt_wav : Tensor, shape (N, 2, L)
    src_wav : Tensor, shape (N, L)
        Retarded source clip.
    played_wav : Tensor, shape (N, L)
        The source as played (no propagation delay), for the paper's baselines.
    positions : ndarray, shape (N, 3)
    azimuth : Tensor, shape (N,)
    """

    centres: np.ndarray
    src_mag: torch.Tensor
    src_phase: torch.Tensor
    tgt_mag: torch.Tensor
    tgt_wav: torch.Tensor
    src_wav: torch.Tensor
    played_wav: torch.Tensor
    positions: np.ndarray
    azimuth: torch.Tensor

    def __len__(self) -> int:
        return len(self.centres)


def prepare_clips(cap: Capture, split: str, spectral, *, clip_s: float = 1.0, stride_s: float = 0.5,
                  retarded: np.ndarray | None = None) -> ClipSet:
    """Cut a capture into 1 s clips of a split and take their STFTs (AV-NeRF's setting)."""
    from soundstage.dsp import fractional_read
    from soundstage.field.spectral import stft

    fs = cap.sample_rate
    L = int(round(clip_s * fs))
    centres = cap.clip_centres(split, clip_s, stride_s)
    if len(centres) == 0:
        raise SoundstageError(f"{cap.path}: no {split} clips (the {split} part of the walk is shorter than "
                              f"{clip_s:g} s); record longer or change the holdout")
    ret = cap.retarded_source() if retarded is None else retarded
    t = np.arange(len(cap.recording)) / fs
    played = fractional_read(cap.source, (t - cap.source_start_s) * fs)
    starts = np.round((centres - clip_s / 2) * fs).astype(int)
    idx = np.clip(starts[:, None] + np.arange(L)[None, :], 0, len(cap.recording) - 1)
    tgt = torch.as_tensor(cap.recording[idx].transpose(0, 2, 1).copy())
    src = torch.as_tensor(ret[idx])
    ply = torch.as_tensor(played[idx])
    S = stft(src, spectral)
    pos, rot = cap.poses()(centres)
    return ClipSet(centres=centres, src_mag=S.abs(), src_phase=torch.angle(S), tgt_mag=stft(tgt, spectral).abs(),
                   tgt_wav=tgt, src_wav=src, played_wav=ply, positions=pos,
                   azimuth=torch.as_tensor(source_azimuth(pos, rot, cap.source_position), dtype=torch.float32))


# --------------------------------------------------------------------------- IR data
@dataclass
class IRBatchSet:
    """Impulse responses of a split ready for the field."""

    index: np.ndarray
    positions: np.ndarray
    azimuth: torch.Tensor
    elevation: torch.Tensor
    delays: torch.Tensor
    target: torch.Tensor  # (N, 2, T, F) aligned log-magnitudes
    irs: np.ndarray  # (N, 2, L)
    frames: np.ndarray | None = None  # (N, 3, 3) listener frames (ahead, left, up columns)

    def __len__(self) -> int:
        return len(self.index)


def prepare_irs(irset: IRSet, split: str, config) -> IRBatchSet:
    from soundstage.field.data import listener_axes
    from soundstage.field.irfield import aligned_log_magnitude

    idx = irset.select(split)
    if len(idx) == 0:
        raise SoundstageError(f"{irset.path}: no {split} impulse responses")
    pos, rot = listener_axes(irset.matrices[idx])
    d = np.linalg.norm(pos - irset.source_position, axis=1)
    delays = d / SPEED_OF_SOUND * irset.sample_rate
    L = config.ir_samples
    irs = irset.irs[idx][..., :L]
    if irs.shape[-1] < L:
        irs = np.pad(irs, ((0, 0), (0, 0), (0, L - irs.shape[-1])))
    from soundstage.field.data import source_elevation

    return IRBatchSet(index=idx, positions=pos, azimuth=torch.as_tensor(source_azimuth(pos, rot,
                      irset.source_position), dtype=torch.float32),
                      elevation=torch.as_tensor(source_elevation(pos, rot, irset.source_position),
                                                dtype=torch.float32),
                      delays=torch.as_tensor(delays), target=aligned_log_magnitude(irs, delays, config), irs=irs,
                      frames=rot)


# --------------------------------------------------------------------------- the loop
def _fingerprint(opts: dict, data: list[str]) -> str:
    blob = json.dumps({k: v for k, v in opts.items() if k != "steps"}, sort_keys=True) + "|" + "|".join(data)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Checkpointer:
    """Writes and reads the resumable training checkpoint."""

    def __init__(self, path: Path, fingerprint: str, every: int):
        self.path, self.fingerprint, self.every = path, fingerprint, max(1, int(every))

    def save(self, done: list[Field], current: dict | None) -> None:
        from soundstage.audio_io import atomic_path

        doc = {"format": TRAINING_FORMAT, "version": VERSION, "fingerprint": self.fingerprint,
               "done": [f.to_record() for f in done], "current": current}
        with atomic_path(self.path) as tmp:
            torch.save(doc, tmp)

    def load(self, device) -> dict | None:
        if not self.path.exists():
            return None
        doc = load_training(self.path, device)
        if doc.get("fingerprint") != self.fingerprint:
            raise SoundstageError(f"training checkpoint '{self.path}' was made with other data or options; "
                                  "train without --resume (or delete it) to start over")
        return doc


def _fit(model, n_items: int, batch_fn, loss_fn, opts: dict, *, device, report, check, resume_state=None,
         save_state=None, every: int = 250) -> tuple[float, int]:
    """Adam on random batches; returns (mean loss of the last 50 steps, steps run now)."""
    gen = torch.Generator().manual_seed(opts["seed"] + 1)
    optim = torch.optim.Adam(model.parameters(), lr=opts["lr"])
    step = 0
    if resume_state is not None:
        optim.load_state_dict(resume_state["optimizer"])
        gen.set_state(resume_state["rng"])
        step = int(resume_state["step"])
    steps = opts["steps"]
    recent: list[float] = []
    t_last = 0.0
    ran = 0
    model.train()
    while step < steps:
        check()
        for g in optim.param_groups:
            g["lr"] = lr_at(step, steps, opts["lr"])
        idx = torch.randint(n_items, (min(opts["batch_size"], n_items),), generator=gen)
        loss = loss_fn(batch_fn(idx, gen))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        ran += 1
        recent = (recent + [float(loss.detach())])[-50:]
        now = time.monotonic()
        if now - t_last > 0.5 or step == steps:
            t_last = now
            report(step / steps, f"step {step}/{steps}, loss {np.mean(recent):.4g}")
        if save_state is not None and (step % every == 0 or step == steps):
            save_state({"optimizer": optim.state_dict(), "rng": gen.get_state(), "step": step})
    model.eval()
    return float(np.mean(recent)) if recent else float("nan"), ran


def _train_anerf(cap: Capture, opts: dict, device, report, check, resume, save_state, every) -> Field:
    from soundstage.field.model import ANeRF, ANeRFConfig, anerf_loss

    use_scene = _scene_for(opts, cap.room, cap.metric, str(cap.path))
    cfg_d = dict(opts["model"])
    cfg = ANeRFConfig(**cfg_d)
    report(0.0, "preparing clips")
    clips = prepare_clips(cap, "train", cfg.spectral, stride_s=opts["clip_stride_s"])
    dense_t = np.concatenate([np.arange(c - 0.5, c + 0.5, 0.1) for c in clips.centres])
    dense_pos, _ = cap.poses()(dense_t)
    centre, scale = normaliser(dense_pos, cap.metric)
    scene_feats = None
    if use_scene:
        from soundstage.field.scene import SceneFeatures

        sf = SceneFeatures(cap.room, cap.source_position)
        cfg.scene_dim = sf.dim
        scene_feats = torch.as_tensor(sf(clips.positions)).to(device)
    torch.manual_seed(opts["seed"])
    model = ANeRF(cfg).to(device)
    if resume is not None:
        model.load_state_dict(resume["state"])
    pos_n = torch.as_tensor(((clips.positions - centre) / scale).astype(np.float32)).to(device)
    az = clips.azimuth.to(device)
    src_mag, tgt_mag = clips.src_mag.to(device), clips.tgt_mag.to(device)
    T = src_mag.shape[1]
    crop = opts["crop_frames"] if 0 < opts["crop_frames"] < T else 0

    def batch(idx, gen):
        idx = idx.to(device)
        s, t = src_mag[idx], tgt_mag[idx]
        if crop:
            t0 = int(torch.randint(T - crop + 1, (1,), generator=gen))
            s, t = s[:, t0:t0 + crop], t[:, :, t0:t0 + crop]
        sc = None
        if scene_feats is not None:
            sc = scene_feats[idx]
            if opts["scene_noise"] > 0:
                sc = sc + opts["scene_noise"] * torch.randn(sc.shape, generator=gen).to(device)
        return model(s, pos_n[idx], az[idx], sc), t

    def loss_fn(b):
        out, t = b
        return anerf_loss(out, t)

    def save(st):
        st["state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        st["config"] = cfg.as_dict()
        save_state(st)

    t0 = time.perf_counter()
    loss, ran = _fit(model, len(clips), batch, loss_fn, opts, device=device, report=report, check=check,
                     resume_state=resume, save_state=save, every=every)
    radius = DEFAULT_AREA_RADIUS if cap.metric else 0.2 * scale
    info = {"data": str(cap.path), "layout": cap.layout, "clips": len(clips), "steps": opts["steps"],
            "seconds": round(time.perf_counter() - t0, 2), "steps_run": ran, "final_loss": loss,
            "device": str(device), "scene_features": use_scene, "options": opts}
    return Field(kind="anerf", model=model.cpu(), centre=centre, scale=scale, source_name=_source_name(cap),
                 source_position=cap.source_position, level_gain=cap.level_gain, metric=cap.metric,
                 room=cap.room if use_scene else None, train_positions=_area_sample(dense_pos),
                 area_radius=radius, info=info)


def _source_name(data) -> str:
    return str(getattr(data, "name", "source") or "source")


def decay_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 distance of broadband energy envelopes and of Schroeder decay curves, in nepers of energy.

    T60, EDT and C50 are read off the broadband energy decay of a response, a
    quantity the bin-wise log-magnitude loss weighs no more than any other bin; this
    term holds it directly (AV-NeRF's code adds a similar energy term).

    Parameters
    ----------
    pred, target : Tensor, shape (B, 2, T, F)
        Log-magnitudes.
    """
    e_p, e_t = torch.logsumexp(2 * pred, -1), torch.logsumexp(2 * target, -1)  # log energy per frame
    edc_p = torch.logcumsumexp(e_p.flip(-1), -1).flip(-1)  # log of the energy still to come
    edc_t = torch.logcumsumexp(e_t.flip(-1), -1).flip(-1)
    return (e_p - e_t).abs().mean() + (edc_p - edc_t).abs().mean()


def _train_irfield(irs: IRSet, opts: dict, device, report, check, resume, save_state, every) -> Field:
    from soundstage.field.irfield import IRField, IRFieldConfig

    use_scene = _scene_for(opts, irs.room, True, str(irs.path))
    cfg = IRFieldConfig(**opts["model"])
    cfg.ir_samples = int(min(irs.irs.shape[-1], cfg.ir_samples)) if "ir_samples" not in opts["model"] \
        else cfg.ir_samples
    report(0.0, "preparing impulse responses")
    data = prepare_irs(irs, "train", cfg)
    centre, scale = normaliser(data.positions, True)
    scene_feats = None
    # The reflection prior needs the room, like the scene features.
    cfg.prior_order = int(opts["model"].get("prior_order", 2)) if use_scene else 0
    if use_scene:
        from soundstage.field.scene import SceneFeatures

        sf = SceneFeatures(irs.room, irs.source_position)
        cfg.scene_dim = sf.dim
        scene_feats = torch.as_tensor(sf(data.positions)).to(device)
    from soundstage.field.irfield import pose_prior

    prior = pose_prior(irs.room, irs.source_position, data.positions, data.frames, cfg)
    prior = None if prior is None else torch.as_tensor(prior).to(device)
    torch.manual_seed(opts["seed"])
    model = IRField(cfg).to(device)
    if resume is not None:
        model.load_state_dict(resume["state"])
    pos_n = torch.as_tensor(((data.positions - centre) / scale).astype(np.float32)).to(device)
    az = data.azimuth.to(device)
    dist = torch.as_tensor(np.linalg.norm(data.positions - irs.source_position, axis=1),
                           dtype=torch.float32).to(device)
    el = data.elevation.to(device)
    target = data.target.to(device)

    def batch(idx, gen, noise=True):
        idx = idx.to(device)
        sc = None
        if scene_feats is not None:
            sc = scene_feats[idx]
            if noise and opts["scene_noise"] > 0:
                sc = sc + opts["scene_noise"] * torch.randn(sc.shape, generator=gen).to(device)
        pr = None if prior is None else prior[idx]
        return model(pos_n[idx], az[idx], el[idx], dist[idx], sc, pr), target[idx]

    w_decay = float(opts.get("decay_loss", 0.0))

    def loss_fn(b):
        pred, t = b
        loss = torch.nn.functional.mse_loss(pred, t)
        if w_decay > 0:
            loss = loss + w_decay * decay_loss(pred, t)
        return loss

    def save(st):
        st["state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        st["config"] = cfg.as_dict()
        save_state(st)

    t0 = time.perf_counter()
    loss, ran = _fit(model, len(data), batch, loss_fn, opts, device=device, report=report, check=check,
                     resume_state=resume, save_state=save, every=every)
    report(1.0, "calibrating")
    model.eval()
    model.calibrate(batch(torch.arange(a, min(a + 64, len(data))), None, noise=False)
                    for a in range(0, len(data), 64))
    info = {"data": str(irs.path), "layout": "irs", "responses": len(data), "steps": opts["steps"],
            "seconds": round(time.perf_counter() - t0, 2), "steps_run": ran, "final_loss": loss,
            "device": str(device), "scene_features": use_scene, "options": opts}
    return Field(kind="irfield", model=model.cpu(), centre=centre, scale=scale, source_name=_source_name(irs),
                 source_position=irs.source_position, metric=True, room=irs.room if use_scene else None,
                 train_positions=_area_sample(data.positions), area_radius=DEFAULT_AREA_RADIUS, info=info)


def train_fields(data, out, options: TrainOptions | None = None, *, resume: bool = False, progress=None,
                 cancel=None) -> TrainResult:
    """Train one field per data folder and write them as one model file.

    Parameters
    ----------
    data : path or list of paths
        Capture folders, RWAVS scene folders or impulse-response sets (one source
        each). All must be of one family: recordings (A-NeRF) or impulse responses.
    out : path
        The model file to write (``.pt``); the resumable training checkpoint goes
        beside it as ``<stem>.train.pt``.
    options : TrainOptions, optional
    resume : bool
        Continue from the training checkpoint if there is one (it must come from the
        same data and options; ``steps`` may differ).
    progress : callable(fraction, message), optional
    cancel : callable or threading.Event, optional
        Polled every step; raises ``Cancelled`` (the last training checkpoint stays,
        the model file is not written).

    Returns
    -------
    TrainResult

    Raises
    ------
    SoundstageError
        Bad data or options, with one line.
    """
    opts_in = options or TrainOptions()
    with torch_threads(opts_in.threads):
        return _train_fields(data, out, opts_in, resume=resume, progress=progress, cancel=cancel)


def _train_fields(data, out, opts_in: TrainOptions, *, resume, progress, cancel) -> TrainResult:
    from soundstage.render import make_canceller

    paths = [data] if isinstance(data, (str, Path)) else list(data)
    if not paths:
        raise SoundstageError("no data given; pass a capture folder, an RWAVS scene or an impulse-response set")
    out = Path(out)
    if out.suffix != ".pt":
        raise SoundstageError(f"model file '{out}' should end in .pt")
    if not out.parent.is_dir():
        raise SoundstageError(f"cannot write '{out}': folder '{out.parent}' does not exist")
    report = progress or (lambda f, m: None)
    check = make_canceller(cancel)
    device = pick_device(opts_in.device)
    datasets = []
    for i, p in enumerate(paths):
        report(0.0, f"reading {p}")
        datasets.append(load_data(p))
    kinds = {"irfield" if isinstance(d, IRSet) else "anerf" for d in datasets}
    if len(kinds) > 1:
        raise SoundstageError("cannot stack a recording field and an impulse-response field in one model; "
                              "train them separately")
    kind = kinds.pop()
    opts = opts_in.resolved(kind)
    names = [_source_name(d) for d in datasets]
    if len(set(names)) != len(names):  # stacked fields are matched to job sources by name
        names = [f"{n} {i + 1}" for i, n in enumerate(names)]
    ckpt = _Checkpointer(out.with_name(out.stem + ".train.pt"), _fingerprint(opts, [str(Path(p).resolve())
                                                                                     for p in paths]),
                         opts_in.checkpoint_every)
    state = ckpt.load(device) if resume else None
    done: list[Field] = []
    if state is not None:
        done = [field_from_record(r, f"training checkpoint field {i}") for i, r in enumerate(state["done"])]
    n = len(datasets)
    for i, d in enumerate(datasets):
        if i < len(done):
            continue
        cur = state["current"] if state is not None and state.get("current") and \
            state["current"].get("index") == i else None
        if cur is not None and cur.get("steps") != opts["steps"]:
            cur = dict(cur)  # a longer or shorter run continues with the new schedule

        def sub(frac, msg, _i=i):
            report((_i + frac) / n, f"field {_i + 1}/{n}: {msg}")

        def save_state(st, _i=i):
            st.update(index=_i, steps=opts["steps"])
            ckpt.save(done, st)

        fn = _train_irfield if kind == "irfield" else _train_anerf
        f = fn(d, opts, device, sub, check, cur, save_state, ckpt.every)
        f.source_name = names[i]
        done.append(f)
        ckpt.save(done, None)
    report(1.0, f"writing {out}")
    save_fields(out, done)
    return TrainResult(out, done, [f.info for f in done])
