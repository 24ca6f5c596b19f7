"""Render a validated job to audio in memory (no files written here).

A bake is the sum of every source's contribution, and every output sample of a
contribution is a fixed function of the whole job. So any range of output
samples can be rendered on its own (``time_range``): the direct path computes
its control points over the whole segment but only the samples and filter
blocks that reach the range, the early reflections only the frames whose
filtered blocks reach it, the late tail (computed once per source) is convolved
with just the stretch of the emitted signal that lands there. Stitching ranges
gives the whole render (``soundstage.chunks``; tests/test_chunks.py).

The pieces, for callers that schedule the work themselves (chunked and
distributed bakes):

* ``RenderContext(job)``: what every source shares (HRTF, decoder, listener
  frame, air absorption, binaural SH filters);
* ``source_signal``, ``source_images``, ``source_tail``: one source's emitted
  signal, image sources and late tail (the last two optionally cached);
* ``render_source``: one source's contribution to output samples [a, b);
* ``render_job``: all sources mixed, plus the 5.1 LFE.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.signal import butter, sosfilt

from soundstage.ambisonics import Decoder
from soundstage.direct import render_direct
from soundstage.dsp import SINC_TAPS
from soundstage.early import render_early
from soundstage.errors import Cancelled
from soundstage.job import Job
from soundstage.late import late_tail, residual_energy
from soundstage.materials import BANDS, air_attenuation
from soundstage.poses import listener_frame

BACKEND = "numpy-cpu"
#: 5.1 only: history rendered before a range so the LFE low-pass has settled
#: (its impulse response is 160 dB down after 65 ms).
LFE_WARMUP_S = 0.1
#: Cache-key version of the intermediates below (the code digest covers code changes).
KEY_VERSION = 1


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


class RenderContext:
    """What every source of a job shares.

    Parameters
    ----------
    job : Job
    report : callable(fraction, message), optional
        Told when the HRTF is being loaded.

    Attributes
    ----------
    job : Job
    fs : int
    c : float
    n_out : int
        Output samples of the whole job.
    fmt : str
    hrtf : HRTF or None
        Binaural only.
    decoder : Decoder
    air : ndarray, shape (B,)
        Air energy attenuation per band, 1/m (zeros when disabled).
    lis_pos : ndarray, shape (F, 3)
    lis_rot : ndarray, shape (F, 3, 3)
    sh_filters : ndarray, shape (2, C, L), or None
        Binaural SH-to-ear filters for the reflections.
    latency : int
        Samples the SH filters add to a plane wave.
    """

    def __init__(self, job: Job, report=None):
        report = report or (lambda f, m: None)
        self.job = job
        self.fs, self.c = job.sample_rate, job.speed_of_sound
        self.n_out = job.n_samples
        self.fmt = job.output.format
        self.opts = job.render
        self.hrtf = None
        if self.fmt == "binaural":
            from soundstage.hrtf import load_hrtf

            report(0.0, "loading HRTF")
            self.hrtf = load_hrtf(job.listener.hrtf, self.fs)
        self.decoder = Decoder(self.fmt, sh_order=self.opts.sh_order, ambisonic_order=job.output.ambisonic_order,
                               hrtf=self.hrtf)
        self.air = air_attenuation(np.asarray(BANDS, dtype=float)) if self.opts.air_absorption \
            else np.zeros(len(BANDS))
        self.lis_pos, self.lis_rot = listener_frame(job.listener.matrices)
        self.room = job.room
        self.sh_filters, self.latency = None, 0
        if self.room is not None and self.fmt == "binaural" and self.opts.reflection_order > 0:
            self.sh_filters = self.decoder.binaural_sh_filters()
            self.latency = self.decoder.binaural_latency
        self._scene_fp = None

    @property
    def n_channels(self) -> int:
        return self.decoder.n_channels

    @property
    def has_early(self) -> bool:
        return self.room is not None and self.opts.reflection_order > 0

    @property
    def has_late(self) -> bool:
        return self.room is not None and self.opts.late_reverb

    # -- fingerprints: everything that determines an intermediate, for cache keys ----------
    def scene_fingerprint(self) -> dict:
        """What every source's contribution depends on besides the source itself."""
        if self._scene_fp is None:
            from soundstage.cache import code_digest, file_digest, stable_digest

            j = self.job
            o = self.opts
            hrtf_digest = None
            if self.hrtf is not None:
                from soundstage.hrtf import _default_path

                hrtf_digest = file_digest(_default_path() if j.listener.hrtf == "default" else j.listener.hrtf)
            self._scene_fp = {
                "key_version": KEY_VERSION, "code": code_digest(),
                "sample_rate": self.fs, "fps": float(j.fps), "frame_start": j.frame_start, "frame_end": j.frame_end,
                "speed_of_sound": float(self.c), "room": stable_digest(j.room_spec),
                "listener": stable_digest(np.asarray(j.listener.matrices, dtype=float)),
                "hrtf": hrtf_digest, "format": self.fmt, "ambisonic_order": j.output.ambisonic_order,
                "render": [o.reflection_order, o.late_reverb, o.air_absorption, o.sh_order, o.seed],
            }
        return self._scene_fp

    def source_fingerprint(self, si: int) -> dict:
        """What one source contributes besides the scene: its audio, level, timing and path."""
        from soundstage.cache import file_digest, stable_digest

        src = self.job.sources[si]
        return {"index": si, "audio": file_digest(src.audio), "gain_db": float(src.gain_db),
                "start_frame": int(src.start_frame), "positions": stable_digest(np.asarray(src.positions, float))}

    def images_key(self, si: int) -> str:
        from soundstage.cache import code_digest, stable_digest

        return stable_digest("images", KEY_VERSION, code_digest(), self.job.room_spec,
                             np.asarray(self.job.sources[si].positions, float), self.lis_pos,
                             self.opts.reflection_order)

    def tail_key(self, si: int) -> str:
        from soundstage.cache import code_digest, stable_digest

        rep_src, rep_lis = self.representative_positions(si)
        fp = self.scene_fingerprint()
        return stable_digest("late", KEY_VERSION, code_digest(), self.job.room_spec, rep_src, rep_lis,
                             self.air, float(self.c), self.opts.reflection_order, self.fs, self.fmt,
                             self.decoder.sh_order, fp["hrtf"], self.opts.seed, si)

    def representative_positions(self, si: int) -> tuple[np.ndarray, np.ndarray]:
        """Source and listener positions the late tail is computed for (medians over the shot)."""
        return np.median(self.job.sources[si].positions, axis=0), np.median(self.lis_pos, axis=0)


