"""The in-memory form of a Gaussian splat scene, independent of its file format.

Conventions (shared by every reader and writer in this package)
----------------------------------------------------------------
* Positions in the file's own frame and units (usually metres after the user
  scales the capture; Blender applies the object transform).
* ``scales`` are *linear* standard deviations along the gaussian's three local
  axes; the Inria PLY stores their natural logarithm.
* ``rotations`` are unit quaternions ordered ``(w, x, y, z)`` (the Inria PLY's
  ``rot_0`` is the real part), rotating local axes into the world.
* ``opacities`` are in [0, 1]; the Inria PLY stores their logit.
* ``colors`` are the view-independent base colour in [0, 1]:
  ``0.5 + C0 * f_dc`` with ``C0 = 1 / (2 sqrt(pi))``, clipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from soundstage.errors import GeometryError

#: Zeroth-order real spherical-harmonic constant, 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814


class SplatError(GeometryError):
    """A splat file cannot be read or holds unusable gaussians (one-line message)."""


def sh_coeff_count(degree: int) -> int:
    """Number of non-DC SH coefficients per colour channel for a degree."""
    return (degree + 1) ** 2 - 1


def sh_degree_from_rest(n_rest_per_channel: int) -> int | None:
    """SH degree whose non-DC coefficient count is ``n_rest_per_channel``, or None."""
    for degree in range(0, 5):
        if sh_coeff_count(degree) == n_rest_per_channel:
            return degree
    return None


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from unit quaternions.

    Parameters
    ----------
    q : ndarray, shape (N, 4)
        Unit quaternions ``(w, x, y, z)``.

    Returns
    -------
    ndarray, shape (N, 3, 3)
        ``R[i] @ v_local = v_world``; column ``k`` of ``R[i]`` is local axis ``k``.
    """
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    r = np.empty((len(q), 3, 3))
    r[:, 0, 0] = 1 - 2 * (y * y + z * z)
    r[:, 0, 1] = 2 * (x * y - w * z)
    r[:, 0, 2] = 2 * (x * z + w * y)
    r[:, 1, 0] = 2 * (x * y + w * z)
    r[:, 1, 1] = 1 - 2 * (x * x + z * z)
    r[:, 1, 2] = 2 * (y * z - w * x)
    r[:, 2, 0] = 2 * (x * z - w * y)
    r[:, 2, 1] = 2 * (y * z + w * x)
    r[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return r


def normalise_quaternions(q: np.ndarray) -> tuple[np.ndarray, int]:
    """Unit quaternions from stored (possibly unnormalised) ones.

    Parameters
    ----------
    q : ndarray, shape (N, 4)

    Returns
    -------
    unit : ndarray of float32, shape (N, 4)
        ``q / |q|``; a zero quaternion becomes the identity ``(1, 0, 0, 0)``
        (the renderers would divide by zero there).
    n_zero : int
        How many zero quaternions were replaced.
    """
    q = np.asarray(q, dtype=np.float32)
    norm = np.sqrt(np.einsum("ij,ij->i", q, q, dtype=np.float64)).astype(np.float32)
    zero = ~(norm > 0)
    n_zero = int(np.count_nonzero(zero & np.isfinite(norm)))
    out = q / np.where(zero, 1, norm)[:, None]
    if np.any(zero):
        out[zero] = (1, 0, 0, 0)
    return out.astype(np.float32, copy=False), n_zero


@dataclass
class Splats:
    """A set of 3D gaussians.

    Attributes
    ----------
    positions : ndarray of float32, shape (N, 3)
        Centres.
    scales : ndarray of float32, shape (N, 3)
        Linear standard deviations along the local axes (file units).
    rotations : ndarray of float32, shape (N, 4)
        Unit quaternions ``(w, x, y, z)``.
    opacities : ndarray of float32, shape (N,)
        Peak opacity in [0, 1].
    colors : ndarray of float32, shape (N, 3)
        Base (view-independent) RGB in [0, 1].
    sh_rest : ndarray of float32, shape (N, K, 3), or None
        Higher-order SH coefficients, ``K = (sh_degree + 1)**2 - 1``,
        coefficient-major like the Inria trainer's ``features_rest``.
    sh_degree : int
        0 to 3 (4 accepted); 0 means ``sh_rest`` is None.
    extra : dict of str to ndarray, shape (N,)
        Every other per-vertex property of the file, by name, in its stored type
        (for example ``nx, ny, nz`` or a trainer's custom fields).
    sh_dc : ndarray of float32, shape (N, 3), or None
        The stored DC coefficients when the file has them, unclipped, so a
        write-back is lossless (``.splat`` files only hold 8-bit colour).
    source : str
        Where the gaussians came from (a path), for messages.
    """

    positions: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray
    sh_rest: np.ndarray | None = None
    sh_degree: int = 0
    extra: dict = field(default_factory=dict)
    sh_dc: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def count(self) -> int:
        """Number of gaussians."""
        return len(self)

    def subset(self, index) -> "Splats":
        """A new ``Splats`` holding the gaussians selected by ``index``.

        Parameters
        ----------
        index : boolean mask of shape (N,) or integer indices
        """
        def pick(a):
            return None if a is None else a[index]

        return Splats(
            positions=self.positions[index],
            scales=self.scales[index],
            rotations=self.rotations[index],
            opacities=self.opacities[index],
            colors=self.colors[index],
            sh_rest=pick(self.sh_rest),
            sh_degree=self.sh_degree,
            extra={k: v[index] for k, v in self.extra.items()},
            sh_dc=pick(self.sh_dc),
            source=self.source,
        )

    def rotation_matrices(self) -> np.ndarray:
        """Local-to-world rotations, shape (N, 3, 3), float64."""
        return quat_to_matrix(self.rotations)

    def normals(self) -> np.ndarray:
        """Each gaussian's shortest axis (its surface normal if it is flat).

        Returns
        -------
        ndarray of float64, shape (N, 3)
            Unit vectors; the sign is arbitrary.
        """
        rot = self.rotation_matrices()
        k = np.argmin(self.scales, axis=1)
        return rot[np.arange(len(self)), :, k]

    def half_extents(self, k_sigma: float = 3.0) -> np.ndarray:
        """Half sizes of each gaussian's axis-aligned box at ``k_sigma``.

        Returns
        -------
        ndarray of float64, shape (N, 3)
            ``k * sqrt(sum_j (R_ij s_j)**2)``: the exact AABB of the
            ``k_sigma`` ellipsoid.
        """
        rot = self.rotation_matrices()
        s = self.scales.astype(np.float64)
        return k_sigma * np.sqrt(np.einsum("nij,nj->ni", rot**2, s**2))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Min and max of the centres, each shape (3,)."""
        return self.positions.min(axis=0), self.positions.max(axis=0)

    def validate(self) -> None:
        """Check shapes and finiteness; raise ``SplatError`` naming the problem."""
        n = len(self)
        for name, shape in (("scales", (n, 3)), ("rotations", (n, 4)),
                            ("opacities", (n,)), ("colors", (n, 3))):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise SplatError(f"{self.source or 'splats'}: {name} has shape {arr.shape}, expected {shape}")
        for name in ("positions", "scales", "rotations", "opacities", "colors"):
            bad = ~np.isfinite(getattr(self, name))
            if bad.any():
                rows = int(np.count_nonzero(bad.reshape(n, -1).any(axis=1)))
                raise SplatError(f"{self.source or 'splats'}: {rows} gaussians have non-finite {name}")
