"""A-NeRF, the audio field of AV-NeRF (Liang et al., NeurIPS 2023, arXiv 2302.02088), in PyTorch.

What a listener hears is the source's sound shaped by the room. A-NeRF learns that
shaping as magnitude masks over frequency, queried at the listener's pose:

* the **query** is a positional encoding of the listener position and of the
  frequency (one row per STFT bin), projected to ``hidden`` features; scene
  features of the pose (``soundstage.field.scene``: ray-cast depth and absorption
  panoramas, the stand-in for AV-NeRF's AV-Mapper of rendered RGB and depth) are
  added to every row;
* a **mixture mask** ``m(f)`` comes from an MLP with a skip connection;
* a **difference mask** ``d(f)`` in (-1, 1) comes from a second MLP that continues
  from the first and adds, after each layer, a **direction embedding**: four
  learnable vectors per layer anchored at the source being behind, right, ahead and
  left of the listener, linearly interpolated around the circle at the source's
  azimuth (the paper's coordinate transformation: direction relative to the source);
* masked magnitudes ``M = |S| m``, ``L = M (1 + d)``, ``R = M (1 - d)``, optionally
  refined by a small **2-D convolution** over time and frequency per ear (input:
  source magnitude, the masks and the ear's masked magnitude; the output is added);
* the waveform is the inverse STFT of the refined magnitudes with the **source's
  phase** (``render``).

Masks may be one per clip (B, F), as in the paper, or one per STFT frame
(B, T, F), which rendering a moving listener uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from soundstage.field.spectral import Spectral


@dataclass
class ANeRFConfig:
    """Hyper-parameters of an A-NeRF field (stored in checkpoints).

    Attributes
    ----------
    hidden : int
        Width of every MLP layer (the paper: 128).
    layers : int
        Layers of each of the two MLPs (the paper: 4).
    pos_freqs : int
        Octaves of the positional encoding of the normalised position.
    freq_freqs : int
        Octaves of the encoding of the normalised frequency.
    n_directions : int
        Direction embeddings around the circle (the paper: 4).
    conv : bool
        Use the 2-D convolution refinement.
    conv_channels : int
        Channels of the refinement (the paper: 16).
    scene_dim : int
        Length of the scene feature vector (0: no scene features).
    use_direction : bool
        False ablates the direction input (the azimuth is held at 0, as the paper's
        ``no_ori``).
    n_fft, hop, sample_rate : int
        STFT of the field (the paper: 512/128 at 22,050 Hz).
    """

    hidden: int = 128
    layers: int = 4
    pos_freqs: int = 6
    freq_freqs: int = 10
    n_directions: int = 4
    conv: bool = True
    conv_channels: int = 16
    scene_dim: int = 0
    use_direction: bool = True
    n_fft: int = 512
    hop: int = 128
    sample_rate: int = 22050

    @property
    def spectral(self) -> Spectral:
        return Spectral(self.sample_rate, self.n_fft, self.hop)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ANeRFConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown A-NeRF settings {sorted(unknown)}")
        return cls(**d)


class Encoding(nn.Module):
    """NeRF positional encoding ``[x, sin(2^k pi x), cos(2^k pi x)]``, k = 0..octaves-1.

    Parameters
    ----------
    dims : int
        Input dimensions (inputs should lie roughly in [-1, 1]).
    octaves : int
    """

    def __init__(self, dims: int, octaves: int):
        super().__init__()
        self.register_buffer("scales", math.pi * 2.0 ** torch.arange(octaves, dtype=torch.float32), persistent=False)
        self.out_dim = dims * (1 + 2 * octaves)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dims) -> (..., dims * (1 + 2 octaves))."""
        a = x[..., None] * self.scales  # (..., dims, octaves)
        return torch.cat([x, torch.sin(a).flatten(-2), torch.cos(a).flatten(-2)], dim=-1)


class DirectionEmbedding(nn.Module):
    """Learnable embeddings at evenly spaced azimuths, interpolated around the circle.

    Anchor k sits at azimuth ``-pi + 2 pi k / n`` (n = 4: behind, right, ahead,
    left); an azimuth between two anchors gets their linear blend, and the circle
    wraps, so +pi and -pi give the same embedding. Each anchor holds one vector per
    MLP layer.

    Parameters
    ----------
    n : int
        Anchors.
    layers, width : int
    """

    def __init__(self, n: int, layers: int, width: int):
        super().__init__()
        self.n = n
        self.table = nn.Parameter(torch.randn(n, layers, width) / math.sqrt(width))

    def forward(self, azimuth: torch.Tensor) -> torch.Tensor:
        """Azimuths (B,) or (B, T), radians -> embeddings (..., layers, width)."""
        u = (azimuth + math.pi) / (2 * math.pi) * self.n
        k = torch.floor(u)
        w = (u - k)[..., None, None]
        i0 = torch.remainder(k.long(), self.n)
        i1 = torch.remainder(i0 + 1, self.n)
        return self.table[i0] * (1 - w) + self.table[i1] * w