def source_signal(ctx: RenderContext, si: int, audio_loader=None) -> tuple[np.ndarray, int]:
    """The emitted signal of source ``si`` on the output timeline.

    Returns
    -------
    sig : ndarray of float32, shape (pre + n_out,)
        ``sig[pre + n]`` leaves the source at output sample n.
    pre : int
        Samples of history (bounds the longest propagation delay plus the interpolator).
    """
    job, src = ctx.job, ctx.job.sources[si]
    loader = audio_loader or _read_source_audio
    audio = loader(src.audio, ctx.fs, f"source '{src.name}'") * np.float32(10 ** (src.gain_db / 20))
    max_dist = float(np.max(np.linalg.norm(src.positions - ctx.lis_pos, axis=1)))
    pre = int(np.ceil(max_dist / ctx.c * ctx.fs)) + 4 * SINC_TAPS + 256
    start_time = (src.start_frame - job.frame_start) / job.fps
    return emitted_signal(audio, start_time=start_time, fs=ctx.fs, n_out=ctx.n_out, pre=pre), pre


def compute_images(ctx: RenderContext, si: int):
    """Image sources of source ``si`` in every frame (None without a room or reflections)."""
    if not ctx.has_early:
        return None
    with single_threaded_blas():
        return ctx.room.early_images(ctx.job.sources[si].positions, ctx.lis_pos, ctx.opts.reflection_order)


def compute_tail(ctx: RenderContext, si: int):
    """The late tail of source ``si``, shape (L, n_channels) float32 (None without one)."""
    if not ctx.has_late:
        return None
    opts = ctx.opts
    rng = np.random.default_rng(opts.seed + si)
    rep_src, rep_lis = ctx.representative_positions(si)
    with single_threaded_blas():
        energy = residual_energy(ctx.room, rep_src, rep_lis, air=ctx.air, c=ctx.c,
                                 reflection_order=opts.reflection_order, rng=rng)
        return late_tail(energy, fs=ctx.fs, decoder=ctx.decoder, hrtf=ctx.hrtf, seed=opts.seed + 1000 + si)


def source_images(ctx: RenderContext, si: int, cache=None):
    """``compute_images`` through ``cache`` (a ``soundstage.cache.Cache`` or None)."""
    if not ctx.has_early:
        return None
    from soundstage.rooms.base import ImageSet

    key = ctx.images_key(si) if cache is not None else None
    if key is not None:
        hit = cache.get("images", key)
        if isinstance(hit, dict) and set(hit) == {"positions", "gains", "order", "valid"}:
            return ImageSet(hit["positions"], hit["gains"], hit["order"], hit["valid"])
    images = compute_images(ctx, si)
    if key is not None:
        cache.put("images", key, {"positions": images.positions, "gains": images.gains,
                                  "order": np.asarray(images.order), "valid": images.valid})
    return images


