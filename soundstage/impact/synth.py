"""Impact sound synthesis: contact force, modal response, radiation.

The object's modes (``ModalModel``) are excited by a half-sine contact force
whose duration follows Hertz contact between a striker and the object's material;
each mode responds as a damped oscillator (Rayleigh damping from the material's
loss factor), and the radiated pressure at 1 m is the modal velocity times the
mode's radiation gain (``ModalModel.radiation_gain``). The output is mono float32
sound pressure in pascals at 1 m from the object.

Contact (Hertz; K. L. Johnson, *Contact Mechanics*, CUP 1985, sections 4.2 and 11.4):
a sphere of radius R and mass m striking a flat of the object's material at
speed v. With ``1/E* = (1 - nu1^2)/E1 + (1 - nu2^2)/E2`` and ``k = 4/3 E* sqrt(R)``,
force ``F = k d^(3/2)``; energy balance gives the peak indentation
``d_max = (5 m v^2 / (4 k))^(2/5)``, the peak force ``F_max = k d_max^(3/2)`` and the
contact time ``T = 2.94 d_max / v``. We take ``F_max`` from the caller (the
``--force`` option), solve for v, and use a half-sine of duration T and peak F_max:
harder materials give shorter, brighter pulses.

Modal response: for a force ``f(t)`` along the unit vector ``-n`` at point x, mode k
(mass-normalised shape phi_k, natural frequency w_k, damping ratio z_k) obeys
``q'' + 2 z w q' + w^2 q = b f(t)`` with ``b = phi_k(x) . (-n)``. With
``lambda = -z w + i w_d`` and ``w_d = w sqrt(1 - z^2)`` the velocity is, exactly,
``q'(t) = b Re[(1 + i z w / w_d) exp(lambda t) G(min(t, T))]``, where
``G(t) = int_0^t f(s) exp(-lambda s) ds`` has a closed form for the half-sine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstage.errors import SoundstageError
from soundstage.impact.materials import Material, get_material


class ImpactError(SoundstageError):
    """Invalid impact parameters (force, rate, duration, point)."""


@dataclass(frozen=True)
class Striker:
    """What hits the object: a sphere of ``radius`` (m), ``mass`` (kg) and ``material``."""

    material: str = "steel"
    radius: float = 0.006
    mass: float = 0.007  # a 6 mm steel ball


#: Default striker: a small steel ball (a hard tap).
DEFAULT_STRIKER = Striker()


def contact_time(material, force: float, striker: Striker = DEFAULT_STRIKER) -> float:
    """Hertz contact duration (s) of a sphere hitting a flat of ``material`` with peak force ``force`` (N).

    See the module docstring for the formulas.
    """
    obj = get_material(material)
    st = get_material(striker.material)
    if not force > 0:
        raise ImpactError(f"impact force must be positive (newtons), got {force}")
    e_star = 1.0 / ((1 - obj.poisson**2) / obj.youngs_modulus + (1 - st.poisson**2) / st.youngs_modulus)
    k = 4.0 / 3.0 * e_star * np.sqrt(striker.radius)
    d_max = (force / k) ** (2.0 / 3.0)
    v = np.sqrt(4.0 * k * d_max**2.5 / (5.0 * striker.mass))
    return float(2.94 * d_max / v)


def _expm1_over(z: np.ndarray) -> np.ndarray:
    """(exp(z) - 1) / z, accurate near z = 0 (complex input)."""
    z = np.asarray(z, dtype=complex)
    out = np.ones_like(z)
    nz = np.abs(z) > 1e-8
    out[nz] = np.expm1(z[nz]) / z[nz]
    out[~nz] = 1 + z[~nz] / 2
    return out


def half_sine_transform(lam: np.ndarray, duration: float, t: np.ndarray | float) -> np.ndarray:
    """``G(t) = int_0^t sin(pi s / T) exp(-lam s) ds`` for ``t <= T`` (unit peak force).

    Written with ``sin(a s) = (e^{ias} - e^{-ias}) / 2i`` so that every term is
    ``t (e^{zt} - 1) / (zt)``, which stays accurate when ``lam`` is close to
    ``+-i pi/T`` (a lightly damped mode at the pulse's own frequency).

    Parameters
    ----------
    lam : ndarray, shape (K,) complex
    duration : float
        Pulse length T, s.
    t : float or ndarray, shape (N,)
        Upper limits, s (clipped to [0, T]).

    Returns
    -------
    ndarray, complex, shape (K,) or (N, K)
    """
    a = np.pi / duration
    tt = np.clip(np.asarray(t, dtype=float), 0.0, duration)[..., None]
    z1 = (1j * a - lam) * tt
    z2 = (-1j * a - lam) * tt
    return tt * (_expm1_over(z1) - _expm1_over(z2)) / 2j


@dataclass
class ModeSet:
    """What the synthesiser needs from a modal model for one hit.

    Attributes
    ----------
    freqs : ndarray, shape (K,), Hz (undamped)
    zeta : ndarray, shape (K,), damping ratios
    gain : ndarray, shape (K,)
        Pressure at 1 m per unit modal velocity (radiation), Pa s / sqrt(kg).
    excitation : ndarray, shape (K,)
        Modal participation of a unit force, m / sqrt(kg).
    """

    freqs: np.ndarray
    zeta: np.ndarray
    gain: np.ndarray
    excitation: np.ndarray


def modal_amplitudes(modes: ModeSet, force: float, pulse: float):
    """Complex amplitudes and poles: ``p(t) = Re(sum_k A_k exp(lam_k t))`` for ``t >= pulse``.

    Returns
    -------
    amps : ndarray, complex, shape (K,), Pa
    lam : ndarray, complex, shape (K,), 1/s
    pre : ndarray, complex, shape (K,)
        ``A_k / G_k(T)``, to evaluate the response during the contact.
    """
    w = 2 * np.pi * modes.freqs
    z = modes.zeta
    wd = w * np.sqrt(1 - z**2)
    lam = -z * w + 1j * wd
    pre = force * modes.gain * modes.excitation * (1 + 1j * z * w / wd)
    return pre * half_sine_transform(lam, pulse, pulse), lam, pre


def modal_sum(amps: np.ndarray, lam: np.ndarray, n: int, sample_rate: float, start: int = 0,
              block: int = 256) -> np.ndarray:
    """``y[m] = Re(sum_k amps_k exp(lam_k (start + m) / fs))`` for m in [0, n) (fast).

    Blocked into one complex matrix product: with m = j B + r,
    ``exp(lam m / fs) = exp(lam j B / fs) exp(lam r / fs)``, so the whole signal is
    ``Re(P @ Q)`` with P (J x K) and Q (K x B), evaluated by BLAS. Exponentials are
    computed directly (no recurrences), so there is no error build-up.

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    if n <= 0:
        return np.zeros(0)
    lam_s = np.asarray(lam, dtype=complex) / sample_rate
    n_blocks = -(-n // block)
    j = (start + np.arange(n_blocks) * block).astype(float)
    P = amps[None, :] * np.exp(j[:, None] * lam_s[None, :])
    Q = np.exp(np.arange(block, dtype=float)[None, :] * lam_s[:, None])
    return (P @ Q).real.ravel()[:n]


def modal_sum_reference(amps, lam, n, sample_rate, start=0) -> np.ndarray:
    """Slow, obviously correct twin of ``modal_sum``: one mode at a time."""
    t = (start + np.arange(n)) / sample_rate
    y = np.zeros(n)
    for a, l in zip(amps, lam):
        y += (a * np.exp(l * t)).real
    return y


def render(modes: ModeSet, force: float, pulse: float, sample_rate: int, duration: float,
           fade: float = 0.01) -> np.ndarray:
    """Pressure at 1 m (Pa) of a hit, mono float32, ``round(duration * rate)`` samples.

    Modes above 0.95 x Nyquist are left out (they would alias).
    """
    n = int(round(duration * sample_rate))
    keep = (modes.freqs < 0.475 * sample_rate) & (modes.excitation != 0)
    ms = ModeSet(modes.freqs[keep], modes.zeta[keep], modes.gain[keep], modes.excitation[keep])
    amps, lam, pre = modal_amplitudes(ms, force, pulse)
    n_pulse = min(int(np.ceil(pulse * sample_rate)), n)
    y = np.zeros(n)
    if n_pulse:
        # During the contact the force integral is still growing: evaluate exactly.
        t = np.arange(n_pulse) / sample_rate
        g = half_sine_transform(lam, pulse, t)  # (n_pulse, K)
        y[:n_pulse] = (pre[None, :] * g * np.exp(t[:, None] * lam[None, :])).real.sum(axis=1)
    y[n_pulse:] = modal_sum(amps, lam, n - n_pulse, sample_rate, start=n_pulse)
    nf = min(int(fade * sample_rate), n // 2)
    if nf > 0:  # the cut at the end must not click
        y[-nf:] *= 0.5 * (1 + np.cos(np.pi * np.arange(1, nf + 1) / nf))
    return y.astype(np.float32)


def synthesize(model, point, normal=None, *, force: float = 20.0, sample_rate: int = 48000,
               duration: float = 2.0, material=None, striker: Striker = DEFAULT_STRIKER, seed: int | None = 0,
               jitter: float = 0.05) -> np.ndarray:
    """Sound of one hit on a modal model.

    Parameters
    ----------
    model : ModalModel
    point : array_like, shape (3,)
        Contact point in the model's frame, metres (snapped to the surface by callers
        that need it; see ``soundstage.impact.hit``).
    normal : array_like, shape (3,)
        Outward surface normal at the point; the force pushes along ``-normal``.
    force : float
        Peak contact force, N.
    sample_rate : int
        Output rate, Hz (the job's rate).
    duration : float
        Output length, s.
    material : str, dict or Material, optional
        Overrides the model's material for damping and contact (not for the modes).
    striker : Striker
    seed : int or None
        Seeds the small natural variation between hits (``jitter``: relative spread
        of force and contact time, and a few degrees of strike direction). The same
        seed gives bit-identical output; None draws a fresh one.
    jitter : float
        Relative size of that variation; 0 for a perfectly repeatable strike.

    Returns
    -------
    ndarray of float32, shape (round(duration * sample_rate),)
        Sound pressure at 1 m, Pa.
    """
    if not sample_rate or sample_rate < 8000 or sample_rate > 384000:
        raise ImpactError(f"sample rate must be 8000..384000 Hz, got {sample_rate}")
    if not 0 < duration <= 60:
        raise ImpactError(f"impact duration must be in (0, 60] s, got {duration}")
    if not force > 0:
        raise ImpactError(f"impact force must be positive (newtons), got {force}")
    mat: Material = get_material(material) if material is not None else model.material
    p = np.asarray(point, dtype=float).reshape(3)
    if normal is None:
        raise ImpactError("a surface normal is needed for the hit (use soundstage.impact.hit to find it)")
    nrm = np.asarray(normal, dtype=float).reshape(3)
    if not np.all(np.isfinite(p)) or not np.all(np.isfinite(nrm)) or np.linalg.norm(nrm) == 0:
        raise ImpactError(f"hit point {p.tolist()} / normal {nrm.tolist()} must be finite and the normal non-zero")
    nrm = nrm / np.linalg.norm(nrm)
    rng = np.random.default_rng(seed)
    f = force
    if jitter > 0:
        f = force * float(np.exp(jitter * rng.standard_normal()))
        tilt = rng.standard_normal(3) * jitter
        nrm = nrm + tilt - nrm * np.dot(tilt, nrm)  # a few degrees off the normal
        nrm /= np.linalg.norm(nrm)
    pulse = contact_time(mat, f, striker)
    if jitter > 0:
        pulse *= float(np.exp(jitter * rng.standard_normal()))
    modes = ModeSet(model.frequencies, mat.damping_ratio(model.frequencies), model.radiation_gain(),
                    model.excitation(p, nrm))
    return render(modes, f, pulse, int(sample_rate), float(duration))
