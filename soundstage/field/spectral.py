"""Short-time Fourier transforms for the learned fields (torch).

The layout follows AV-NeRF: spectrograms are ``(..., frames, bins)``; frames are
centred (frame k on sample ``k * hop``, zero padding at both ends) with a
periodic Hann window and no normalisation, so magnitudes equal
``soundstage.metrics.stft`` (and librosa's), which the tests check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Spectral:
    """STFT settings.

    Attributes
    ----------
    sample_rate : int
        Hz.
    n_fft : int
        FFT size; ``n_fft // 2 + 1`` bins.
    hop : int
        Samples between frames.
    """

    sample_rate: int = 22050
    n_fft: int = 512
    hop: int = 128

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames of a signal of ``n_samples`` samples."""
        return 1 + int(n_samples) // self.hop

    def as_dict(self) -> dict:
        return asdict(self)


def _window(spec: Spectral, like: torch.Tensor) -> torch.Tensor:
    real = like.real if like.is_complex() else like
    return torch.hann_window(spec.n_fft, periodic=True, dtype=real.dtype, device=like.device)


def stft(x: torch.Tensor, spec: Spectral) -> torch.Tensor:
    """Complex STFT.

    Parameters
    ----------
    x : Tensor, shape (..., n)

    Returns
    -------
    Tensor of complex, shape (..., 1 + n // hop, n_fft // 2 + 1)
    """
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    S = torch.stft(flat, spec.n_fft, spec.hop, window=_window(spec, x), center=True, pad_mode="constant",
                   return_complex=True)
    return S.transpose(-1, -2).reshape(*lead, S.shape[-1], S.shape[-2])


def istft(S: torch.Tensor, spec: Spectral, length: int) -> torch.Tensor:
    """Inverse of ``stft`` (overlap-add with the same window).

    Parameters
    ----------
    S : Tensor of complex, shape (..., frames, bins)
    length : int
        Samples to return.

    Returns
    -------
    Tensor, shape (..., length)
    """
    lead = S.shape[:-2]
    flat = S.reshape(-1, S.shape[-2], S.shape[-1]).transpose(-1, -2)
    y = torch.istft(flat, spec.n_fft, spec.hop, window=_window(spec, S), center=True, length=int(length))
    return y.reshape(*lead, y.shape[-1])
