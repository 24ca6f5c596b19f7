"""Locks on outputs, and sweeping the temporary files an interrupted write left behind.

Two bakes of one target must not collide: the second would render for minutes
and then replace the first one's file (or the first one's resume work) under
it. ``FileLock`` is an exclusive advisory lock (``flock`` on POSIX, ``msvcrt``
on Windows) on a small file beside the target, ``.<name>.lock``. The kernel
drops it when its process dies, even by SIGKILL, so a crashed bake never leaves
a target locked; the lock file itself is removed on release.

Outputs are written to ``.soundstage-tmp-*`` files and renamed into place
(``soundstage.audio_io.atomic_path``); a process killed in the middle of a
write leaves its temporary file behind. ``sweep_stale_temps`` removes those
that nobody has touched for a while (a live write keeps its file's
modification time fresh; the engine only writes a temporary file at the very
end of a bake, so a few minutes of silence means its writer is gone).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

from soundstage.errors import SoundstageError

#: Prefix of the temporary files written by ``audio_io.atomic_path``.
TEMP_PREFIX = ".soundstage-tmp-"
#: A temporary file untouched for this long (seconds) belongs to a dead writer.
STALE_TEMP_S = 600.0

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class LockedError(SoundstageError):
    """Another process holds the lock (another bake of the same target)."""


class FileLock:
    """An exclusive lock held through a lock file; a context manager.

    Parameters
    ----------
    path : path-like
        The lock file (created if needed, removed on release).
    what : str
        What the lock protects, for the error message (e.g. ``"output 'x.wav'"``).

    Notes
    -----
    Removing the file on release is safe because ``acquire`` checks, after
    locking, that the path still names the file it locked; a process that
    locked a file just removed by its previous holder starts over.
    """

    def __init__(self, path, what: str = ""):
        self.path = Path(path)
        self.what = what or f"'{self.path}'"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8").split()
            pid, host, since = text[0], text[1], float(text[2])
            return f" (pid {pid} on {host}, since {time.strftime('%H:%M:%S', time.localtime(since))})"
        except (OSError, ValueError, IndexError):
            return ""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        for _ in range(100):  # retries only when the file was swapped under us
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise SoundstageError(f"cannot create lock file '{self.path}': {err.strerror}; "
                                      "check that the output folder is writable") from None
            if not _try_lock(fd):
                os.close(fd)
                return False
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed it between our open and lock
                _unlock(fd)
                os.close(fd)
                continue
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.3f}\n".encode())
            self._fd = fd
            return True
        raise RuntimeError(f"lock file {self.path} keeps changing")  # pragma: no cover

    def acquire(self, timeout: float = 0.0, poll: float = 0.1) -> "FileLock":
        """Take the lock, waiting up to ``timeout`` seconds.

        Raises
        ------
        LockedError
            Still held by someone else after ``timeout``.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockedError(f"{self.what} is being written by another bake{self._holder()}; "
                                  "wait for it to finish or choose another output path")
            time.sleep(poll)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if sys.platform != "win32":
            # Remove while still holding it: nobody can have locked this file since.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        _unlock(fd)
        os.close(fd)
        if sys.platform == "win32":  # pragma: no cover
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a forgotten lock is released when the object goes
        with contextlib.suppress(Exception):
            self.release()


def target_lock(target) -> FileLock:
    """The lock of one output file: ``.<name>.lock`` beside it (not yet acquired)."""
    target = Path(target)
    return FileLock(target.parent / f".{target.name}.lock", what=f"output '{target}'")


def is_locked(path) -> bool:
    """Whether someone holds the lock file ``path`` right now (False when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if _try_lock(fd):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


def sweep_stale_temps(folder, older_than: float = STALE_TEMP_S) -> list[Path]:
    """Remove ``.soundstage-tmp-*`` files in ``folder`` untouched for ``older_than`` seconds.

    Returns
    -------
    list of Path
        The files removed. Problems (a file vanishing, no permission) are ignored:
        sweeping only saves space.
    """
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(TEMP_PREFIX):
            continue
        try:
            if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime >= older_than:
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    return removed
