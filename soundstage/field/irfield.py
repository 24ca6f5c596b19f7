"""The impulse-response field: binaural impulse responses at any listener pose.

AV-NeRF's SoundSpaces setting (after NAF and INRAS) learns impulse responses rather
than a recording. Here the field predicts the log-magnitude STFT of the binaural
impulse response, in the A-NeRF arrangement:

* one query row per frequency bin: positional encodings of the normalised position
  and of the frequency, plus optional scene features;
* a mixture MLP whose output layer gives the bin's **whole time course at once**
  (one value per frame, which keeps a pose to F rows instead of F x T);
* a difference MLP with the four interpolated **direction embeddings** giving half
  the left-minus-right log-magnitude per frame;
* both also give one value per bin for the **direct sound**, whose time profile and
  1/d^2 level are known (``IRField.forward``), summed with the rest in energy.

Three pieces of physics keep the field small and exact where it matters:

* **direct-sound alignment**: the field learns responses shifted so the direct sound
  always arrives ``pre_samples`` after time 0; a response is placed back at
  ``d / c`` (``d`` the source distance) by an exact band-limited delay. The field
  then never has to learn a sharp onset that moves with position;
* **the direct sound**: its time profile and its 1/d^2 level are known, only its
  spectrum (the head's filtering) is learned;
* **phase**: the waveform is the inverse STFT of the predicted magnitude with the
  phase of a fixed carrier (an impulse at the aligned onset followed by decaying
  noise), refined by a few Griffin-Lim iterations. The direct sound stays compact,
  so onset-based measures (C50, EDT) are kept: with true magnitudes this
  reconstruction is within 0.3 % (T60), 0.1 dB (C50) and 3 ms (EDT) of the original
  (``tests/test_field_evaluate.py``).

With ``early_render`` (the presets' setting for a field trained on the engine's
responses), the direct sound and the early reflections are not learned at all: the
engine's own arithmetic renders them at each pose (``EarlyRenderer``: the room's image
sources, the HRTF, the SH-to-ear filters, their phases and so their interference),
the field adds what the network predicts for the rest (the late reverberation) and a
correction per bin and ear, and the synthesis starts from the early response's own
phase where it dominates. This took the small preset's held-out EDT error from 0.033 s
to 0.019 s (docs/field.md, Figures); what remains is mostly the engine's late
reverberation being noise: two renders of one pose with different noise seeds differ
by 0.012 s in EDT.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn

from soundstage.field.model import DirectionEmbedding, Encoding, SkipMLP
from soundstage.field.spectral import Spectral, istft, stft

#: STFT frames after the aligned onset that hold the direct sound (its window's span).
DIRECT_FRAMES = 6


@dataclass
class IRFieldConfig:
    """Hyper-parameters of an impulse-response field (stored in checkpoints).

    Attributes
    ----------
    hidden, layers : int
        MLP width and depth.
    pos_freqs, freq_freqs : int
        Octaves of the position and frequency encodings.
    n_directions : int
        Direction embeddings (4).
    scene_dim : int
        Scene feature length (0: none).
    use_direction : bool
    n_fft, hop, sample_rate : int
        STFT of the responses (128/32 at 22,050 Hz: 5.8 ms windows keep the direct
        sound compact).
    ir_samples : int
        Length of a response.
    pre_samples : int
        Where the aligned direct sound sits.
    floor : float
        Magnitude floor of the log (about -120 dB re full scale).
    smooth_bins : int
        Training targets are the root of the energy averaged over this many
        neighbouring frequency bins (see ``aligned_log_magnitude``).
    prior_order : int
        Reflection order of the room's image-source prior (``reflection_prior``);
        0 without a room.
    early_render : bool
        Start from the engine's own direct sound and early reflections at each pose
        (``early_prior``): rendered as the engine renders them, through the same HRTF
        and SH-to-ear filters, summed with their phases, so their interference and
        the head's filtering are exact; the network learns the late reverberation and
        a correction per bin and ear. Reflections up to ``prior_order`` (the engine's
        default 2); the direct sound alone without a room. False in checkpoints from
        before this option.
    """

    hidden: int = 128
    layers: int = 4
    pos_freqs: int = 4
    freq_freqs: int = 6
    n_directions: int = 4
    scene_dim: int = 0
    use_direction: bool = True
    n_fft: int = 128
    hop: int = 32
    sample_rate: int = 22050
    ir_samples: int = 11025
    pre_samples: int = 32
    floor: float = 1e-6
    smooth_bins: int = 7
    prior_order: int = 0
    early_render: bool = False

    @property
    def spectral(self) -> Spectral:
        return Spectral(self.sample_rate, self.n_fft, self.hop)

    @property
    def n_frames(self) -> int:
        return self.spectral.n_frames(self.ir_samples)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IRFieldConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown impulse-response field settings {sorted(unknown)}")
        return cls(**d)


class IRField(nn.Module):
    """Log-magnitude STFTs of binaural impulse responses at poses.

    Parameters
    ----------
    config : IRFieldConfig
    """

    def __init__(self, config: IRFieldConfig):
        super().__init__()
        self.config = c = config
        self.n_bins = c.n_fft // 2 + 1
        T = c.n_frames
        self.pos_enc = Encoding(3, c.pos_freqs)
        self.freq_enc = Encoding(1, c.freq_freqs)
        self.query_pos = nn.Linear(self.pos_enc.out_dim, c.hidden)
        self.query_freq = nn.Linear(self.freq_enc.out_dim, c.hidden, bias=False)
        self.elev_enc = Encoding(1, 2)
        self.query_elev = nn.Linear(self.elev_enc.out_dim, c.hidden, bias=False)
        self.scene = (nn.Sequential(nn.Linear(c.scene_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.hidden))
                      if c.scene_dim > 0 else None)
        self.mix_mlp = SkipMLP(c.hidden, c.layers)
        self.mix_directions = DirectionEmbedding(c.n_directions, c.layers, c.hidden)
        self.mix_out = nn.Linear(c.hidden, T)
        self.directions = DirectionEmbedding(c.n_directions, c.layers, c.hidden)
        self.diff_mlp = SkipMLP(c.hidden, c.layers)
        # Per bin: the rest's left-right difference per frame, then (without the early
        # render) the direct sound's spectrum per ear and frame, then the prior's gain per ear.
        n_direct = 0 if c.early_render else 2 * DIRECT_FRAMES
        n_gain = 2 if (c.prior_order > 0 or c.early_render) else 0
        self.diff_out = nn.Linear(c.hidden, T + n_direct + n_gain)
        self.register_buffer("freqs", torch.linspace(-1.0, 1.0, self.n_bins)[:, None], persistent=False)
        # Energy of a unit impulse at the aligned onset in each STFT frame: the time
        # profile of the direct sound (the same in every bin).
        imp = torch.zeros(c.ir_samples, dtype=torch.float64)
        imp[c.pre_samples] = 1.0
        prof = (stft(imp, c.spectral).abs() ** 2).mean(-1)
        self.register_buffer("direct_profile", torch.log(prof + 1e-12).float(), persistent=False)
        # Per-frame log-energy calibration, fitted on the training set after training
        # (``calibrate``); saved with the weights.
        self.register_buffer("energy_correction", torch.zeros(T))
        with torch.no_grad():  # start near a quiet response instead of 0 dB everywhere
            self.mix_out.bias.fill_(math.log(1e-3))
            self.diff_out.weight.mul_(0.1)

    def forward(self, pos: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor,
                scene: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted log-magnitudes.

        The energy of every time-frequency cell is the direct sound plus the rest:
        ``E(t, f) = W(t) G(f)^2 / d^2 + exp(2 b(t, f))``. The direct sound is an
        impulse at the aligned onset whose time profile ``W`` through the STFT window
        is known, whose level falls off as ``1 / d^2`` (applied analytically), and
        whose spectrum ``G`` (the head's filtering, learned per bin and ear by the
        direction-aware MLP) is all the network has to learn about it. ``b`` is the
        early reflections and reverberation, one value per frame and bin; unlike
        A-NeRF's mixture mask it depends on the direction too (a second set of
        direction embeddings feeds the mixture MLP), because how loud the room
        sounds at the two ears depends on where the head points. Without
        this split the network has to learn the direct sound's steep level change near
        the source and its sharp onset from the encodings alone, which it does badly
        (C50 errors of several dB within a metre of the source).

        Parameters
        ----------
        pos : Tensor, shape (B, 3)
            Normalised positions.
        azimuth, elevation : Tensor, shape (B,)
            Direction of the source in the listener frame, radians.
        distance : Tensor, shape (B,)
            Distance to the source, metres.
        scene : Tensor, shape (B, scene_dim), optional
        prior : Tensor, shape (B, T, F) or (B, 2, T, F), optional
            Log energy of the room's early reflections (``reflection_prior``, shape
            (B, T, F)), needed when ``prior_order`` > 0; added in energy with a learned
            gain per bin and ear (the head's filtering of reflections, absorption the
            room file misses). With ``early_render``: the log energy of the engine's
            direct sound and early reflections per ear (``early_prior``, shape
            (B, 2, T, F)), which then stands in for the modelled direct sound.

        Returns
        -------
        Tensor, shape (B, 2, T, F)
            Natural log of the STFT magnitude of the aligned left and right responses.
        """
        c = self.config
        if not c.use_direction:
            azimuth, elevation = torch.zeros_like(azimuth), torch.zeros_like(elevation)
        qp = self.query_pos(self.pos_enc(pos)) + self.query_elev(self.elev_enc(elevation[:, None] / (math.pi / 2)))
        q = torch.relu(qp[:, None, :] + self.query_freq(self.freq_enc(self.freqs)))
        if self.scene is not None:
            if scene is None:
                raise ValueError("this field was trained with scene features; pass them")
            q = q + self.scene(scene)[:, None, :]
        h = self.mix_mlp(q, self.mix_directions(azimuth)[:, None])
        mono = self.mix_out(h)  # (B, F, T): the rest, per frame
        T, K = c.n_frames, DIRECT_FRAMES
        d = self.diff_out(self.diff_mlp(h, self.directions(azimuth)[:, None]))  # (B, F, T [+ 2K] [+ 2])
        rest = torch.stack([mono + d[..., :T], mono - d[..., :T]], 1)  # (B, 2, F, T)
        if c.early_render:
            if prior is None or prior.dim() != 4:
                raise ValueError("this field starts from the engine's early response; pass early_prior's output")
            gain = d[..., T:T + 2].transpose(1, 2)[..., None]  # (B, 2, F, 1)
            logE = torch.logaddexp(2 * rest, prior.transpose(-1, -2) + 2 * gain)
            return (0.5 * (logE + self.energy_correction)).transpose(-1, -2)
        direct = d[..., T:T + 2 * K].reshape(d.shape[0], d.shape[1], 2, K).transpose(1, 2)  # (B, 2, F, K) at 1 m
        spread = -2 * torch.log(distance.clamp_min(0.1)).to(mono.dtype)[:, None, None, None]
        head = torch.logaddexp(self.direct_profile[:K] + 2 * direct + spread, 2 * rest[..., :K])
        logE = torch.cat([head, 2 * rest[..., K:]], -1)
        if c.prior_order > 0:
            if prior is None:
                raise ValueError("this field uses the room's reflection prior; pass it")
            gain = d[..., T + 2 * K:].transpose(1, 2)[..., None]  # (B, 2, F, 1)
            logE = torch.logaddexp(logE, prior.transpose(-1, -2)[:, None] + 2 * gain)
        return (0.5 * (logE + self.energy_correction)).transpose(-1, -2)

    @torch.no_grad()
    def calibrate(self, predict_batches) -> torch.Tensor:
        """Fit ``energy_correction``: per frame, the log of true over predicted energy on the training set.

        A regression in the log domain predicts the mean of the log, which lies below
        the log of the mean energy wherever the prediction is uncertain (Jensen's
        inequality); early frames, whose reflection pattern is hardest to pin down,
        come out too quiet, which biases C50 and EDT. One number per frame, fitted in
        the energy domain over all training poses, ears and bins, removes that bias.

        Parameters
        ----------
        predict_batches : iterable of (Tensor, Tensor)
            ``(predicted, target)`` log-magnitudes, shapes (B, 2, T, F), with the
            correction currently in place.

        Returns
        -------
        Tensor, shape (T,)
        """
        num = den = 0.0
        for pred, target in predict_batches:
            num = num + torch.exp(2 * target.double()).sum((0, 1, 3))
            den = den + torch.exp(2 * pred.double()).sum((0, 1, 3))
        self.energy_correction += torch.log(num / den).float()
        return self.energy_correction


