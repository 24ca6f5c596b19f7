"""Guess an impact material from an object's appearance (its render material).

``guess_material(name, metallic, roughness, transmission, base_color)`` returns the
name of a material in ``soundstage.impact.materials.MATERIALS`` and one sentence
saying why, to show the user (who can then change it). Pure Python, no bpy: the
add-on passes the Principled BSDF values in.

Rules, first match wins:
1. a keyword in the material name ("Oak_Planks", "brushed-steel.001", "GlassBottle");
2. transmission >= 0.5 -> glass;
3. metallic >= 0.5 -> a metal chosen by the base colour's hue (yellowish -> brass,
   reddish-orange -> copper, light and neutral -> aluminium, else steel);
4. non-metal by colour and roughness: brown hues -> wood; low-saturation greys ->
   concrete when rough, ceramic when glossy; glossy saturated colours -> plastic;
   anything else -> plastic, said to be a weak guess.
"""

from __future__ import annotations

import colorsys
import re

#: Keyword -> material. Matched against whole words of the name (camelCase,
#: snake_case, kebab-case and digits split apart); longest keywords first.
KEYWORDS = {
    "stainless": "steel", "steel": "steel", "iron": "steel", "chrome": "steel", "metal": "steel", "metallic": "steel",
    "tin": "steel", "nickel": "steel", "pan": "steel", "pot": "steel",
    "aluminium": "aluminium", "aluminum": "aluminium", "alu": "aluminium", "silver": "aluminium", "foil": "aluminium",
    "brass": "brass", "gold": "brass", "bronze": "brass", "bell": "brass",
    "copper": "copper",
    "glass": "glass", "window": "glass", "crystal": "glass", "bottle": "glass", "windshield": "glass",
    "ceramic": "ceramic", "porcelain": "ceramic", "china": "ceramic", "pottery": "ceramic", "tile": "ceramic",
    "tiles": "ceramic", "mug": "ceramic", "cup": "ceramic", "plate": "ceramic", "stoneware": "ceramic",
    "clay": "ceramic", "terracotta": "ceramic", "enamel": "ceramic", "vase": "ceramic", "bowl": "ceramic",
    "wood": "wood", "wooden": "wood", "oak": "wood", "pine": "wood", "walnut": "wood", "maple": "wood",
    "birch": "wood", "cherry": "wood", "mahogany": "wood", "teak": "wood", "plank": "wood", "planks": "wood",
    "timber": "wood", "plywood": "wood", "bark": "wood", "parquet": "wood", "bamboo": "wood", "log": "wood",
    "plastic": "plastic", "acrylic": "plastic", "pvc": "plastic", "abs": "plastic", "nylon": "plastic",
    "polymer": "plastic", "resin": "plastic", "vinyl": "plastic", "lego": "plastic",
    "rubber": "rubber", "tyre": "rubber", "tire": "rubber", "silicone": "rubber",
    "concrete": "concrete", "cement": "concrete", "asphalt": "concrete", "plaster": "concrete",
    "stone": "stone", "granite": "stone", "marble": "stone", "rock": "stone", "brick": "stone", "bricks": "stone",
    "slate": "stone", "pebble": "stone", "cobble": "stone", "cobblestone": "stone",
}
#: Keywords also looked for inside run-together words, longest first.
COMPOUND_KEYWORDS = sorted(
    ["wood", "steel", "metal", "glass", "stone", "brick", "marble", "granite", "concrete", "ceramic", "porcelain",
     "plastic", "rubber", "copper", "brass", "aluminium", "aluminum", "bronze", "timber", "plywood", "walnut",
     "mahogany", "crystal", "chrome", "stainless", "acrylic", "silicone", "cement", "asphalt", "pottery",
     "terracotta"], key=len, reverse=True)
# Names with several keywords take the first in reading order: "SteelPlate" is
# steel, "Plate" alone is a (ceramic) dish.


def _words(name: str):
    """Lower-case words of a material name: camelCase, separators and digits split."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name or ""))
    return [w for w in re.split(r"[^A-Za-z]+", s.lower()) if w]


def _fmt(x) -> str:
    return f"{float(x):.2f}"


def guess_material(name, metallic=0.0, roughness=0.5, transmission=0.0, base_color=(0.8, 0.8, 0.8)):
    """Guess the impact material of an object from its render material.

    Parameters
    ----------
    name : str or None
        Render material (or object) name.
    metallic, roughness, transmission : float
        Principled BSDF inputs, 0..1.
    base_color : sequence of 3 or 4 floats
        Linear RGB(A) base colour, 0..1.

    Returns
    -------
    material : str
        A key of ``soundstage.impact.materials.MATERIALS``.
    reason : str
        One sentence for the user, naming what decided it.
    """
    words = _words(name)
    for w in words:
        if w in KEYWORDS:
            return KEYWORDS[w], f"material name '{name}' contains '{w}'"
    # Compound words without separators ("woodfloor", "steelbeam"): substring match
    # on unambiguous keywords only ("iron" is in "environment", "tire" in "entire").
    joined = "".join(words)
    for kw in COMPOUND_KEYWORDS:
        if kw in joined:
            return KEYWORDS[kw], f"material name '{name}' contains '{kw}'"
    metallic = float(metallic or 0.0)
    roughness = float(0.5 if roughness is None else roughness)
    transmission = float(transmission or 0.0)
    rgb = [float(c) for c in (list(base_color or (0.8, 0.8, 0.8)) + [0.8, 0.8, 0.8])[:3]]
    rgb = [min(max(c, 0.0), 1.0) for c in rgb]
    # Hue and saturation on gamma-encoded values, closer to how the colour looks.
    h, s, v = colorsys.rgb_to_hsv(*[c ** (1 / 2.2) for c in rgb])
    hue = h * 360.0
    if transmission >= 0.5:
        return "glass", f"transmission {_fmt(transmission)} >= 0.5 (see-through)"
    if metallic >= 0.5:
        if s > 0.25 and 35 <= hue < 65:
            return "brass", f"metallic {_fmt(metallic)} with a yellow base colour (hue {hue:.0f} deg)"
        if s > 0.25 and (hue < 35 or hue >= 340):
            return "copper", f"metallic {_fmt(metallic)} with a reddish base colour (hue {hue:.0f} deg)"
        if v > 0.85 and s < 0.1:
            return "aluminium", f"metallic {_fmt(metallic)} with a light neutral base colour"
        return "steel", f"metallic {_fmt(metallic)} >= 0.5"
    if s > 0.2 and 15 <= hue < 50 and v < 0.85:
        return "wood", f"non-metal with a brown base colour (hue {hue:.0f} deg, saturation {s:.2f})"
    if s < 0.15:
        if roughness >= 0.6:
            return "concrete", f"rough ({_fmt(roughness)}) grey non-metal"
        if roughness <= 0.3:
            return "ceramic", f"glossy ({_fmt(roughness)}) neutral non-metal"
    if roughness <= 0.45 and s >= 0.2:
        return "plastic", f"glossy ({_fmt(roughness)}) coloured non-metal"
    return "plastic", "no name keyword and an ambiguous appearance: plastic is a weak default, please check"