def source_tail(ctx: RenderContext, si: int, cache=None):
    """``compute_tail`` through ``cache`` (a ``soundstage.cache.Cache`` or None)."""
    if not ctx.has_late:
        return None
    key = ctx.tail_key(si) if cache is not None else None
    if key is not None:
        hit = cache.get("late", key)
        if isinstance(hit, np.ndarray) and hit.ndim == 2 and hit.shape[1] == ctx.n_channels:
            return hit
    tail = compute_tail(ctx, si)
    if key is not None:
        cache.put("late", key, tail)
    return tail


#: Smallest output block of the late convolution, samples.
MIN_LATE_BLOCK = 1 << 14


def late_blocks(tail_len: int) -> tuple[int, int]:
    """(block, nfft) of the late convolution's fixed output grid for a tail of ``tail_len`` samples."""
    nfft = sfft.next_fast_len(max(2 * tail_len, tail_len + MIN_LATE_BLOCK), real=True)
    return nfft - tail_len + 1, nfft


def convolve_range(sig, pre, tail, a, b):
    """Output samples [a, b) of ``sig`` convolved with ``tail`` (overlap-save on a fixed grid).

    Output sample n of the convolution is ``sum_j sig[pre + n - j] * tail[j]``.
    It is computed in blocks of B output samples that start at multiples of B
    (``late_blocks``), each from its own stretch of ``sig`` with one FFT size,
    so a block's samples are the same float32 numbers whichever range asked for
    them: chunked bakes stitch bit for bit. (``scipy.signal.oaconvolve`` chooses
    its blocks from the input's length, so two ranges would round differently.)

    Parameters
    ----------
    sig : ndarray, shape (pre + n_out,)
    pre : int
    tail : ndarray, shape (L, C)
    a, b : int
        Output samples [a, b).

    Returns
    -------
    ndarray of float32, shape (b - a, C)
    """
    L, C = tail.shape
    out = np.zeros((max(b - a, 0), C), dtype=np.float32)
    if b <= a or L == 0:
        return out
    B, nfft = late_blocks(L)
    H = None
    sig = np.asarray(sig, dtype=np.float32)
    for k in range(a // B, -(-b // B)):
        o0 = k * B
        s0 = pre + o0 - L + 1  # first input sample block k reads
        lo, hi = max(s0, 0), min(s0 + nfft, len(sig))
        if hi <= lo:
            continue
        if H is None:
            H = sfft.rfft(np.asarray(tail, dtype=np.float32), n=nfft, axis=0)
        seg = np.zeros(nfft, dtype=np.float32)
        seg[lo - s0 : hi - s0] = sig[lo:hi]
        y = sfft.irfft(sfft.rfft(seg)[:, None] * H, n=nfft, axis=0)[L - 1 :]  # (B, C): outputs o0 .. o0+B-1
        s, e = max(o0, a), min(o0 + B, b)
        out[s - a : e - a] = y[s - o0 : e - o0]
    return out


def render_source(ctx: RenderContext, si: int, sig, pre, *, images=None, tail=None, time_range=None,
                  cancel=None, report=None) -> np.ndarray:
    """One source's contribution (direct + early + late) to output samples [a, b).

    Parameters
    ----------
    ctx : RenderContext
    si : int
        Source index.
    sig, pre
        From ``source_signal``.
    images : ImageSet, optional
        From ``source_images`` (computed here when needed and not given).
    tail : ndarray, optional
        From ``source_tail`` (computed here when needed and not given).
    time_range : (int, int), optional
        Default the whole output.
    cancel : callable raising Cancelled, optional
    report : callable(fraction, message), optional

    Returns
    -------
    ndarray of float32, shape (b - a, n_channels)
    """
    with single_threaded_blas():
        return _render_source(ctx, si, sig, pre, images=images, tail=tail, time_range=time_range, cancel=cancel,
                              report=report)


def single_threaded_blas():
    """A context in which BLAS runs on one thread.

    Multi-threaded BLAS splits a matrix product differently for different
    thread counts, so its float32 rounding would depend on the machine's cores
    and on whether a part runs here or in a Dask worker (which runs BLAS on one
    thread). The products the renderers make are small and batched, so one
    thread is also faster. Parallelism comes from chunks and workers instead.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _render_source(ctx, si, sig, pre, *, images, tail, time_range, cancel, report):
    check = cancel or (lambda: None)
    report = report or (lambda f, m: None)
    a, b = (0, ctx.n_out) if time_range is None else (max(0, int(time_range[0])), min(ctx.n_out, int(time_range[1])))
    src, job = ctx.job.sources[si], ctx.job
    report(0.05, "direct sound")
    y = render_direct(sig, pre, src.positions, ctx.lis_pos, ctx.lis_rot, fps=job.fps, fs=ctx.fs, c=ctx.c,
                      n_out=ctx.n_out, decoder=ctx.decoder, hrtf=ctx.hrtf, cancel=check, time_range=(a, b))
    if ctx.has_early:
        check()
        report(0.35, "early reflections")
        if images is None:
            images = compute_images(ctx, si)
        y += render_early(sig, pre, images, ctx.lis_pos, ctx.lis_rot, fps=job.fps, fs=ctx.fs, c=ctx.c, air=ctx.air,
                          n_out=ctx.n_out, decoder=ctx.decoder, sh_filters=ctx.sh_filters, latency=ctx.latency,
                          cancel=check, time_range=(a, b))
    if ctx.has_late:
        check()
        report(0.75, "late reverberation")
        if tail is None:
            tail = compute_tail(ctx, si)
        check()
        y += convolve_range(sig, pre, tail, a, b)
    return y


def lfe_filter(fs: int):
    """The LFE low-pass (120 Hz, 4th-order Butterworth) as second-order sections."""
    return butter(4, 120.0, fs=fs, output="sos")


def add_lfe(out: np.ndarray, fs: int, zi=None):
    """Fill the LFE channel of a 5.1 mix in place; returns the filter state after it.

    The LFE carries the low-passed (120 Hz) sum of the five main channels at
    -10 dB, compensating the +10 dB in-band gain LFE gets on playback. ``zi``
    continues a filter state from an earlier stretch (None: start at rest).
    """
    sos = lfe_filter(fs)
    mains = out[:, [0, 1, 2, 4, 5]].sum(axis=1)
    if zi is None:
        zi = np.zeros((sos.shape[0], 2))
    low, zf = sosfilt(sos, mains, zi=zi)
    out[:, 3] = (low * 10 ** (-10 / 20)).astype(np.float32)
    return zf


def render_job(job: Job, *, progress=None, cancel=None, audio_loader=None, time_range=None,
               cache=None) -> RenderResult:
    """Render every source of ``job`` and mix them.

    Parameters
    ----------
    job : Job
    progress : callable(fraction, message), optional
    cancel : callable or threading.Event, optional
    audio_loader : callable(path, rate, label) -> ndarray, optional
        Defaults to ``soundstage.audio_io.read_audio``.
    time_range : (int, int), optional
        Output samples [a, b) to render (default all). Equal to the same samples
        of a whole render (5.1: the LFE low-pass starts ``LFE_WARMUP_S`` early).
    cache : soundstage.cache.Cache, optional
        Where image sources and late tails are looked up and stored.

    Returns
    -------
    RenderResult
        ``audio`` has shape (b - a, n_channels); ``source_levels_db`` are the
        RMS levels over that range.
    """
    check = make_canceller(cancel)
    report = progress or (lambda f, m: None)
    ctx = RenderContext(job, report)
    fmt = ctx.fmt
    a, b = (0, ctx.n_out) if time_range is None else (max(0, int(time_range[0])), min(ctx.n_out, int(time_range[1])))
    if b < a:
        raise ValueError(f"empty time range {time_range}")
    # 5.1: render a little history so the LFE filter is settled at sample a.
    wa = max(0, a - int(round(LFE_WARMUP_S * ctx.fs))) if fmt == "5.1" else a
    notes: list[str] = []
    out = np.zeros((b - wa, ctx.n_channels), dtype=np.float32)
    levels = {}
    n_src = len(job.sources)
    for si, src in enumerate(job.sources):
        base = si / n_src
        step = 1.0 / n_src

        def sub(frac, msg, _b=base, _s=step, _n=src.name):
            report(_b + _s * frac, f"{_n}: {msg}")

        check()
        sub(0.0, "reading audio")
        sig, pre = source_signal(ctx, si, audio_loader)
        images = source_images(ctx, si, cache) if cache is not None else None
        tail = source_tail(ctx, si, cache) if cache is not None else None
        y = render_source(ctx, si, sig, pre, images=images, tail=tail, time_range=(wa, b), cancel=check, report=sub)
        ys = y[a - wa :]
        rms = float(np.sqrt(np.mean(ys.astype(np.float64) ** 2))) if len(ys) else 0.0
        levels[src.name] = round(20 * np.log10(max(rms, 1e-12)), 2)
        out += y
    if ctx.room is not None:
        notes.extend(getattr(ctx.room, "notes", []))
    if fmt == "5.1":
        add_lfe(out, ctx.fs)
    report(1.0, "done")
    return RenderResult(out[a - wa :], channel_names(ctx.decoder), levels, list(dict.fromkeys(notes)))