def impulse_profile(delays: np.ndarray, config: IRFieldConfig) -> np.ndarray:
    """Energy of unit impulses at sample ``delays`` in each STFT frame, shape (..., T).

    Frame k's periodic Hann window starts at ``k * hop - n_fft / 2``, so an impulse
    at sample ``s`` is weighted by ``w(s - k hop + n_fft / 2)`` in every bin.
    """
    n, hop = config.n_fft, config.hop
    m = np.asarray(delays, float)[..., None] - np.arange(config.n_frames) * hop + n / 2
    w = np.where((m >= 0) & (m < n), 0.5 - 0.5 * np.cos(2 * np.pi * m / n), 0.0)
    return w ** 2


def reflection_prior(room: dict, source, positions: np.ndarray, config: IRFieldConfig,
                     chunk: int = 256) -> np.ndarray:
    """Log energy of the room's early reflections in the aligned STFT grid, shape (N, T, F).

    The room's image sources up to ``prior_order`` (the engine's own, with their
    octave-band wall losses), each an impulse ``(r - d) / c`` after the direct sound
    with amplitude ``gain(f) / r``, summed in energy (no interference) through the
    STFT window. Only geometry and materials: no head, no air, no late reverberation.

    Parameters
    ----------
    room : dict
        Job-format room.
    source : (3,) array_like
    positions : ndarray, shape (N, 3)
        Listener positions.
    """
    from soundstage.dsp import band_interpolation
    from soundstage.field.data import SPEED_OF_SOUND
    from soundstage.rooms.factory import room_from_spec

    r_model = room_from_spec(room, "room")
    P = np.asarray(positions, float).reshape(-1, 3)
    N, T, F = len(P), config.n_frames, config.n_fft // 2 + 1
    out = np.full((N, T, F), 2 * math.log(config.floor), np.float32)
    if r_model is None or config.prior_order <= 0 or N == 0:
        return out
    fs = config.sample_rate
    interp = band_interpolation(F, fs)  # (B, F)
    src = np.asarray(source, float)
    for a in range(0, N, chunk):
        p = P[a:a + chunk]
        imgs = r_model.early_images(np.broadcast_to(src, p.shape).copy(), p, config.prior_order)
        r = np.linalg.norm(imgs.positions - p[:, None, :], axis=-1)  # (n, I)
        d = np.linalg.norm(p - src, axis=1)
        delay = config.pre_samples + (r - d[:, None]) / SPEED_OF_SOUND * fs
        W = impulse_profile(delay, config) * imgs.valid[..., None]  # (n, I, T)
        amp2 = (np.einsum("nib,bf->nif", imgs.gains, interp) / np.maximum(r, 0.1)[..., None]) ** 2
        E = np.einsum("nit,nif->ntf", W, amp2)
        out[a:a + chunk] = np.log(E + config.floor ** 2)
    return out


