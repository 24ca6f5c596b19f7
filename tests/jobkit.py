"""Helpers for tests that build jobs: camera matrices, audio files, job dicts."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from scipy.spatial.transform import Rotation


def camera_matrix(position, yaw_deg=0.0):
    """Blender camera ``matrix_world`` (4x4) looking along world +X, turned by ``yaw_deg`` about +Z.

    A Blender camera looks along its local -Z with +Y up; rotating it by
    (90, 0, -90) degrees (XYZ Euler) makes it look along +X with +Z up, so its
    left is world +Y.
    """
    R = Rotation.from_euler("z", yaw_deg, degrees=True) * Rotation.from_euler("xyz", [90, 0, -90], degrees=True)
    M = np.eye(4)
    M[:3, :3] = R.as_matrix()
    M[:3, 3] = position
    return M


def write_impulse(path, fs=48000, seconds=1.0, at=0):
    x = np.zeros(int(fs * seconds), np.float32)
    x[at] = 1.0
    sf.write(path, x, fs, subtype="FLOAT")
    return str(path)


def write_tone(path, freq, fs=48000, seconds=2.0, amp=0.5):
    t = np.arange(int(fs * seconds)) / fs
    sf.write(path, (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), fs, subtype="FLOAT")
    return str(path)


def write_noise(path, fs=48000, seconds=1.0, seed=0):
    x = np.random.default_rng(seed).standard_normal(int(fs * seconds)).astype(np.float32) * 0.1
    sf.write(path, x, fs, subtype="FLOAT")
    return str(path)


def make_job(audio, source_pos, listener, *, fmt="ambix", room=None, fs=48000, fps=24, frames=24, out="out.wav",
             order=1, render=None, gain_db=0.0):
    """A job dict with one source. ``listener`` is one 4x4 matrix or a list of them."""
    L = np.asarray(listener, dtype=float)
    mw = L.reshape(-1).tolist() if L.ndim == 2 else L.reshape(len(L), 16).tolist()
    job = {
        "version": 1, "sample_rate": fs, "fps": fps, "frame_start": 1, "frame_end": frames,
        "room": room or {"type": "free_field"},
        "listener": {"name": "Camera", "matrix_world": mw},
        "sources": [{"name": "Speaker", "audio": str(audio), "position": np.asarray(source_pos, float).tolist(),
                     "gain_db": gain_db}],
        "output": {"format": fmt, "ambisonic_order": order, "path": str(out)},
    }
    if render:
        job["render"] = render
    return job
