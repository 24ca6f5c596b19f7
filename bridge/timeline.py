"""Baked tracks onto the Video Sequencer.

Each (listener, format) pair owns one sound strip named
``SS:<listener>:<format>`` and tagged with the custom property
``strip["soundstage"] = "<listener>|<format>"``. A re-bake removes only the
strips carrying its own tag (and their now unused Sound datablocks); strips
the user made are never touched. The strip sits on a channel of its own: the
channel its previous strip used, else the first completely empty channel at or
above the scene's base channel (30 by default).

Blender 4.4+ exposes ``sequence_editor.strips``; 4.2 only ``sequences``.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from .errors import BridgeError

TAG_KEY = "soundstage"
MAX_CHANNEL = 128


def audio_supported() -> bool:
    """Whether this Blender can make sound strips (the bpy 4.2 wheel is built without Audaspace)."""
    return bool(getattr(bpy.app.build_options, "audaspace", True))


def tag(listener: str, fmt: str) -> str:
    return f"{listener}|{fmt}"


def strip_name(listener: str, fmt: str) -> str:
    return f"SS:{listener}:{fmt}"


def _collection(scene, create: bool):
    """The editable top-level strip collection (``strips`` in 4.4+/5.x, ``sequences`` before)."""
    se = scene.sequence_editor
    if se is None:
        if not create:
            return None
        se = scene.sequence_editor_create()
    return se.strips if hasattr(se, "strips") else se.sequences


def _all_strips(scene):
    se = scene.sequence_editor
    if se is None:
        return []
    return list(se.strips_all if hasattr(se, "strips_all") else se.sequences_all)


def own_strips(scene, listener: str | None = None, fmt: str | None = None) -> list:
    """Strips made by Soundstage, optionally only those of one listener/format."""
    out = []
    for s in _all_strips(scene):
        t = s.get(TAG_KEY)
        if not isinstance(t, str) or "|" not in t:
            continue
        lis, _, f = t.rpartition("|")
        if (listener is None or lis == listener) and (fmt is None or f == fmt):
            out.append(s)
    return out


def remove_own_strips(scene, listener: str, fmt: str) -> int | None:
    """Remove this listener/format's strips; return the channel they used (or None)."""
    coll = _collection(scene, create=False)
    channel = None
    for s in own_strips(scene, listener, fmt):
        channel = s.channel
        sound = getattr(s, "sound", None)
        coll.remove(s)
        # The old Sound still holds the previous file's audio in memory; drop
        # it so the new strip loads the new file and no orphan is saved.
        if sound is not None and sound.users == 0:
            bpy.data.sounds.remove(sound)
    return channel


def free_channel(scene, base: int) -> int:
    """The first channel at or above ``base`` holding no strip at all."""
    used = {s.channel for s in _all_strips(scene)}
    for ch in range(max(1, base), MAX_CHANNEL + 1):
        if ch not in used:
            return ch
    raise BridgeError(f"no free Video Sequencer channel at or above {base}; lower Soundstage's base channel")


def place_track(scene, wav: Path, listener: str, fmt: str, frame_start: int, *,
                base_channel: int = 30, relative: bool = True, mute: bool = False):
    """Replace this listener/format's strip with one playing ``wav`` from ``frame_start``.

    Parameters
    ----------
    wav : Path
        The baked file (absolute).
    relative : bool
        Store the path relative to the .blend when it is saved.
    mute : bool
        Add the strip muted (e.g. a listener that is not the scene camera).

    Returns
    -------
    bpy.types.SoundStrip
    """
    old_channel = remove_own_strips(scene, listener, fmt)
    channel = old_channel if old_channel is not None else free_channel(scene, base_channel)
    coll = _collection(scene, create=True)
    strip = coll.new_sound(strip_name(listener, fmt), str(wav), channel, int(frame_start))
    strip[TAG_KEY] = tag(listener, fmt)
    strip.mute = mute
    if relative and bpy.data.filepath:
        try:
            strip.sound.filepath = bpy.path.relpath(str(wav))
        except ValueError:  # another drive on Windows: keep it absolute
            pass
    return strip