class EarlyRenderer:
    """The engine's binaural direct sound and early reflections at static poses, in the field's aligned grid.

    The same arithmetic as the engine (``direct.render_direct`` and
    ``early.render_early`` for one static frame): the direct sound is the HRIR pair
    interpolated for the source's direction, each ear read ``ear_delay`` after the
    path's delay, at ``1 / d``; each image source is a plane wave with its band
    amplitudes (wall losses, air, ``1 / r``) interpolated over frequency, encoded in
    spherical harmonics and decoded to the ears by the engine's SH-to-ear filters.
    Everything is summed as spectra with exact fractional delays, so what the field
    is given matches the engine's early response sample by sample (below 7.6 kHz;
    above, the engine's fractional-delay reader rolls the direct sound off a little,
    ``tests/test_field_priors.py``). Built once per setting (``early_renderer``).

    Parameters
    ----------
    config : IRFieldConfig
    hrtf : str
        The listener's HRTF as in a job (``"default"``: the embedded MIT KEMAR).
    sh_order : int
        The engine's SH order for reflections (its default 3).
    """

    def __init__(self, config: IRFieldConfig, hrtf: str = "default", sh_order: int = 3):
        from soundstage.ambisonics import Decoder
        from soundstage.dsp import BANDS
        from soundstage.hrtf import load_hrtf
        from soundstage.materials import air_attenuation

        self.config = config
        fs = config.sample_rate
        self.hrtf = load_hrtf(hrtf, fs)
        self.decoder = Decoder("binaural", sh_order=sh_order, hrtf=self.hrtf)
        filt = self.decoder.binaural_sh_filters()  # (2, C, Lf), a plane wave at sample `latency`
        self.latency = int(self.decoder.binaural_latency)
        # Aligned time t sits at buffer sample t + margin: room for the filters'
        # samples before their plane wave and for zero-phase pre-ringing.
        self.margin = self.latency + 64
        self._filters = filt
        self._grids: dict = {}
        self.air = air_attenuation(np.asarray(BANDS, float))  # energy, 1/m

    def _grid(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """SH-to-ear filter spectra (2, C, K) and band weights (B, K) for transform size ``n``."""
        from soundstage.dsp import band_interpolation

        if n not in self._grids:
            self._grids[n] = (np.fft.rfft(self._filters, n, axis=-1).astype(np.complex64),
                              band_interpolation(n // 2 + 1, self.config.sample_rate).astype(np.float32))
        return self._grids[n]

    def render(self, room, source, positions: np.ndarray, frames: np.ndarray, order: int) -> np.ndarray:
        """Aligned early responses (direct sound at ``pre_samples``), shape (N, 2, ir_samples).

        Parameters
        ----------
        room : soundstage.rooms.base.Room or None
            None: the direct sound only.
        source : (3,) array_like
        positions : ndarray, shape (N, 3)
        frames : ndarray, shape (N, 3, 3)
            Listener frames (ahead, left, up columns).
        order : int
            Highest reflection order.
        """
        from soundstage.early import image_arrivals
        from soundstage.field.data import SPEED_OF_SOUND

        c = self.config
        fs = c.sample_rate
        P = np.asarray(positions, float).reshape(-1, 3)
        src = np.asarray(source, float)
        rel = src[None, :] - P
        d = np.linalg.norm(rel, axis=1)
        hr, ear_delay = self.hrtf.interpolate(_listener_directions(rel, frames))
        # The engine reads the source ear_delay - lead / fs after the path's delay and
        # filters it with the HRIR, whose onset sits at sample `lead`.
        shift = c.pre_samples + ear_delay * fs - self.hrtf.lead + self.margin  # (N, 2)
        last = float(shift.max(initial=0.0)) + hr.shape[-1]
        images = room is not None and order > 0 and len(P) > 0
        if images:
            imgs = room.early_images(np.broadcast_to(src, P.shape).copy(), P, order)
            # The engine's own arrivals: delays (samples after emission), directions in
            # the listener frame, band amplitudes with air and 1/r (zero where invalid).
            arrival, dirs, amp = image_arrivals(imgs, P, np.asarray(frames, float), fs=fs, c=SPEED_OF_SOUND,
                                                air=self.air)
            amp = amp.astype(np.float32)  # (N, I, B)
            tau = c.pre_samples + arrival - (d / SPEED_OF_SOUND * fs)[:, None] + self.margin - self.latency
            tau = np.where(imgs.valid, tau, 0.0)
            last = max(last, float(tau.max(initial=0.0)) + self._filters.shape[-1])
            Y = self.decoder.sh_gains(dirs.reshape(-1, 3)).reshape(len(P), -1, self._filters.shape[1])
            Y = Y.astype(np.float32)  # (N, I, C)
        # A transform just long enough for the early response (it is zero after), with
        # room for the fractional delays' sinc tails that wrap around.
        n = 1 << int(math.ceil(math.log2(last + 1024)))
        K = n // 2 + 1
        k = np.arange(K)
        H = np.fft.rfft(hr, n, axis=-1) * np.exp(-2j * np.pi * k * shift[..., None] / n) / d[:, None, None]
        if images:
            D, W = self._grid(n)
            step = 64  # exp(-2 pi j k tau / n) as (coarse x fine) outer products, as the engine builds them
            Kp = -(-K // step) * step
            kc = np.arange(0, Kp, step, dtype=np.float32)
            kf = np.arange(step, dtype=np.float32)
            for a in range(len(P)):  # one pose at a time keeps the (I, K) phasors small
                ph = np.float32(-2 * np.pi / n) * tau[a].astype(np.float32)[:, None]
                A = (np.exp(1j * ph * kc)[:, :, None] * np.exp(1j * ph * kf)[:, None, :]).reshape(len(ph), Kp)[:, :K]
                A *= amp[a] @ W  # band amplitudes interpolated over frequency, (I, K)
                H[a] += np.einsum("eck,ck->ek", D, Y[a].T @ A)
        y = np.fft.irfft(H, n, axis=-1)[..., self.margin:self.margin + c.ir_samples]
        if y.shape[-1] < c.ir_samples:
            y = np.pad(y, ((0, 0), (0, 0), (0, c.ir_samples - y.shape[-1])))
        return y


_RENDERERS: dict = {}


def early_renderer(config: IRFieldConfig, hrtf: str = "default") -> EarlyRenderer:
    """The ``EarlyRenderer`` of a configuration, built once per process."""
    key = (config.sample_rate, config.ir_samples, config.pre_samples, hrtf)
    if key not in _RENDERERS:
        _RENDERERS[key] = EarlyRenderer(config, hrtf)
    return _RENDERERS[key]


def _listener_directions(vectors: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """World vectors (N, ..., 3) as unit vectors in each listener's frame (frames (N, 3, 3))."""
    v = np.asarray(vectors, float)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)
    return np.einsum("nji,n...j->n...i", np.asarray(frames, float), v)


def early_stft(room: dict | None, source, positions: np.ndarray, frames: np.ndarray,
               config: IRFieldConfig) -> torch.Tensor:
    """STFT of the engine's aligned direct sound and early reflections (``EarlyRenderer``), shape (N, 2, T, F).

    Reflections up to ``prior_order``; the direct sound alone without a room.

    Parameters
    ----------
    room : dict or None
        Job-format room.
    source : (3,) array_like
    positions : ndarray, shape (N, 3)
    frames : ndarray, shape (N, 3, 3)
        Listener frames (ahead, left, up columns).
    """
    from soundstage.rooms.factory import room_from_spec

    r_model = room_from_spec(room, "room") if room is not None else None
    y = early_renderer(config).render(r_model, source, positions, frames, config.prior_order)
    return stft(torch.as_tensor(y, dtype=torch.float32), config.spectral)  # single precision: ~2x faster


def early_prior(room: dict | None, source, positions: np.ndarray, frames: np.ndarray, config: IRFieldConfig,
                chunk: int = 64) -> np.ndarray:
    """Log energy of the engine's direct sound and early reflections, shape (N, 2, T, F).

    What ``IRField.forward`` takes as ``prior`` with ``early_render``: ``early_stft``
    as smoothed log energies, exactly like the training targets
    (``aligned_log_magnitude``). Arguments as ``early_stft``.
    """
    P = np.asarray(positions, float).reshape(-1, 3)
    out = np.empty((len(P), 2, config.n_frames, config.n_fft // 2 + 1), np.float32)
    for a in range(0, len(P), chunk):
        S = early_stft(room, source, P[a:a + chunk], np.asarray(frames)[a:a + chunk], config)
        out[a:a + chunk] = prior_from_early(S, config).numpy()
    return out


def prior_from_early(early: torch.Tensor, config: IRFieldConfig) -> torch.Tensor:
    """``early_prior`` from an ``early_stft``: smoothed log energy, shape (N, 2, T, F)."""
    return 2 * smoothed_log_magnitude(early.abs().numpy() ** 2, config)


def pose_prior(room: dict | None, source, positions: np.ndarray, frames: np.ndarray,
               config: IRFieldConfig) -> np.ndarray | None:
    """The ``prior`` a field's configuration asks for at poses, or None.

    Returns
    -------
    ndarray, shape (N, 2, T, F) (``early_render``) or (N, T, F) (``prior_order`` > 0), or None
    """
    if config.early_render:
        return early_prior(room, source, positions, frames, config)
    if config.prior_order > 0:
        return reflection_prior(room, source, positions, config)
    return None


def aligned_log_magnitude(irs: np.ndarray, delays: np.ndarray, config: IRFieldConfig) -> torch.Tensor:
    """Training targets: responses advanced by their direct-sound delay, as smoothed log STFT magnitudes.

    The reverberant part of a response is noise-like: its STFT magnitudes scatter
    like a Rayleigh variable around the energy envelope, and the mean of their log
    lies 0.29 neper (2.5 dB in energy) below the log of their root-mean-square. A
    field fitted to raw log-magnitudes would therefore render reverberation 2.5 dB too
    quiet (C50 and EDT off by that much) while direct sound stays right. The targets
    are instead ``0.5 log`` of the energy averaged over ``smooth_bins`` neighbouring
    bins, whose log is nearly unbiased (0.04 neper for 7 bins) and which smooths
    only across frequency, never across time, so onsets stay sharp.

    Parameters
    ----------
    irs : ndarray, shape (N, 2, L)
    delays : ndarray, shape (N,)
        Direct-sound delays in samples (distance / c * rate).

    Returns
    -------
    Tensor, shape (N, 2, T, F), float32
    """
    x = torch.as_tensor(np.asarray(irs, np.float64))
    shift = torch.as_tensor(config.pre_samples - np.asarray(delays, float))  # negative: advance
    y = delay(x, shift, config.ir_samples)
    return smoothed_log_magnitude(stft(y, config.spectral).abs().numpy() ** 2, config)


def smoothed_log_magnitude(power: np.ndarray, config: IRFieldConfig) -> torch.Tensor:
    """``0.5 log`` of STFT power averaged over ``smooth_bins`` bins (``aligned_log_magnitude``).

    Parameters
    ----------
    power : ndarray, shape (..., T, F)

    Returns
    -------
    Tensor, shape (..., T, F), float32
    """
    from scipy.ndimage import uniform_filter1d

    if config.smooth_bins > 1:
        power = uniform_filter1d(power, config.smooth_bins, axis=-1, mode="reflect")
    return torch.as_tensor(0.5 * np.log(power + config.floor ** 2)).float()


def delay(x: torch.Tensor, samples: torch.Tensor, length: int) -> torch.Tensor:
    """Delay signals by fractional amounts (negative: advance), exactly band-limited.

    The signal is zero-padded to well beyond the largest shift and multiplied by a
    linear phase in the frequency domain, so nothing wraps around.

    Parameters
    ----------
    x : Tensor, shape (N, C, L)
    samples : Tensor, shape (N,)
    length : int
        Output length.

    Returns
    -------
    Tensor, shape (N, C, length)
    """
    n = x.shape[-1]
    span = int(math.ceil(float(samples.abs().max()))) if samples.numel() else 0
    nfft = 1 << int(math.ceil(math.log2(max(n, length) + 2 * span + 64)))
    X = torch.fft.rfft(x, nfft)
    k = torch.arange(X.shape[-1], dtype=X.real.dtype, device=x.device)
    ph = torch.exp(-2j * math.pi * k[None, :] * samples.to(X.real.dtype)[:, None] / nfft)
    y = torch.fft.irfft(X * ph[:, None, :], nfft)
    # A negative shift moves the head of the signal to the end of the period.
    return y[..., :length]


def _carrier_phase(config: IRFieldConfig, device=None) -> torch.Tensor:
    """Phase (T, F) of an impulse at ``pre_samples`` followed by decaying noise (fixed seed)."""
    L = config.ir_samples
    g = np.random.default_rng(12345)
    car = np.zeros(L)
    p = config.pre_samples
    car[p] = 1.0
    tail = g.standard_normal(L - p - 1) * 0.05 * np.exp(-np.arange(L - p - 1) / (0.1 * config.sample_rate))
    car[p + 1:] += tail
    S = stft(torch.as_tensor(car, device=device), config.spectral)
    return torch.angle(S).float()


def synthesize(logmag: torch.Tensor, delays: torch.Tensor, config: IRFieldConfig,
               griffin_lim: int = 8, early: torch.Tensor | None = None) -> torch.Tensor:
    """Waveforms from predicted log-magnitudes, placed at their direct-sound delays.

    Parameters
    ----------
    logmag : Tensor, shape (B, 2, T, F)
    delays : Tensor, shape (B,)
        Direct-sound delays in samples.
    griffin_lim : int
        Griffin-Lim iterations after the starting phase (0: starting phase only).
    early : Tensor of complex, shape (B, 2, T, F), optional
        STFT of the engine's early response (``early_stft``): where it holds at least
        half a cell's predicted energy, its phase is the starting phase, so the
        direct sound and early reflections keep their shape and timing; elsewhere
        the fixed carrier's.

    Returns
    -------
    Tensor, shape (B, 2, ir_samples)
    """
    spec = config.spectral
    L = config.ir_samples
    mag = torch.exp(logmag.float())
    phase = _carrier_phase(config, logmag.device)
    if early is not None:
        dominant = early.abs() ** 2 >= 0.5 * mag ** 2
        phase = torch.where(dominant, torch.angle(early).float(), phase)
    X = mag * torch.exp(1j * phase)
    for _ in range(griffin_lim):
        y = istft(X, spec, L)
        X = mag * torch.exp(1j * torch.angle(stft(y, spec)))
    y = istft(X, spec, L)
    return delay(y, delays.to(y.dtype) - config.pre_samples, L)
