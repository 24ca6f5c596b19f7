"""Render a validated job to audio in memory (no files written here)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, oaconvolve, sosfilt

from soundstage.ambisonics import Decoder
from soundstage.direct import render_direct
from soundstage.dsp import SINC_TAPS
from soundstage.early import render_early
from soundstage.errors import Cancelled
from soundstage.job import Job
from soundstage.late import residual_energy, late_tail
from soundstage.materials import BANDS, air_attenuation
from soundstage.poses import listener_frame

BACKEND = "numpy-cpu"


@dataclass
class RenderResult:
    """Audio and facts about it.

    Attributes
    ----------
    audio : ndarray of float32, shape (n_samples, n_channels)
    channels : list of str
    source_levels_db : dict
        RMS level of each source's contribution, dBFS.
    notes : list of str
        Things the user should know (extrapolated tails, open meshes, ...).
    """

    audio: np.ndarray
    channels: list
    source_levels_db: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    backend: str = BACKEND


def make_canceller(cancel):
    """Turn a cancel flag (callable, Event or None) into a function that raises ``Cancelled``."""
    if cancel is None:
        return lambda: None
    if isinstance(cancel, threading.Event):
        flag = cancel.is_set
    elif callable(cancel):
        flag = cancel
    else:
        raise TypeError("cancel must be a callable or a threading.Event")

    def check():
        if flag():
            raise Cancelled("bake cancelled")

    return check


def channel_names(decoder: Decoder) -> list[str]:
    if decoder.format == "binaural" or decoder.format == "stereo":
        return ["L", "R"]
    if decoder.format == "5.1":
        return ["L", "R", "C", "LFE", "Ls", "Rs"]
    return [f"ACN{i}" for i in range(decoder.n_channels)]


def emitted_signal(audio, *, start_time, fs, n_out, pre):
    """Place a source's audio on the output timeline with ``pre`` samples of history.

    Returns
    -------
    ndarray of float32, shape (pre + n_out,)
        ``sig[pre + n]`` is what the source emits at output sample n.
    """
    sig = np.zeros(pre + n_out, dtype=np.float32)
    o = int(round(start_time * fs)) + pre
    a = max(0, -o)
    b = min(len(audio), len(sig) - o)
    if b > a:
        sig[o + a : o + b] = audio[a:b]
    return sig


def _read_source_audio(path, rate, label):
    from soundstage.audio_io import read_audio

    return read_audio(path, rate, label=label)[0]


def render_job(job: Job, *, progress=None, cancel=None, audio_loader=None) -> RenderResult:
    """Render every source of ``job`` and mix them.

    Parameters
    ----------
    job : Job
    progress : callable(fraction, message), optional
    cancel : callable or threading.Event, optional
    audio_loader : callable(path, rate, label) -> ndarray, optional
        Defaults to ``soundstage.audio_io.read_audio``.
    """
    check = make_canceller(cancel)
    report = progress or (lambda f, m: None)
    fs, c = job.sample_rate, job.speed_of_sound
    n_out = job.n_samples
    fmt = job.output.format
    opts = job.render
    notes: list[str] = []

    hrtf = None
    if fmt == "binaural":
        from soundstage.hrtf import load_hrtf

        report(0.0, "loading HRTF")
        hrtf = load_hrtf(job.listener.hrtf, fs)
    decoder = Decoder(fmt, sh_order=opts.sh_order, ambisonic_order=job.output.ambisonic_order, hrtf=hrtf)
    air = air_attenuation(np.asarray(BANDS, dtype=float)) if opts.air_absorption else np.zeros(len(BANDS))
    lis_pos, lis_rot = listener_frame(job.listener.matrices)
    room = job.room
    sh_filters, latency = None, 0
    if room is not None and fmt == "binaural" and opts.reflection_order > 0:
        sh_filters = decoder.binaural_sh_filters()
        latency = decoder.binaural_latency

    out = np.zeros((n_out, decoder.n_channels), dtype=np.float32)
    levels = {}
    n_src = len(job.sources)
    for si, src in enumerate(job.sources):
        base = si / n_src
        step = 1.0 / n_src

        def sub(frac, msg, _b=base, _s=step, _n=src.name):
            report(_b + _s * frac, f"{_n}: {msg}")

        check()
        sub(0.0, "reading audio")
        loader = audio_loader or _read_source_audio
        audio = loader(src.audio, fs, f"source '{src.name}'") * np.float32(10 ** (src.gain_db / 20))
        max_dist = float(np.max(np.linalg.norm(src.positions - lis_pos, axis=1)))
        pre = int(np.ceil(max_dist / c * fs)) + 4 * SINC_TAPS + 256
        start_time = (src.start_frame - job.frame_start) / job.fps
        sig = emitted_signal(audio, start_time=start_time, fs=fs, n_out=n_out, pre=pre)

        sub(0.05, "direct sound")
        y = render_direct(sig, pre, src.positions, lis_pos, lis_rot, fps=job.fps, fs=fs, c=c, n_out=n_out,
                          decoder=decoder, hrtf=hrtf, cancel=check)
        if room is not None and opts.reflection_order > 0:
            check()
            sub(0.35, "early reflections")
            images = room.early_images(src.positions, lis_pos, opts.reflection_order)
            y += render_early(sig, pre, images, lis_pos, lis_rot, fps=job.fps, fs=fs, c=c, air=air, n_out=n_out,
                              decoder=decoder, sh_filters=sh_filters, latency=latency, cancel=check)
        if room is not None and opts.late_reverb:
            check()
            sub(0.75, "late reverberation")
            rng = np.random.default_rng(opts.seed + si)
            rep_src = np.median(src.positions, axis=0)
            rep_lis = np.median(lis_pos, axis=0)
            energy = residual_energy(room, rep_src, rep_lis, air=air, c=c,
                                     reflection_order=opts.reflection_order, rng=rng)
            tail = late_tail(energy, fs=fs, decoder=decoder, hrtf=hrtf, seed=opts.seed + 1000 + si)
            check()
            for ch in range(decoder.n_channels):
                y[:, ch] += oaconvolve(sig, tail[:, ch])[pre : pre + n_out].astype(np.float32)
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) if n_out else 0.0
        levels[src.name] = round(20 * np.log10(max(rms, 1e-12)), 2)
        out += y
    if room is not None:
        notes.extend(getattr(room, "notes", []))
    if fmt == "5.1":
        # LFE: the low-passed (120 Hz) sum of the five main channels at -10 dB,
        # compensating the +10 dB in-band gain LFE gets on playback.
        sos = butter(4, 120.0, fs=fs, output="sos")
        mains = out[:, [0, 1, 2, 4, 5]].sum(axis=1)
        out[:, 3] = (sosfilt(sos, mains) * 10 ** (-10 / 20)).astype(np.float32)
    report(1.0, "done")
    return RenderResult(out, channel_names(decoder), levels, list(dict.fromkeys(notes)))
