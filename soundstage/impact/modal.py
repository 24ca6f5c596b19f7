"""Modal model of an object: frequencies, damping and mode shapes, cached on disk.

``modal_model(mesh, material)`` voxelises the mesh (``voxel``), assembles the
finite-element stiffness and mass (``fem``), solves for the lowest elastic modes
and keeps:

* the mode shapes at the grid nodes (interpolated trilinearly to any point),
* the normal component of each mode at area-uniform surface samples (for the
  radiation estimate and for ``locate``),
* everything needed to evaluate a hit: ``excitation(point, normal)``.

Results are cached as ``.npz`` files under ``cache_dir()``: ``$SOUNDSTAGE_CACHE_DIR/modal``
if that variable is set, else ``$XDG_CACHE_HOME/soundstage/modal``, else
``~/.cache/soundstage/modal``. The key is a SHA-256 of the mesh (vertices and faces
as given), the elastic constants (density, Young's modulus, Poisson's ratio) and
the solver settings; the loss factor is not part of it, because damping is
applied at synthesis time.

Units: metres, kilograms, seconds. Mode shapes are mass-normalised
(``phi.T M phi = 1``), so their unit is m / sqrt(kg).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstage.errors import GeometryError
from soundstage.impact import fem
from soundstage.impact.materials import Material, get_material
from soundstage.impact.mesh import MAX_FACES, SHELL_THICKNESS, prepare_mesh
from soundstage.impact.voxel import CELL_BUDGET, VoxelGrid, voxelize

#: Bump when the numerical method changes, so old cache files are not reused.
MODEL_VERSION = 4
#: Elastic modes computed by default.
N_MODES = 64
#: Modes above this frequency (Hz) are dropped.
F_MAX = 20000.0
#: Modes below this frequency (Hz) are dropped (treated as rigid motion).
F_MIN = 20.0
#: Surface samples kept per model.
N_SURFACE = 384
#: Air density (kg/m^3) and speed of sound (m/s) for the radiation estimate.
RHO_AIR = 1.204
C_AIR = 343.0


def cache_dir() -> Path:
    """Folder of cached modal models (created on first write): ``cache_root() / "modal"``."""
    from soundstage.cachedir import cache_root

    return cache_root() / "modal"


@dataclass
class ModalModel:
    """Modes of one object in its own frame.

    Attributes
    ----------
    material : Material
    frequencies : ndarray, shape (K,)
        Undamped natural frequencies, Hz, ascending.
    grid : VoxelGrid
    conn : ndarray of int, shape (n_cells, 8)
        Node ids of each grid cell's corners (rows of ``node_modes``).
    node_modes : ndarray of float32, shape (n_nodes, 3, K)
        Mass-normalised mode shapes at the nodes, object frame, m / sqrt(kg).
    surface_points : ndarray, shape (S, 3)
        Area-uniform samples of the surface, metres.
    surface_normals : ndarray, shape (S, 3)
        Unit outward normals there (arbitrary side for shells).
    surface_modes : ndarray of float32, shape (S, K)
        Normal component of each mode at each sample.
    area : float
        Surface area, m^2.
    mass : float
        Mass of the model, kg.
    frequency_error : ndarray, shape (K,)
        Estimated relative discretisation error of each frequency (see ``_frequency_error``).
    info : dict
        Solid or shell, cell and DOF counts, notes on repairs, timing, cache key.
    """

    material: Material
    frequencies: np.ndarray
    grid: VoxelGrid
    conn: np.ndarray
    node_modes: np.ndarray
    surface_points: np.ndarray
    surface_normals: np.ndarray
    surface_modes: np.ndarray
    area: float
    mass: float
    frequency_error: np.ndarray = None
    info: dict = field(default_factory=dict)
    _lookup: np.ndarray = field(default=None, repr=False)
    _tree: object = field(default=None, repr=False)

    @property
    def n_modes(self) -> int:
        return len(self.frequencies)

    def damping_ratios(self, material: Material | None = None) -> np.ndarray:
        """Modal damping ratios (Rayleigh fit to the loss factor), shape (K,)."""
        return (material or self.material).damping_ratio(self.frequencies)

    def _cell_of(self, g: np.ndarray) -> np.ndarray:
        """Row in ``grid.cells`` of the filled cell containing (or nearest to) grid points g (P, 3)."""
        grid = self.grid
        if self._lookup is None:
            lut = np.full(grid.shape, -1, dtype=np.int64)
            lut[tuple(grid.cells.T)] = np.arange(len(grid.cells))
            self._lookup = lut
        idx = np.clip(np.floor(g / grid.spacing).astype(np.int64), 0, np.array(grid.shape) - 1)
        rows = self._lookup[idx[:, 0], idx[:, 1], idx[:, 2]]
        missing = rows < 0
        if missing.any():
            if self._tree is None:
                from scipy.spatial import cKDTree

                self._tree = cKDTree((grid.cells + 0.5) * grid.spacing)
            _, near = self._tree.query(g[missing])
            rows[missing] = near
        return rows

    def modes_at(self, points) -> np.ndarray:
        """Mode shapes at points (object frame), trilinear in the containing cell.

        Points outside the filled cells use the nearest filled cell, clamped to it.

        Parameters
        ----------
        points : array_like, shape (P, 3) or (3,)

        Returns
        -------
        ndarray of float32, shape (P, 3, K)
        """
        p = np.atleast_2d(np.asarray(points, dtype=float))
        g = self.grid.to_grid(p)
        rows = self._cell_of(g)
        cell = self.grid.cells[rows]
        t = np.clip(g / self.grid.spacing - cell, 0.0, 1.0)  # local coordinates in [0, 1]^3
        w = np.ones((len(p), 8))
        for a, c in enumerate(fem.CORNERS):
            for i in range(3):
                w[:, a] *= t[:, i] if c[i] else 1.0 - t[:, i]
        nodes = self.conn[rows]  # (P, 8)
        return np.einsum("pa,paik->pik", w.astype(np.float32), self.node_modes[nodes])

    def excitation(self, point, normal) -> np.ndarray:
        """Modal participation of a unit force pushing into the surface.

        Parameters
        ----------
        point : array_like, shape (3,)
            Contact point, object frame, metres.
        normal : array_like, shape (3,)
            Outward surface normal there; the force acts along ``-normal``.

        Returns
        -------
        ndarray, shape (K,)
            ``phi_k(point) . (-normal)``, m / sqrt(kg).
        """
        n = np.asarray(normal, dtype=float)
        n = n / max(np.linalg.norm(n), 1e-30)
        return -(self.modes_at(point)[0] * n[:, None].astype(np.float32)).sum(axis=0).astype(float)

    def radiation_gain(self) -> np.ndarray:
        """Pressure at 1 m per unit modal velocity, Pa / (sqrt(kg) / s), shape (K,).

        Each mode is treated as a compact radiator of the object's surface area A with
        the mode's RMS normal surface velocity and the radiation efficiency of a
        sphere of the same area, ``sigma = (ka)^2 / (1 + (ka)^2)``; the radiated power
        ``rho c A <v_n^2> sigma`` spread evenly over a sphere of 1 m gives
        ``p = rho c sqrt(A sigma / (4 pi)) * rms(phi . n) * qdot``.
        """
        a = np.sqrt(self.area / (4 * np.pi))
        k = 2 * np.pi * self.frequencies / C_AIR
        sigma = (k * a) ** 2 / (1 + (k * a) ** 2)
        rms = np.sqrt(np.mean(self.surface_modes.astype(float) ** 2, axis=0))
        return RHO_AIR * C_AIR * np.sqrt(self.area * sigma / (4 * np.pi)) * rms

    # --- persistence -------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model to ``path`` (.npz) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        g = self.grid
        arrays = dict(
            frequencies=self.frequencies, origin=g.origin, axes=g.axes, spacing=g.spacing,
            shape=np.array(g.shape), cells=g.cells.astype(np.int32), fraction=g.fraction,
            component=g.component.astype(np.int32), solid=np.array(g.solid), conn=self.conn.astype(np.int32),
            node_modes=self.node_modes.astype(np.float32), surface_points=self.surface_points,
            surface_normals=self.surface_normals, surface_modes=self.surface_modes.astype(np.float32),
            area=np.array(self.area), mass=np.array(self.mass), frequency_error=self.frequency_error,
            material=np.array(json.dumps(self.material.to_dict())), info=np.array(json.dumps(self.info)),
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path) -> "ModalModel":
        """Read a model written by ``save``."""
        with np.load(path, allow_pickle=False) as z:
            grid = VoxelGrid(z["origin"], z["axes"], z["spacing"], tuple(int(x) for x in z["shape"]),
                             z["cells"].astype(np.int64), z["fraction"], z["component"].astype(np.int64),
                             bool(z["solid"]))
            return cls(
                material=Material(**json.loads(str(z["material"]))), frequencies=z["frequencies"], grid=grid,
                conn=z["conn"].astype(np.int64), node_modes=z["node_modes"], surface_points=z["surface_points"],
                surface_normals=z["surface_normals"], surface_modes=z["surface_modes"], area=float(z["area"]),
                mass=float(z["mass"]), frequency_error=z["frequency_error"], info=json.loads(str(z["info"])),
            )


def model_key(vertices, faces, material: Material, settings: dict) -> str:
    """Cache key: SHA-256 of geometry, elastic constants and solver settings."""
    h = hashlib.sha256()
    h.update(f"soundstage-modal-v{MODEL_VERSION}".encode())
    h.update(np.ascontiguousarray(vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    h.update(json.dumps([material.density, material.youngs_modulus, material.poisson]).encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def _frequency_error(freqs: np.ndarray, coarse: np.ndarray | None) -> np.ndarray:
    """Estimated relative error of each frequency, from a model with twice the cell size.

    For an error falling as h^2 (Richardson), the fine model's error is about a third
    of the coarse-fine difference. Modes are paired by rank; a running maximum over
    neighbouring ranks covers reordering within clusters. Capped at 6 % (a coarse model
    of a thin-walled object can be far from converged, which would overstate it); 2 % where
    no coarse model exists.
    """
    if coarse is None or len(coarse) == 0:
        return np.full(len(freqs), 0.02)
    n = min(len(freqs), len(coarse))
    d = np.abs(coarse[:n] - freqs[:n]) / freqs[:n] / 3.0
    d = np.concatenate([d, np.full(len(freqs) - n, d[-1] if n else 0.02)])
    d = np.maximum.reduce([np.roll(np.pad(d, 2, mode="edge"), s)[2:-2] for s in (-2, -1, 0, 1, 2)])
    return np.clip(d, 0.0, 0.06)


def _fe_model(grid: VoxelGrid, material: Material):
    """Assemble K and M on a grid; returns K, M, compact node ids, node grid coordinates."""
    # Nodes are shared only within a face-connected part, so parts that merely touch
    # at an edge or corner vibrate independently instead of hinging on one node.
    n_grid_nodes = int(np.prod(np.array(grid.shape) + 1))
    gid = fem.cell_node_ids(grid.cells, grid.shape) + grid.component[:, None] * n_grid_nodes
    uniq, conn = np.unique(gid, return_inverse=True)
    conn = conn.reshape(-1, 8)
    ke = fem.hex8_stiffness(grid.spacing, material.youngs_modulus, material.poisson)
    me = fem.hex8_mass(grid.spacing, material.density)
    kc = np.broadcast_to(ke, (len(conn), 24, 24)).copy()
    mc = np.broadcast_to(me, (len(conn), 24, 24)).copy()
    part = np.nonzero(~grid.full)[0]
    if len(part):
        # Partly filled cells: integrate over the material only (finite-cell method).
        remap = np.full(len(conn), -1)
        remap[part] = np.arange(len(part))
        kp, mp = fem.cell_matrices(grid.spacing, material.youngs_modulus, material.poisson, material.density,
                                   remap[grid.qp_row], grid.qp_local, grid.qp_weight, len(part))
        kc[part], mc[part] = kp, mp
    K, M = fem.assemble(conn, np.ones(len(conn)), kc, mc, len(uniq))
    coords = np.array(np.unravel_index(uniq % n_grid_nodes, np.array(grid.shape) + 1)).T
    return K, M, conn, coords


def _grid_modes(grid: VoxelGrid, material: Material, n_modes: int, name: str):
    K, M, conn, coords = _fe_model(grid, material)
    if K.shape[0] < 30:
        raise GeometryError(f"{name}: too small to model ({len(grid.cells)} cells); check its scale (metres)")
    # Bending estimate of the first mode, c * thickness / length^2, from the grid's
    # extents; only used to place the eigensolver's shift.
    ext = np.sort(np.array(grid.shape) * grid.spacing)
    f_guess = 0.5 * material.bar_wave_speed() * ext[0] / ext[2] ** 2
    freqs, vecs = fem.lowest_modes(K, M, n_modes, n_rigid=6 * grid.n_parts, f_floor=F_MIN, f_guess=f_guess,
                                   node_coords=coords)
    return freqs, vecs, conn, K.shape[0]


def _solve(mesh, material: Material, budget, n_modes, f_max, shell_thickness, max_faces, name, seed=0):
    import trimesh

    t0 = time.perf_counter()
    prep = prepare_mesh(mesh, max_faces=max_faces, shell_thickness=shell_thickness, name=name)
    grid = voxelize(prep, budget=budget, name=name)
    t_vox = time.perf_counter() - t0
    t1 = time.perf_counter()
    k = n_modes
    fc = None
    if budget >= 800:
        # A coarse model (1/8 of the cells, twice the cell size) first. (1) The
        # eigensolver's cost grows with the number of modes asked for, and compact
        # objects have few modes below f_max: the coarse count (which errs low, coarse
        # grids being stiffer) sets how many to ask for. (2) Comparing the two models
        # estimates the discretisation error of each frequency (below).
        coarse = voxelize(prep, budget=budget // 8, name=name)
        try:
            fc, _, _, _ = _grid_modes(coarse, material, n_modes, name)
        except GeometryError:
            fc = None
        if fc is not None and len(fc) and fc[-1] > f_max:
            k = min(n_modes, int(np.ceil(1.3 * np.sum(fc <= 1.15 * f_max))) + 6)
    freqs, vecs, conn, n_dof = _grid_modes(grid, material, k, name)
    t_eig = time.perf_counter() - t1
    keep = freqs <= f_max
    freqs, vecs = freqs[keep], vecs[:, keep]
    freq_error = _frequency_error(freqs, fc)
    if len(freqs) == 0:
        raise GeometryError(f"{name}: no vibration mode between {F_MIN:g} Hz and {f_max:g} Hz "
                            f"(object too large or too soft to ring audibly)")
    # Grid-frame displacement -> object frame: rows of axes are the grid axes.
    u = vecs.reshape(-1, 3, vecs.shape[1])
    node_modes = np.einsum("ji,njk->nik", grid.axes, u).astype(np.float32)
    pts, face = trimesh.sample.sample_surface(prep.mesh, N_SURFACE, seed=seed)
    normals = np.asarray(prep.mesh.face_normals)[face]
    model = ModalModel(
        material=material, frequencies=freqs, grid=grid, conn=conn, node_modes=node_modes,
        surface_points=np.asarray(pts), surface_normals=normals,
        surface_modes=np.zeros((len(pts), len(freqs)), np.float32),
        area=float(prep.mesh.area), mass=float(grid.volume() * material.density), frequency_error=freq_error,
        info=dict(kind="solid" if prep.solid else "shell", shell_thickness=prep.shell_thickness, notes=prep.notes,
                  cells=int(len(grid.cells)), dofs=int(n_dof), parts=grid.n_parts,
                  spacing_mm=[round(float(s) * 1000, 3) for s in grid.spacing], triangles=int(len(prep.mesh.faces)),
                  modes_requested=int(k), voxelise_s=round(t_vox, 3), eigen_s=round(t_eig, 3)),
    )
    m = model.modes_at(pts)
    model.surface_modes = np.einsum("pik,pi->pk", m, normals.astype(np.float32)).astype(np.float32)
    # Mean wall thickness 2V/A (exact for a thin closed wall; a solid cube gives a/3).
    wall = 2 * grid.volume() / prep.mesh.area if prep.solid else prep.shell_thickness
    model.info["wall_mm"] = round(1000 * wall, 3)
    # Walls lined up with the grid are exact whatever their thickness (whole cells);
    # walls that cut across it are only as good as the cells are small.
    if np.mean(grid.full) < 0.3 and np.max(grid.spacing) > 1.5 * wall:
        model.info["notes"] = list(model.info["notes"]) + [
            f"walls (~{1000 * wall:.2g} mm) are thinner than the grid cells ({1000 * np.max(grid.spacing):.2g} mm): "
            f"curved thin walls may come out too stiff (frequencies high by 10-50 %); raise the budget"]
    return model


def modal_model(mesh, material, *, budget: int = CELL_BUDGET, n_modes: int = N_MODES, f_max: float = F_MAX,
                shell_thickness: float = SHELL_THICKNESS, max_faces: int = MAX_FACES, cache: bool = True,
                name: str = "mesh") -> ModalModel:
    """Modal model of a mesh made of a material, from the cache when possible.

    Parameters
    ----------
    mesh : trimesh.Trimesh or path
        The object in its own frame, metres (apply scale before calling).
    material : str, dict or Material
    budget : int
        Target number of filled grid cells (cost and accuracy knob).
    n_modes : int
        Elastic modes to compute (before the ``f_max`` cut).
    f_max : float
        Highest frequency kept, Hz.
    shell_thickness : float
        Thickness given to open or zero-volume surfaces, metres.
    max_faces : int
        Simplify meshes above this many triangles.
    cache : bool
        Read and write the on-disk cache.
    name : str
        Object name for messages.

    Returns
    -------
    ModalModel

    Raises
    ------
    GeometryError, MaterialError
    """
    from soundstage.impact.mesh import load_mesh

    if isinstance(mesh, (str, os.PathLike)):
        name = name if name != "mesh" else Path(mesh).name
        mesh = load_mesh(mesh)
    mat = get_material(material)
    settings = dict(budget=int(budget), n_modes=int(n_modes), f_max=float(f_max),
                    shell_thickness=float(shell_thickness), max_faces=int(max_faces))
    key = model_key(mesh.vertices, mesh.faces, mat, settings)
    path = cache_dir() / f"{key}.npz"
    if cache and path.is_file():
        try:
            model = ModalModel.load(path)
            # Damping and the name come from the caller's material, not the cached one.
            model.material = mat
            model.info["cache"] = "hit"
            return model
        except Exception:  # a truncated or foreign file: recompute and overwrite
            pass
    model = _solve(mesh, mat, budget, n_modes, f_max, shell_thickness, max_faces, name)
    model.info["key"] = key
    if cache:
        try:
            model.save(path)
            model.info["cache"] = "written"
        except OSError as e:  # a read-only cache folder must not stop the sound
            model.info["cache"] = f"not written ({e.strerror})"
    return model
