"""Acoustic materials on the Blender side: the library and the default guess.

The engine's material library is ``soundstage/data/materials.json`` (measured
octave-band absorption, seeded from pyroomacoustics' tables). Blender's own
Python has no pyroomacoustics, so the add-on reads that JSON file directly.
No ``bpy`` here: Blender materials are passed in as a name and a few PBR
numbers, so the guess is unit-testable.

A Blender material maps to an acoustic material in one of three ways:

* ``AUTO`` (the default): guessed from the material's name (keywords such as
  "carpet", "brick", "glass") and, failing that, from its PBR values
  (metallic, transmission, roughness). The guess and its reason are shown in
  the Material panel so the user can see and override it.
* ``LIBRARY``: a library material chosen by name.
* ``CUSTOM``: seven octave-band absorption coefficients (125 Hz .. 8 kHz) and
  a scattering coefficient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BridgeError

BANDS = (125, 250, 500, 1000, 2000, 4000, 8000)
#: Library file, relative to the extension root (which is also the repo root).
LIBRARY_PATH = Path(__file__).resolve().parents[1] / "soundstage" / "data" / "materials.json"
#: For faces without a material and for materials nothing can be guessed for:
#: painted plasterboard on studs is the commonest interior wall.
FALLBACK = "plasterboard"


@dataclass(frozen=True)
class LibraryMaterial:
    name: str
    category: str
    description: str
    absorption: tuple  # 7 floats, BANDS order


def _bands(absorption) -> tuple:
    """Absorption as 7 floats from a {"125": a, ...} dict or a 7-list."""
    if isinstance(absorption, dict):
        return tuple(float(absorption.get(str(b), absorption.get(b, 0.0))) for b in BANDS)
    if isinstance(absorption, (list, tuple)):
        vals = [float(a) for a in absorption][: len(BANDS)]
        return tuple(vals + [vals[-1] if vals else 0.0] * (len(BANDS) - len(vals)))
    return (0.0,) * len(BANDS)


def parse_library(doc) -> dict[str, LibraryMaterial]:
    """Normalise the library JSON into ``{name: LibraryMaterial}``.

    The shipped file is ``{"absorption": {name: {"category", "description",
    "coeffs": [7 values]}}, "scattering": {...}, ...}``: its absorption
    entries are the names a job accepts. Also accepted: a list of entries with
    ``name``, a ``{"materials": ...}`` wrapper, or a ``{name: entry}`` mapping,
    where an entry carries ``absorption`` or ``coeffs``.
    """
    if isinstance(doc, dict) and isinstance(doc.get("absorption"), dict) and "bands_hz" in doc:
        doc = doc["absorption"]
    if isinstance(doc, dict) and "materials" in doc:
        doc = doc["materials"]
    entries = []
    if isinstance(doc, list):
        entries = [(e.get("name"), e) for e in doc if isinstance(e, dict)]
    elif isinstance(doc, dict):
        entries = [(k, v) for k, v in doc.items() if isinstance(v, dict)]
    lib = {}
    for name, e in entries:
        values = e.get("absorption", e.get("coeffs"))
        if not name or values is None:
            continue
        lib[str(name)] = LibraryMaterial(
            str(name), str(e.get("category", "")), str(e.get("description", "")), _bands(values)
        )
    return lib


@lru_cache(maxsize=4)
def load_library(path: str | None = None) -> dict[str, LibraryMaterial]:
    """The material library (cached); empty when the file is missing."""
    p = Path(path) if path else LIBRARY_PATH
    try:
        return parse_library(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


# Keyword -> library material, most specific first. A name matches when the
# keyword appears in it (case-insensitive). These are judgement calls: the
# closest measured surface in the library for what the word usually means in
# an interior scene.
NAME_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("carpet", "rug", "mat_floor", "moquette"), ("carpet_cotton", "carpet_thin")),
    (("velvet",), ("curtains_velvet", "curtains_fabric")),
    (("curtain", "drape", "drapery"), ("curtains_fabric", "curtains_velvet")),
    (("blind",), ("blinds_half_open",)),
    (("sofa", "couch", "upholster", "cushion", "armchair", "pillow", "mattress", "bed"),
     ("chairs_medium_upholstered", "chairs_heavy_upholstered")),
    (("leather",), ("chairs_upholstered_leather",)),
    (("fabric", "cloth", "textile", "felt", "wool"), ("curtains_fabric", "felt_5mm")),
    (("foam", "absorber", "acoustic", "rockwool", "mineral"), ("rockwool_50mm_80kgm3", "panel_fabric_covered_8pcf")),
    (("window", "glazing"), ("glass_window",)),
    (("glass", "mirror"), ("glass_3mm", "glass_window")),
    (("brick",), ("brickwork",)),
    (("marble", "granite", "stone"), ("marble_floor", "limestone_wall")),
    (("tile", "ceramic", "porcelain"), ("ceramic_tiles",)),
    (("concrete", "cement", "asphalt"), ("rough_concrete", "concrete_floor")),
    (("linoleum", "vinyl", "lino"), ("linoleum_on_concrete",)),
    (("plywood",), ("plywood_thin",)),
    (("door",), ("wooden_door",)),
    (("parquet", "floorboard", "plank", "hardwood"), ("stage_floor", "wood_16mm")),
    (("wood", "oak", "pine", "walnut", "birch", "timber", "shelf", "table", "desk"), ("wood_16mm", "wooden_lining")),
    (("ceiling",), ("ceiling_plasterboard", "plasterboard")),
    (("plaster", "drywall", "gypsum", "paint", "wall"), ("plasterboard", "gypsum_board")),
    (("metal", "steel", "iron", "alumin", "chrome", "copper", "brass"), ("hard_surface",)),
    (("plastic",), ("hard_surface",)),
)


def guess(name: str, metallic: float = 0.0, roughness: float = 0.5, transmission: float = 0.0,
          library: dict | None = None) -> tuple[str, str]:
    """Guess a library material for a Blender material.

    Parameters
    ----------
    name : str
        The Blender material's name.
    metallic, roughness, transmission : float
        Principled BSDF values in [0, 1] (or the viewport values).
    library : dict, optional
        ``{name: ...}`` of available materials (default: the loaded library).

    Returns
    -------
    (material name, reason)
        ``reason`` is a short phrase for the UI, e.g. ``"name contains 'carpet'"``.
    """
    lib = load_library() if library is None else library
    low = (name or "").lower()

    def first_available(cands):
        for c in cands:
            if not lib or c in lib:
                return c
        return None

    for keywords, candidates in NAME_RULES:
        for k in keywords:
            if k in low and (pick := first_available(candidates)):
                return pick, f"name contains '{k}'"
    # Nothing in the name: fall back on how the surface is shaded. These only
    # separate "obviously hard and smooth" from the default wall.
    if metallic >= 0.5 and (pick := first_available(("hard_surface",))):
        return pick, f"metallic {metallic:.2f}"
    if transmission >= 0.5 and (pick := first_available(("glass_3mm", "glass_window"))):
        return pick, f"transmission {transmission:.2f}"
    if roughness < 0.25 and (pick := first_available(("ceramic_tiles", "hard_surface"))):
        return pick, f"glossy (roughness {roughness:.2f})"
    pick = first_available((FALLBACK,)) or (next(iter(lib)) if lib else FALLBACK)
    return pick, "default wall (nothing in the name or shading)"


def custom_spec(absorption, scattering: float, name: str = "") -> dict:
    """A job material object from 7 absorption values and a scattering value."""
    a = [float(x) for x in absorption]
    if len(a) != len(BANDS):
        raise BridgeError(f"custom absorption needs {len(BANDS)} values (125 Hz .. 8 kHz), got {len(a)}")
    for b, x in zip(BANDS, a):
        if not 0.0 <= x <= 1.0:
            raise BridgeError(f"custom absorption at {b} Hz is {x}; it must be between 0 and 1")
    spec = {"absorption": {str(b): x for b, x in zip(BANDS, a)}, "scattering": float(min(max(scattering, 0.0), 1.0))}
    if name:
        spec["name"] = name
    return spec
