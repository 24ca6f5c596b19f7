"""Generate ``soundstage/data/materials.json`` from pyroomacoustics' measured table.

Run from the repository root with the project's environment::

    .venv/bin/python tools/gen_materials.py

The source is the table pyroomacoustics ships as ``pyroomacoustics/data/materials.json``
(energy absorption and scattering coefficients per octave band, collected by the
pyroomacoustics authors from the annex of M. Vorlaender, *Auralization*, Springer 2008).
Every absorption and scattering entry is copied with its category and description.

Band mapping: Soundstage always works on the seven octave bands 125 Hz .. 8 kHz.
Entries measured on fewer bands (the table lists the lowest bands first) are extended
exactly as pyroomacoustics extends them when a room uses the material
(``OctaveBandsFactory.__call__``): linear interpolation/extrapolation of the
coefficient against log2(frequency), then clipping to [0, 1]. For a 6-band entry this
means ``a(8 kHz) = clip(2 a(4 kHz) - a(2 kHz), 0, 1)``; it is *not* "repeat the last
value". An entry with a single value is flat. The JSON keeps ``measured_bands`` so
anybody can tell measured values from extrapolated ones.

The generated file is committed: the Blender add-on reads it without pyroomacoustics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata, resources
from pathlib import Path

import numpy as np

BANDS = (125, 250, 500, 1000, 2000, 4000, 8000)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "soundstage" / "data" / "materials.json"


def extend_to_bands(coeffs: list[float], measured_freqs: list[float]) -> list[float]:
    """Map coefficients measured at ``measured_freqs`` onto ``BANDS``.

    Parameters
    ----------
    coeffs : list of float, length k >= 1
        Coefficients (energy absorption or scattering), one per measured band.
    measured_freqs : list of float, length k
        Centre frequencies (Hz) of the measured bands, increasing.

    Returns
    -------
    list of float, length 7
        Values at ``BANDS``: measured values unchanged, others linearly inter- or
        extrapolated against log2(f) from the nearest two measured bands, clipped to [0, 1].
    """
    c = np.asarray(coeffs, dtype=float)
    if c.size == 1:
        out = np.full(len(BANDS), c[0])
    else:
        x = np.log2(np.asarray(measured_freqs, dtype=float))
        xq = np.log2(np.asarray(BANDS, dtype=float))
        out = np.empty(len(BANDS))
        for i, q in enumerate(xq):
            # Pick the segment [x[j], x[j+1]] that contains q, or the end segment
            # for points outside (this is what interp1d(fill_value="extrapolate") does).
            j = int(np.clip(np.searchsorted(x, q) - 1, 0, x.size - 2))
            t = (q - x[j]) / (x[j + 1] - x[j])
            out[i] = c[j] + t * (c[j + 1] - c[j])
        out = np.clip(out, 0.0, 1.0)
    # Measured values are copied verbatim (no round-off from the interpolation formula).
    for f, v in zip(measured_freqs, coeffs):
        if f in BANDS:
            out[BANDS.index(f)] = v
    # Round away float noise such as 0.30000000000000004 from the extrapolation.
    return [round(float(v), 12) for v in out]


def build(table: dict, version: str) -> dict:
    """Build the Soundstage materials document from pyroomacoustics' parsed table."""
    centre = [float(f) for f in table["center_freqs"]]
    doc: dict = {
        "provenance": {
            "source": f"pyroomacoustics {version}, file pyroomacoustics/data/materials.json",
            "source_license": "MIT (pyroomacoustics, Copyright (c) 2014-2017 EPFL-LCAV)",
            "references": [
                "M. Vorlaender, Auralization: Fundamentals of Acoustics, Modelling, Simulation, "
                "Algorithms, and Acoustic Virtual Reality, Springer, 1st ed., 2008, annex "
                "(as cited by pyroomacoustics.parameters for this table)",
            ],
            "generated_by": "tools/gen_materials.py",
            "quantity": "energy absorption coefficient and scattering coefficient per octave band",
            "band_mapping": (
                "Entries measured on fewer bands are extended the way pyroomacoustics does "
                "(linear inter/extrapolation against log2 frequency, clipped to [0, 1]); "
                "'measured_bands' lists the bands that were measured."
            ),
        },
        "bands_hz": list(BANDS),
        "absorption": {},
        "scattering": {},
    }
    for kind in ("absorption", "scattering"):
        for category, entries in table[kind].items():
            for name, entry in entries.items():
                if name in doc["absorption"] or name in doc["scattering"]:
                    raise SystemExit(f"duplicate material name in source table: {name!r}")
                coeffs = [float(v) for v in entry["coeffs"]]
                freqs = centre[: len(coeffs)]
                doc[kind][name] = {
                    "category": category,
                    "description": entry.get("description", ""),
                    "coeffs": extend_to_bands(coeffs, freqs),
                    "measured_bands": [int(f) for f in freqs],
                }
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON path")
    args = parser.parse_args(argv)
    src = resources.files("pyroomacoustics") / "data" / "materials.json"
    table = json.loads(src.read_text(encoding="utf-8"))
    doc = build(table, metadata.version("pyroomacoustics"))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    tmp = args.out.with_name(".soundstage-tmp-" + args.out.name)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    n_abs, n_sca = len(doc["absorption"]), len(doc["scattering"])
    print(f"wrote {args.out} ({n_abs} absorption, {n_sca} scattering entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
