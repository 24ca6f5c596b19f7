"""Elastic and damping properties of solid materials, for impact sounds.

Every figure carries its source. Materials are modelled as isotropic and linear
elastic (wood is orthotropic in reality; the value along the grain is used, which
is what governs the bending of boards, beams and sticks).

Sources
-------
[C] W. D. Callister & D. G. Rethwisch, *Materials Science and Engineering: An
    Introduction*, 9th ed., Wiley 2014: Table 6.1 (room-temperature E and Poisson's
    ratio of metal alloys), Table 12.5 (ceramics and glass), Table B.1-B.3 (density,
    modulus, Poisson's ratio of common materials).
[W] Forest Products Laboratory, *Wood Handbook: Wood as an Engineering Material*,
    FPL-GTR-190, USDA 2010: Table 5-3a (modulus of elasticity at 12 % moisture),
    Table 5-1 (specific gravity), Table 5-2 (Poisson's ratios, mu_LR ~ 0.35-0.37 for oak).
[H] L. Cremer, M. Heckl & B. A. T. Petersson, *Structure-Borne Sound*, 3rd ed.,
    Springer 2005, Table 3.1 "loss factors of materials at room temperature and
    audio frequencies" (also reproduced in Beranek & Ver, *Noise and Vibration
    Control Engineering*, Wiley 1992): steel 2-6e-4 (iron), aluminium ~1e-4, brass
    < 1e-3, copper ~2e-3, glass 0.6-2e-3, Plexiglas 0.02-0.04, concrete (dense)
    ~ 4-8e-3 (porous/light ~0.015), brick 0.01-0.02, oak/fir 0.008-0.01, rubber 0.1-1.
[E] EN 1992-1-1 (Eurocode 2), Table 3.1 (C30/37: E_cm = 33 GPa) and 3.1.3(4)
    (Poisson's ratio 0.2 for uncracked concrete); EN 1991-1-1 Table A.1 (normal
    weight concrete 24 kN/m^3 -> ~2400 kg/m^3).
[G] R. E. Goodman, *Introduction to Rock Mechanics*, 2nd ed., Wiley 1989,
    Table A1.1/A1.2 (granite: E 40-70 GPa, nu 0.2-0.3, density ~2650-2700).
[P] Representative datasheet values for vitrified tableware porcelain/stoneware
    (E 60-100 GPa, density 2300-2500 kg/m^3, nu 0.2-0.25; e.g. ASM Engineered
    Materials Handbook vol. 4, Ceramics and Glasses, 1991). The loss factor of
    vitrified ceramic is not in [H]; 2e-3 is an *estimate* between glass (1e-3) and
    fired-clay brick (1e-2) and is marked as such.
[R] Hard rubber: E ~ 5-10 MPa is typical of vulcanised rubber at small strain
    (Callister Table B.2 lists elastomers at 0.001-0.01 GPa); loss factor 0.1 from
    the low end of [H]'s rubber range.

Damping
-------
The table gives the loss factor ``eta`` (measured in flexure around 1 kHz). The
synthesis uses Rayleigh damping ``C = alpha M + beta K``, i.e. modal damping ratio
``zeta(w) = alpha / (2 w) + beta w / 2``, fitted so that ``zeta = eta / 2`` at
``RAYLEIGH_FIT_HZ`` = (200 Hz, 5 kHz). Between those the ratio dips a little
below ``eta/2``; above, it grows linearly (higher modes die faster, as in real
objects where radiation and contact losses add to the material's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from soundstage.errors import SoundstageError

#: Frequencies (Hz) where the Rayleigh damping curve meets eta / 2.
RAYLEIGH_FIT_HZ = (200.0, 5000.0)


class MaterialError(SoundstageError):
    """Unknown or invalid impact material."""


@dataclass(frozen=True)
class Material:
    """An isotropic linear-elastic material with a loss factor.

    Attributes
    ----------
    name : str
    density : float, kg/m^3
    youngs_modulus : float, Pa
    poisson : float
    loss_factor : float
        Structural loss factor eta (dimensionless); damping ratio is eta / 2.
    source : str
        Where each figure comes from (keys of the module docstring's source list).
    """

    name: str
    density: float
    youngs_modulus: float
    poisson: float
    loss_factor: float
    source: str = ""

    def rayleigh(self):
        """Rayleigh coefficients (alpha in 1/s, beta in s) fitted to ``loss_factor``."""
        w1, w2 = (2 * np.pi * f for f in RAYLEIGH_FIT_HZ)
        zeta = self.loss_factor / 2
        beta = 2 * zeta / (w1 + w2)
        alpha = 2 * zeta * w1 * w2 / (w1 + w2)
        return alpha, beta

    def damping_ratio(self, freqs_hz):
        """Modal damping ratio at the given undamped frequencies (Hz), Rayleigh model."""
        w = 2 * np.pi * np.asarray(freqs_hz, dtype=float)
        alpha, beta = self.rayleigh()
        return np.clip(alpha / (2 * w) + beta * w / 2, 0.0, 0.99)

    def bar_wave_speed(self) -> float:
        """sqrt(E / rho), m/s."""
        return float(np.sqrt(self.youngs_modulus / self.density))

    def to_dict(self) -> dict:
        return asdict(self)


def _m(name, rho, E_gpa, nu, eta, source):
    return Material(name, float(rho), float(E_gpa) * 1e9, float(nu), float(eta), source)


#: The material table. Keys are the names users type.
MATERIALS = {
    m.name: m
    for m in [
        # Plain carbon steel: E 207 GPa, nu 0.30 [C T6.1]; 7850 kg/m^3 [C B.1]; eta 2e-4 (low end of iron/steel) [H].
        _m("steel", 7850, 207, 0.30, 2e-4, "E, nu: [C] Table 6.1; rho: [C] Table B.1; eta: [H]"),
        # Aluminium alloy: E 69 GPa, nu 0.33 [C T6.1]; 2710 kg/m^3 [C B.1]; eta 1e-4 [H].
        _m("aluminium", 2710, 69, 0.33, 1e-4, "E, nu: [C] Table 6.1; rho: [C] Table B.1; eta: [H]"),
        # Brass: E 97 GPa, nu 0.34 [C T6.1]; 8530 kg/m^3 [C B.1]; eta < 1e-3 -> 5e-4 [H].
        _m("brass", 8530, 97, 0.34, 5e-4, "E, nu: [C] Table 6.1; rho: [C] Table B.1; eta: [H]"),
        # Copper: E 110 GPa, nu 0.34 [C T6.1]; 8940 kg/m^3 [C B.1]; eta 2e-3 [H].
        _m("copper", 8890, 110, 0.34, 2e-3, "E, nu: [C] Table 6.1; rho: [C] Table B.1; eta: [H]"),
        # Soda-lime glass: E 69 GPa, nu 0.23 [C T12.5]; 2500 kg/m^3 [C B.1]; eta 1e-3 (0.6-2e-3) [H].
        _m("glass", 2500, 69, 0.23, 1e-3, "E, nu: [C] Table 12.5; rho: [C] Table B.1; eta: [H]"),
        # Porcelain/stoneware: E 70 GPa, nu 0.22, 2400 kg/m^3 [P]; eta 2e-3 estimated [P].
        _m("ceramic", 2400, 70, 0.22, 2e-3, "E, nu, rho: [P]; eta: estimate, see [P]"),
        # Oak along the grain: E 12.5 GPa [W T5-3a, northern red oak]; SG 0.63 -> ~700 kg/m^3 at 12 % MC [W];
        # nu_LR 0.35 [W T5-2]; eta 0.01 [H].
        _m("wood", 700, 12.5, 0.35, 0.01, "E: [W] Table 5-3a; rho: [W] Table 5-1; nu: [W] Table 5-2; eta: [H]"),
        # Rigid thermoplastic (PMMA/acrylic): E 3.1 GPa, nu 0.37, 1190 kg/m^3 [C B.1-B.3]; eta 0.03 (Plexiglas 0.02-0.04) [H].
        _m("plastic", 1190, 3.1, 0.37, 0.03, "E, nu, rho: [C] Tables B.1-B.3 (PMMA); eta: [H] (Plexiglas)"),
        # Normal-weight concrete C30/37: E 33 GPa [E T3.1], nu 0.2 [E 3.1.3], 2400 kg/m^3 [E]; eta 6e-3 [H].
        _m("concrete", 2400, 33, 0.20, 6e-3, "E, nu, rho: [E]; eta: [H] (dense concrete)"),
        # Granite: E 50 GPa, nu 0.25, 2650 kg/m^3 [G]; eta 6e-3 taken as dense concrete/stone [H].
        _m("stone", 2650, 50, 0.25, 6e-3, "E, nu, rho: [G]; eta: [H] (dense concrete, as for stone)"),
        # Hard rubber: E 8 MPa, nu 0.49 (nearly incompressible), 1100 kg/m^3, eta 0.1 [R].
        _m("rubber", 1100, 0.008, 0.45, 0.1, "[R]; nu lowered from 0.49 to 0.45 to keep the solid elements from locking"),
    ]
}

#: Other names users type for the same materials.
ALIASES = {
    "aluminum": "aluminium", "alu": "aluminium", "iron": "steel", "metal": "steel", "stainless": "steel",
    "porcelain": "ceramic", "stoneware": "ceramic", "china": "ceramic", "pottery": "ceramic",
    "timber": "wood", "oak": "wood", "acrylic": "plastic", "pmma": "plastic", "granite": "stone",
    "marble": "stone", "rock": "stone", "cement": "concrete",
}


def material_names():
    """Names of the built-in impact materials, sorted."""
    return sorted(MATERIALS)


def get_material(spec) -> Material:
    """Resolve a material name, alias, ``Material`` or dict of properties.

    A dict needs ``density`` (kg/m^3), ``youngs_modulus`` (Pa), ``poisson`` and
    ``loss_factor``; ``name`` is optional.

    Raises
    ------
    MaterialError
        Unknown name, missing field or physically invalid value.
    """
    if isinstance(spec, Material):
        mat = spec
    elif isinstance(spec, str):
        key = spec.strip().lower()
        key = ALIASES.get(key, key)
        if key not in MATERIALS:
            raise MaterialError(f"unknown impact material '{spec}'; choose one of: {', '.join(material_names())}")
        return MATERIALS[key]
    elif isinstance(spec, dict):
        missing = [k for k in ("density", "youngs_modulus", "poisson", "loss_factor") if k not in spec]
        if missing:
            raise MaterialError(f"custom impact material lacks {', '.join(missing)}")
        try:
            mat = Material(str(spec.get("name", "custom")), float(spec["density"]), float(spec["youngs_modulus"]),
                           float(spec["poisson"]), float(spec["loss_factor"]), str(spec.get("source", "user")))
        except (TypeError, ValueError) as e:
            raise MaterialError(f"custom impact material has a non-numeric property ({e})") from e
    else:
        raise MaterialError(f"impact material must be a name or a dict, got {type(spec).__name__}")
    if not (mat.density > 0 and mat.youngs_modulus > 0 and -1 < mat.poisson < 0.5 and 0 <= mat.loss_factor < 2):
        raise MaterialError(f"impact material '{mat.name}' has invalid properties: density {mat.density}, "
                            f"E {mat.youngs_modulus}, nu {mat.poisson}, eta {mat.loss_factor}")
    return mat