class SkipMLP(nn.Module):
    """ReLU layers with a linear projection of the input added after the middle layer.

    With ``embed`` (…, layers, width), ``embed[..., l, :]`` is added after layer l
    (how the direction enters the difference MLP).
    """

    def __init__(self, width: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(layers)])
        self.skip = nn.Linear(width, width)
        self.mid = max(layers // 2 - 1, 0)

    def forward(self, x: torch.Tensor, embed: torch.Tensor | None = None) -> torch.Tensor:
        res = self.skip(x)
        for i, lin in enumerate(self.layers):
            x = torch.relu(lin(x))
            if embed is not None:
                x = x + embed[..., i, :]
            if i == self.mid:
                x = x + res
        return x


class Refine(nn.Module):
    """The 2-D convolution refinement over (time, frequency), shared by both ears."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.net = nn.Sequential(nn.Conv2d(4, c, 7, padding=3), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, T, F) -> (N, T, F)."""
        return self.net(x)[:, 0]


class ANeRF(nn.Module):
    """The A-NeRF audio field.

    Parameters
    ----------
    config : ANeRFConfig
    """

    def __init__(self, config: ANeRFConfig):
        super().__init__()
        self.config = c = config
        self.n_bins = c.n_fft // 2 + 1
        self.pos_enc = Encoding(3, c.pos_freqs)
        self.freq_enc = Encoding(1, c.freq_freqs)
        # Linear(concat(pos, freq)) computed as two parts: the position part once per
        # pose, the frequency part once per bin, added by broadcasting.
        self.query_pos = nn.Linear(self.pos_enc.out_dim, c.hidden)
        self.query_freq = nn.Linear(self.freq_enc.out_dim, c.hidden, bias=False)
        self.scene = (nn.Sequential(nn.Linear(c.scene_dim, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.hidden))
                      if c.scene_dim > 0 else None)
        self.mix_mlp = SkipMLP(c.hidden, c.layers)
        self.mix_out = nn.Linear(c.hidden, 1)
        self.directions = DirectionEmbedding(c.n_directions, c.layers, c.hidden)
        self.diff_mlp = SkipMLP(c.hidden, c.layers)
        self.diff_out = nn.Linear(c.hidden, 1)
        self.refine = Refine(c.conv_channels) if c.conv else None
        self.register_buffer("freqs", torch.linspace(-1.0, 1.0, self.n_bins)[:, None], persistent=False)

    # ------------------------------------------------------------------ the field
    def masks(self, pos: torch.Tensor, azimuth: torch.Tensor,
              scene: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture and difference masks at poses.

        Parameters
        ----------
        pos : Tensor, shape (..., 3)
            Normalised listener positions (``FieldNormaliser``).
        azimuth : Tensor, shape (...)
            Source azimuth in the listener frame, radians.
        scene : Tensor, shape (..., scene_dim), optional

        Returns
        -------
        mix, diff : Tensor, shape (..., F)
            ``diff`` in (-1, 1).
        """
        c = self.config
        q = self.query_pos(self.pos_enc(pos))[..., None, :] + self.query_freq(self.freq_enc(self.freqs))
        q = torch.relu(q)  # (..., F, H)
        if self.scene is not None:
            if scene is None:
                raise ValueError("this field was trained with scene features; pass them")
            q = q + self.scene(scene)[..., None, :]
        h = self.mix_mlp(q)
        mix = self.mix_out(h)[..., 0]
        if not c.use_direction:
            azimuth = torch.zeros_like(azimuth)
        e = self.directions(azimuth)[..., None, :, :]  # (..., 1, layers, H)
        d = self.diff_mlp(h, e)
        diff = 2 * torch.sigmoid(self.diff_out(d)[..., 0]) - 1
        return mix, diff

    def apply_masks(self, src_mag: torch.Tensor, mix: torch.Tensor, diff: torch.Tensor) -> dict:
        """Masked, refined binaural magnitudes.

        Parameters
        ----------
        src_mag : Tensor, shape (B, T, F)
            Source STFT magnitude.
        mix, diff : Tensor, shape (B, F) or (B, T, F)

        Returns
        -------
        dict
            ``mono`` (B, T, F): the mixture-masked magnitude; ``binaural``
            (B, 2, T, F): left and right after refinement, non-negative.
        """
        if mix.dim() == 2:
            mix, diff = mix[:, None, :], diff[:, None, :]
        mix = mix.expand_as(src_mag)
        diff = diff.expand_as(src_mag)
        mono = src_mag * mix
        left, right = mono * (1 + diff), mono * (1 - diff)
        if self.refine is not None:
            x = torch.cat([torch.stack([src_mag, mix, diff, left], 1), torch.stack([src_mag, mix, -diff, right], 1)])
            r = self.refine(x)
            B = src_mag.shape[0]
            left, right = left + r[:B], right + r[B:]
        return {"mono": mono, "binaural": torch.relu(torch.stack([left, right], 1))}

    def forward(self, src_mag, pos, azimuth, scene=None) -> dict:
        """Masks at one pose per clip, applied to the clip: ``apply_masks`` plus ``mix`` and ``diff``."""
        mix, diff = self.masks(pos, azimuth, scene)
        out = self.apply_masks(src_mag, mix, diff)
        out.update(mix=mix, diff=diff)
        return out


def anerf_loss(out: dict, target_mag: torch.Tensor) -> torch.Tensor:
    """The paper's objective: mixture MSE against the ears' mean plus binaural MSE.

    Parameters
    ----------
    out : dict
        ``ANeRF.forward``'s result.
    target_mag : Tensor, shape (B, 2, T, F)
    """
    mse = nn.functional.mse_loss
    return mse(out["mono"], target_mag.mean(1)) + mse(out["binaural"], target_mag)
