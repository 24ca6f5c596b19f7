"""The contract between room models and the renderer.

Conventions
-----------
* World frame: Blender's, metres, right-handed, Z up.
* Octave bands: ``soundstage.materials.BANDS`` = 125 Hz .. 8 kHz (7 bands).
* Image-source gains are *amplitude* reflection factors per band, the product of
  ``sqrt(1 - absorption)`` (times any specular-scattering loss) over the walls the
  path hits. Distance (1/r) and air absorption are applied by the renderer, which
  knows the listener position at every sample.
* Energy histograms are in the same units as the squared direct sound of a source
  whose level is 1 at 1 m: a lone image at distance r with gains g contributes
  ``g**2 * exp(-m_b * r) / r**2`` to band b, where ``m_b`` is the air energy
  attenuation in 1/m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageSet:
    """Image sources for every frame, padded to one count per frame.

    Attributes
    ----------
    positions : ndarray, shape (F, I, 3)
        World position of each image source in each frame, metres.
    gains : ndarray, shape (F, I, B)
        Amplitude reflection factor per octave band (no distance, no air).
    order : ndarray of int, shape (I,) or (F, I)
        Number of reflections of each image (1 = first-order). Order 0, the
        direct path, is never included: the renderer handles it.
    valid : ndarray of bool, shape (F, I)
        False for padding and for images that are not visible from the listener.
    """

    positions: np.ndarray
    gains: np.ndarray
    order: np.ndarray
    valid: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_images(self) -> int:
        return self.positions.shape[1]


class Room:
    """Base class of room models.

    Subclasses implement ``contains``, ``early_images`` and ``energy_histogram``.
    """

    #: Short name used in sidecars and messages.
    kind = "room"

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether each point is inside the room.

        Parameters
        ----------
        points : ndarray, shape (n, 3)

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        raise NotImplementedError

    def early_images(self, source: np.ndarray, listener: np.ndarray, max_order: int) -> ImageSet:
        """Image sources up to ``max_order`` reflections for every frame.

        Parameters
        ----------
        source, listener : ndarray, shape (F, 3)
            Source and listener positions per frame, metres.
        max_order : int
            Highest reflection order to return.
        """
        raise NotImplementedError

    def energy_histogram(
        self,
        source: np.ndarray,
        listener: np.ndarray,
        *,
        air: np.ndarray,
        speed_of_sound: float,
        bin_width: float,
        t_max: float,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Energy arriving at the listener per octave band and time bin.

        Includes every path (direct sound and all reflections) so the renderer
        can subtract what it renders explicitly.

        Parameters
        ----------
        source, listener : ndarray, shape (3,)
            Representative positions, metres.
        air : ndarray, shape (B,)
            Air energy attenuation per band, 1/m.
        speed_of_sound : float
            m/s.
        bin_width : float
            Histogram bin width, seconds.
        t_max : float
            Length of the histogram, seconds.
        rng : numpy Generator, optional
            For stochastic methods (ray tracing); deterministic methods ignore it.

        Returns
        -------
        ndarray, shape (B, ceil(t_max / bin_width))
            Energy per band and bin (units described in the module docstring).
        """
        raise NotImplementedError
