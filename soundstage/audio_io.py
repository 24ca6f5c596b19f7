"""Reading source audio, resampling, and writing outputs atomically.

* ``read_audio``: any file libsndfile reads (WAV, FLAC, AIFF, OGG, MP3, ...), checked
  and returned as float32 mono at the rate asked for.
* ``resample``: soxr (very high quality) along the time axis.
* ``atomic_path`` / ``write_wav`` / ``write_json``: outputs appear complete or not at
  all: data goes to a temporary file in the target's folder, is flushed and fsynced,
  then ``os.replace``d onto the target.

Every problem a user can fix raises ``AudioError`` (reading) or ``SoundstageError``
(writing) with one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf
import soxr

from soundstage.errors import AudioError, SoundstageError

#: Sample rates accepted for input audio, in Hz (inclusive).
MIN_RATE = 8_000
MAX_RATE = 192_000

#: Largest data chunk (bytes) a plain RIFF/WAV file can describe: its sizes are unsigned
#: 32-bit, and the RIFF size also counts the header chunks. 1 MiB is left for those
#: (libsndfile writes fmt, fact, PEAK and data headers: well under 1 kB).
RIFF_MAX_DATA_BYTES = 2**32 - 1 - 2**20

TEMP_PREFIX = ".soundstage-tmp-"

_CONVERT_HINT = "convert it to WAV (16/24-bit PCM or 32-bit float) or FLAC"


def _who(path: os.PathLike | str, label: str | None) -> str:
    return f"{label}: audio file '{path}'" if label else f"audio file '{path}'"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- truncation check -------------------------------------------------------------------


def _declared_and_available_data_bytes(path: Path) -> tuple[int, int] | None:
    """Size of the audio data chunk as the header declares it, and as the file holds it.

    libsndfile silently shortens a truncated WAV/AIFF/W64 to the frames present (and
    reports that shorter length as the frame count), so truncation can only be seen by
    walking the container's chunks ourselves. Handles RIFF/RIFX/RF64/BW64 (WAV), FORM
    (AIFF/AIFC) and Sony Wave64; returns None for other containers, for files whose data
    size is marked unknown (streamed WAVs write 0 or 0xFFFFFFFF), or when no data chunk
    header is found (libsndfile then reports the file itself).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 12:
            return None
        magic = head[:4]
        if magic in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            endian = ">" if magic == b"RIFX" else "<"
            ds64_data = None
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, csize = struct.unpack(endian + "4sI", f.read(8))
                if cid == b"ds64":
                    body = f.read(24)
                    if len(body) == 24:
                        ds64_data = struct.unpack("<QQQ", body)[1]
                if cid == b"data":
                    if csize == 0xFFFFFFFF and ds64_data is not None:
                        csize = ds64_data
                    elif csize in (0, 0xFFFFFFFF):
                        return None
                    return csize, size - (pos + 8)
                pos += 8 + csize + (csize & 1)  # chunks are padded to even length
            return None
        if magic == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, csize = struct.unpack(">4sI", f.read(8))
                if cid == b"SSND":
                    # SSND starts with 8 bytes of offset/block size before the samples.
                    return csize, size - (pos + 8)
                pos += 8 + csize + (csize & 1)
            return None
        riff_guid = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
        if head == riff_guid:
            pos = 40  # riff GUID + size (8) + wave GUID
            while pos + 24 <= size:
                f.seek(pos)
                guid = f.read(16)
                (csize,) = struct.unpack("<Q", f.read(8))  # includes the 24-byte header
                if csize < 24:
                    return None
                if guid[:4] == b"data":
                    return csize - 24, size - (pos + 24)
                pos += (csize + 7) // 8 * 8
            return None
    return None


