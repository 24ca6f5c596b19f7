"""Output locations: where baked files go, and making sure they stay there.

No ``bpy`` here: the caller passes Blender's paths already made absolute
(``bpy.path.abspath``) so these rules are unit-testable.

Rules
-----
* Every output file lives directly in one chosen directory (default
  ``//soundstage/`` beside the .blend, a temporary directory for an unsaved
  file). Names are built from object names, which are sanitised so a camera
  called ``../../etc`` cannot write outside it; ``safe_join`` refuses anything
  that would still escape.
* Files are first written into a staging directory inside the output directory
  (``.soundstage-tmp-*``, same file system) and moved into place with
  ``os.replace`` only when every job of a bake succeeded, so a failed or
  cancelled bake leaves the previous tracks untouched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import BridgeError

STAGING_PREFIX = ".soundstage-tmp-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize(name: str) -> str:
    """A file-name-safe version of an object or scene name.

    Keeps ASCII letters, digits, ``.``, ``_`` and ``-``; every other run of
    characters (slashes, spaces, ``..`` separators, non-ASCII) becomes ``_``.
    Leading dots are dropped so the result is never hidden, ``.`` or ``..``.

    >>> sanitize("../../etc/passwd")
    'etc_passwd'
    >>> sanitize("Camera.001")
    'Camera.001'
    """
    s = _UNSAFE.sub("_", str(name))
    s = re.sub(r"\.{2,}", "_", s)  # no ".." anywhere, even between safe characters
    s = s.strip("._")
    return s or "unnamed"


def output_name(scene: str, listener: str, fmt: str) -> str:
    """``<scene>_<listener>_<format>.wav`` with each part sanitised."""
    return f"{sanitize(scene)}_{sanitize(listener)}_{sanitize(fmt)}.wav"


def sidecar_of(wav: Path) -> Path:
    """The engine's JSON sidecar beside a WAV: ``name.wav`` -> ``name.json``."""
    return Path(wav).with_suffix(".json")


def resolve_output_dir(setting: str, blend_path: str, abspath) -> tuple[Path, str | None]:
    """Turn the scene's output-directory setting into an absolute directory.

    Parameters
    ----------
    setting : str
        The user's setting, possibly Blender-relative (``//soundstage/``).
    blend_path : str
        ``bpy.data.filepath``; empty for an unsaved file.
    abspath : callable
        ``bpy.path.abspath`` (injected so this stays bpy-free).

    Returns
    -------
    (Path, warning or None)
        For an unsaved file with a relative setting, a fresh temporary
        directory and a warning saying so.
    """
    setting = (setting or "//soundstage/").strip()
    if setting.startswith("//") and not blend_path:
        tmp = Path(tempfile.mkdtemp(prefix="soundstage-unsaved-"))
        return tmp, (f"the .blend is not saved, so tracks go to the temporary folder {tmp}; "
                     "save the file to keep them beside it")
    return Path(abspath(setting)).expanduser().resolve(), None


def safe_join(directory: Path, filename: str) -> Path:
    """``directory / filename``, refusing any result outside ``directory``.

    Raises
    ------
    BridgeError
        When the name contains a separator or otherwise escapes.
    """
    directory = Path(directory).resolve()
    target = (directory / filename).resolve()
    if target.parent != directory:
        raise BridgeError(f"output name '{filename}' would leave the output folder {directory}; "
                          "rename the object or pick another output folder")
    return target


def ensure_writable_dir(directory: Path) -> Path:
    """Create ``directory`` if needed and prove a file can be written there.

    Raises
    ------
    BridgeError
        Naming the folder and the reason (a file in the way, no permission...).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # A real write, because permission bits do not tell the whole story
        # (read-only mounts, ACLs, running as root).
        fd, probe = tempfile.mkstemp(prefix=STAGING_PREFIX + "probe-", dir=directory)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        reason = e.strerror or str(e)
        raise BridgeError(f"output folder {directory} is not writable ({reason}); "
                          "choose another one in Soundstage > Output or with --out") from None
    return directory.resolve()


def make_staging_dir(directory: Path) -> Path:
    """A fresh staging directory inside the output directory (same file system)."""
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory))


def remove_staging_dir(staging: Path) -> None:
    """Delete a staging directory and everything in it; never fails."""
    shutil.rmtree(staging, ignore_errors=True)


def commit_file(staged: Path, final: Path) -> None:
    """Move a finished file from the staging directory into place atomically."""
    os.replace(staged, final)