def _ogg_truncated(path: Path) -> bool:
    """True when an Ogg file (Vorbis, Opus, FLAC-in-Ogg) does not end with a complete end-of-stream page.

    libsndfile decodes a cut Ogg file without complaint and reports the shorter length.
    An intact stream's last page carries the end-of-stream flag (0x04 in the header-type
    byte) and is complete: 27 header bytes + segment table + the segments' lengths.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != b"OggS":
            return False
        # A page is at most 27 + 255 + 255*255 bytes, so the last page header lies in the tail.
        tail_start = max(0, size - (27 + 255 + 255 * 255) - 27)
        f.seek(tail_start)
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0 and (len(tail) - at < 27 or tail[at + 4] != 0):
        at = tail.rfind(b"OggS", 0, at)
    if at < 0:
        return True
    header_type = tail[at + 5]
    n_segments = tail[at + 26]
    segments = tail[at + 27 : at + 27 + n_segments]
    page_end = at + 27 + n_segments + sum(segments)
    return len(segments) < n_segments or page_end > len(tail) or not header_type & 0x04


# --- reading ----------------------------------------------------------------------------


def read_audio(
    path: os.PathLike | str, sample_rate: int | None = None, *, label: str | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono.

    A source is a point, so a stereo or multichannel file is mixed down by averaging
    its channels (mean over channels, which keeps a centred mono signal at its level).

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads: WAV (PCM, float, ADPCM...), RF64, FLAC, AIFF, OGG
        Vorbis, MP3, ...; the extension's case does not matter.
    sample_rate : int, optional
        Target rate in Hz. When given and different from the file's rate, the signal is
        resampled with soxr (very high quality).
    label : str, optional
        What the file is for, e.g. ``"source 'Speaker'"``; it starts every error message.

    Returns
    -------
    samples : ndarray, shape (n,), float32
        Mono signal in the file's full-scale units (integer formats map to [-1, 1)).
    rate : int
        Its sample rate in Hz (``sample_rate`` when given).

    Raises
    ------
    AudioError
        One line naming the file (and ``label``) when it is missing, not a file,
        unreadable, corrupt or of an unsupported format, truncated (its data is shorter
        than its header declares), empty, has NaN or Inf samples (giving the first bad
        time), or a sample rate outside 8,000..192,000 Hz.
    """
    p = Path(path)
    who = _who(p, label)
    if not p.exists():
        raise AudioError(f"{who} not found; check the path")
    if not p.is_file():
        raise AudioError(f"{who} is not a file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(
            f"{who} cannot be read ({_one_line(err)}); {_CONVERT_HINT}"
        ) from None
    except OSError as err:
        raise AudioError(f"{who} cannot be opened ({_one_line(err)})") from None
    rate = int(info.samplerate)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{who} has sample rate {rate} Hz, outside the supported {MIN_RATE}..{MAX_RATE} Hz; "
            f"resample it (e.g. to 48000 Hz)"
        )
    declared = _declared_and_available_data_bytes(p)
    if declared is not None and declared[1] < declared[0]:
        missing = declared[0] - declared[1]
        raise AudioError(
            f"{who} is truncated: its header declares {declared[0]} bytes of audio but only "
            f"{declared[1]} are present ({missing} missing); re-export or re-copy the file"
        )
    if _ogg_truncated(p):
        raise AudioError(f"{who} is truncated: its Ogg stream has no complete final page; re-export or re-copy the file")
    try:
        with sf.SoundFile(str(p)) as f:
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(
            f"{who} is damaged or truncated ({_one_line(err)}); re-export it, or {_CONVERT_HINT}"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{who} has no samples (0 frames); use a file that contains audio")
    # Formats whose header carries a frame count (e.g. MP3 with a Xing header) decode
    # fewer frames than declared when cut short.
    if info.frames > 0 and data.shape[0] < info.frames:
        raise AudioError(
            f"{who} is truncated: {info.frames} frames declared, only {data.shape[0]} decoded; "
            f"re-export or re-copy the file"
        )
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise AudioError(
            f"{who} has NaN or infinite samples (first at {first / rate:.6g} s); "
            f"fix or re-export the file"
        )
    mono = data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sample_rate is not None and int(sample_rate) != rate:
        mono = resample(mono, rate, int(sample_rate))
        rate = int(sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def resample(x: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Resample along axis 0 with soxr, very high quality (VHQ).

    Parameters
    ----------
    x : ndarray, shape (n,) or (n, channels)
        Signal; float32 stays float32, anything else becomes float64.
    from_rate, to_rate : float
        Sample rates in Hz.

    Returns
    -------
    ndarray, shape (m,) or (m, channels)
        ``m`` is about ``n * to_rate / from_rate``; time 0 stays at sample 0 (soxr
        compensates its filter delay). Returned as is when the rates are equal.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if from_rate == to_rate:
        return arr
    if arr.ndim not in (1, 2):
        raise ValueError(f"resample expects shape (n,) or (n, channels), got {arr.shape}")
    if arr.shape[0] == 0:
        return arr[:0].copy()
    return soxr.resample(np.ascontiguousarray(arr), from_rate, to_rate, quality="VHQ")


# --- atomic writing ---------------------------------------------------------------------


def _current_umask() -> int:
    # There is no way to read the umask without setting it; do it once, at import.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _check_target(path: Path) -> Path:
    folder = path.parent
    if not folder.is_dir():
        raise SoundstageError(f"cannot write '{path}': folder '{folder}' does not exist; create it or choose another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SoundstageError(f"cannot write '{path}': folder '{folder}' is not writable; choose another output path")
    if path.is_dir():
        raise SoundstageError(f"cannot write '{path}': it is a folder; give a file name")
    return folder


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Write a file so that it appears complete or not at all.

    Yields a temporary path in the target's folder (name starting ``.soundstage-tmp-``,
    same suffix as the target). When the block ends normally the temporary file is
    fsynced and ``os.replace``d onto ``path`` (the folder is fsynced too, where the OS
    allows); if the block raises, the temporary file is removed and any previous file at
    ``path`` is left untouched.

    Raises
    ------
    SoundstageError
        The target's folder does not exist or is not writable, or the target is a folder.
    """
    target = Path(path)
    folder = _check_target(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=target.suffix, dir=folder)
    except OSError as err:
        raise SoundstageError(f"cannot write in folder '{folder}': {_one_line(err.strerror or err)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the result the permissions a normal open() would.
        mode = (target.stat().st_mode & 0o7777) if target.exists() else (0o666 & ~_UMASK)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not every OS/file system can fsync a folder
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def wav_container(n_bytes: int, max_riff_bytes: int = RIFF_MAX_DATA_BYTES) -> str:
    """``"WAV"`` when ``n_bytes`` of sample data fit a RIFF file, else ``"RF64"``."""
    return "WAV" if n_bytes <= max_riff_bytes else "RF64"


def write_wav(
    path: os.PathLike | str,
    data: np.ndarray,
    sample_rate: int,
    *,
    max_riff_bytes: int = RIFF_MAX_DATA_BYTES,
    block_frames: int = 1 << 18,
) -> str:
    """Write 32-bit float WAV atomically, as RF64 when it would not fit a 4 GiB RIFF.

    Parameters
    ----------
    path : path-like
        Target file; replaced atomically (see ``atomic_path``).
    data : ndarray, shape (n, channels) or (n,)
        Samples, written as float32; must be finite.
    sample_rate : int
        In Hz.
    max_riff_bytes : int
        Largest sample-data size (bytes) written as plain RIFF/WAV; above it the file
        is RF64 (EBU Tech 3306), which libsndfile, Blender and most tools read.
    block_frames : int
        Frames written per call (bounds the extra memory of the float32 conversion).

    Returns
    -------
    str
        ``"WAV"`` or ``"RF64"``, the container written.

    Raises
    ------
    SoundstageError
        Target folder missing or not writable.
    ValueError
        ``data`` has the wrong shape or non-finite values (a bug in the caller).
    """
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"write_wav expects shape (n,) or (n, channels), got {np.shape(data)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"write_wav: refusing to write non-finite samples to {path}")
    rate = int(sample_rate)
    if rate <= 0 or rate != sample_rate:
        raise ValueError(f"write_wav: sample rate must be a positive integer, got {sample_rate}")
    container = wav_container(arr.shape[0] * arr.shape[1] * 4, max_riff_bytes)
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=arr.shape[1], format=container, subtype="FLOAT") as f:
            for start in range(0, arr.shape[0], block_frames):
                f.write(np.ascontiguousarray(arr[start : start + block_frames], dtype=np.float32))
    return container


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: os.PathLike | str, obj: Any) -> None:
    """Write ``obj`` as JSON (indent 2, UTF-8, trailing newline) atomically.

    numpy arrays and scalars and paths are converted. NaN and infinities are refused
    (``ValueError``): they are not JSON and other tools would fail on the file.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


__all__ = [
    "MIN_RATE",
    "MAX_RATE",
    "RIFF_MAX_DATA_BYTES",
    "TEMP_PREFIX",
    "read_audio",
    "resample",
    "atomic_path",
    "wav_container",
    "write_wav",
    "write_json",
]
