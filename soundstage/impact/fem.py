"""Linear-elastic finite elements on a regular grid of boxes, and the modal eigenproblem.

Element
-------
Every cell of the grid is the same rectangular box (``hx x hy x hz``), so the
element matrices are computed once and scaled per cell. The stiffness is the
8-node hexahedron *with incompatible modes* (Wilson, Taylor, Doherty & Ghaboussi
1973; Taylor, Beresford & Wilson 1976): three internal bubble modes
``1 - xi**2``, ``1 - eta**2``, ``1 - zeta**2`` per displacement component, removed
by static condensation. A plain trilinear hexahedron locks in bending (parasitic
shear), so a beam or plate one or two cells thick comes out far too stiff; the
incompatible modes represent pure bending of a box exactly, which is what keeps
thin parts from being artificially stiff. On boxes the element passes the patch
test (the Jacobian is constant). The mass is the consistent trilinear mass.

Partially filled cells (the boundary of a curved object) get their stiffness and
mass scaled by their volume fraction (a finite-cell style approximation).

Assembly uses node-major degrees of freedom: node ``i`` owns DOFs ``3i, 3i+1, 3i+2``
(x, y, z). ``assemble`` is the vectorised path, ``assemble_reference`` the slow
element-by-element loop it is tested against.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

#: Local corner offsets of the 8 nodes, in the usual hexahedron order.
CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=np.int64
)
_GAUSS = np.array([-1.0, 1.0]) / np.sqrt(3.0)


def elasticity_matrix(E: float, nu: float) -> np.ndarray:
    """Isotropic constitutive matrix, Voigt order (xx, yy, zz, xy, yz, zx), engineering shear.

    Parameters
    ----------
    E : float
        Young's modulus, Pa.
    nu : float
        Poisson's ratio, in (-1, 0.5).

    Returns
    -------
    ndarray, shape (6, 6), Pa
    """
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    D = np.zeros((6, 6))
    D[:3, :3] = lam
    D[[0, 1, 2], [0, 1, 2]] += 2 * mu
    D[[3, 4, 5], [3, 4, 5]] = mu
    return D


def _strain_operator(dN: np.ndarray) -> np.ndarray:
    """Strain-displacement matrix for shape-function gradients ``dN`` (n, 3) -> (6, 3n)."""
    n = dN.shape[0]
    B = np.zeros((6, 3 * n))
    for a in range(n):
        dx, dy, dz = dN[a]
        c = 3 * a
        B[0, c] = dx
        B[1, c + 1] = dy
        B[2, c + 2] = dz
        B[3, c], B[3, c + 1] = dy, dx
        B[4, c + 1], B[4, c + 2] = dz, dy
        B[5, c], B[5, c + 2] = dz, dx
    return B


def hex8_stiffness(h, E: float, nu: float, incompatible: bool = True, condense: bool = True) -> np.ndarray:
    """Stiffness of one box element, with or without the incompatible bending modes.

    Parameters
    ----------
    h : sequence of 3 floats
        Box edge lengths (hx, hy, hz), metres.
    E, nu : float
        Young's modulus (Pa) and Poisson's ratio.
    incompatible : bool
        True: condensed incompatible-modes element (no shear locking).
        False: plain trilinear element (kept for comparison and tests).
    condense : bool
        False returns the 33 x 33 matrix before the bubbles are condensed out.

    Returns
    -------
    ndarray, shape (24, 24), N/m; DOFs node-major in ``CORNERS`` order.
    """
    h = np.asarray(h, dtype=float)
    D = elasticity_matrix(E, nu)
    sgn = 2.0 * CORNERS - 1.0  # corner signs in natural coordinates
    inv_j = 2.0 / h  # d(xi)/dx for a box (constant diagonal Jacobian)
    det_j = np.prod(h) / 8.0
    nb = 33 if incompatible else 24
    K = np.zeros((nb, nb))
    for xi in _GAUSS:
        for eta in _GAUSS:
            for zeta in _GAUSS:
                p = np.array([xi, eta, zeta])
                # Trilinear N_a = prod_i (1 + s_ai p_i) / 8 and its natural derivatives.
                f = 1.0 + sgn * p  # (8, 3)
                dn = np.empty((8, 3))
                dn[:, 0] = sgn[:, 0] * f[:, 1] * f[:, 2] / 8
                dn[:, 1] = sgn[:, 1] * f[:, 0] * f[:, 2] / 8
                dn[:, 2] = sgn[:, 2] * f[:, 0] * f[:, 1] / 8
                grads = dn * inv_j
                if incompatible:
                    # Bubbles P_i = 1 - p_i**2: dP_i/dx_i = -2 p_i * 2/h_i, zero otherwise.
                    bub = np.diag(-2.0 * p * inv_j)
                    grads = np.vstack([grads, bub])
                B = _strain_operator(grads)
                K += B.T @ D @ B * det_j
    if not incompatible or not condense:
        return K
    kcc, kci, kii = K[:24, :24], K[:24, 24:], K[24:, 24:]
    return kcc - kci @ np.linalg.solve(kii, kci.T)


def hex8_mass(h, rho: float) -> np.ndarray:
    """Consistent mass of one box element of density ``rho`` (kg/m^3).

    Returns
    -------
    ndarray, shape (24, 24), kg; DOFs node-major in ``CORNERS`` order.
    """
    h = np.asarray(h, dtype=float)
    # 1-D consistent mass of a linear element of unit length is [[2, 1], [1, 2]] / 6;
    # the box mass is the tensor product, times the volume.
    m1 = np.array([[2.0, 1.0], [1.0, 2.0]]) / 6.0
    ms = np.empty((8, 8))
    for a in range(8):
        for b in range(8):
            ms[a, b] = np.prod([m1[CORNERS[a, i], CORNERS[b, i]] for i in range(3)])
    return np.kron(ms * rho * np.prod(h), np.eye(3))


def _natural_grads(local: np.ndarray, h: np.ndarray, centre: np.ndarray | None = None):
    """Trilinear shape values and physical gradients, plus the bubble gradients.

    Parameters
    ----------
    local : ndarray, shape (Q, 3)
        Points in the cell, coordinates scaled to [0, 1].
    h : ndarray, shape (3,)
        Cell edges, m.
    centre : ndarray, shape (Q, 3), optional
        Centroid (same scaled coordinates) of the material in each point's cell.
        The bubble gradients are taken relative to it, so that they average to zero
        over the material: the incompatible modes then cannot cancel a constant
        strain (the patch test holds in partly filled cells too; without this a thin
        wall in a cell could shed its membrane stiffness into the bubbles).

    Returns
    -------
    N : ndarray, shape (Q, 8)
    grads : ndarray, shape (Q, 11, 3)
        Gradients (1/m) of the 8 nodal functions, then of the 3 bubbles 1 - p_i^2.
    """
    p = 2.0 * local - 1.0  # natural coordinates in [-1, 1]
    sgn = 2.0 * CORNERS - 1.0
    f = 1.0 + sgn[None, :, :] * p[:, None, :]  # (Q, 8, 3)
    N = f.prod(axis=2) / 8
    inv_j = 2.0 / h
    g = np.empty((len(p), 11, 3))
    g[:, :8, 0] = sgn[None, :, 0] * f[:, :, 1] * f[:, :, 2] / 8 * inv_j[0]
    g[:, :8, 1] = sgn[None, :, 1] * f[:, :, 0] * f[:, :, 2] / 8 * inv_j[1]
    g[:, :8, 2] = sgn[None, :, 2] * f[:, :, 0] * f[:, :, 1] / 8 * inv_j[2]
    g[:, 8:, :] = 0.0
    pc = 0.0 if centre is None else 2.0 * centre - 1.0
    for i in range(3):
        g[:, 8 + i, i] = -2.0 * (p - pc)[:, i] * inv_j[i] if centre is not None else -2.0 * p[:, i] * inv_j[i]
    return N, g


def _strain_operators(grads: np.ndarray) -> np.ndarray:
    """Vectorised ``_strain_operator``: (Q, n, 3) gradients -> (Q, 6, 3n)."""
    Q, n, _ = grads.shape
    B = np.zeros((Q, 6, 3 * n))
    dx, dy, dz = grads[:, :, 0], grads[:, :, 1], grads[:, :, 2]
    B[:, 0, 0::3] = dx
    B[:, 1, 1::3] = dy
    B[:, 2, 2::3] = dz
    B[:, 3, 0::3], B[:, 3, 1::3] = dy, dx
    B[:, 4, 1::3], B[:, 4, 2::3] = dz, dy
    B[:, 5, 0::3], B[:, 5, 2::3] = dz, dx
    return B


def cell_matrices(h, E: float, nu: float, rho: float, rows: np.ndarray, local: np.ndarray, weight: np.ndarray,
                  n_cells: int, void_stiffness: float = 1e-6, chunk: int = 4096, incompatible: bool = True):
    """Element matrices of partly filled cells, integrated over the material only.

    This is the finite-cell idea: the cell keeps its box shape functions, but the
    integrals run over the material inside it (the quadrature points come from the
    voxeliser), so a thin wall crossing a cell adds the stiffness of that wall where
    it actually is, not that of a uniformly diluted box (which over-states bending
    stiffness by (cell size / wall thickness)^2). The incompatible modes are
    condensed per cell; ``void_stiffness`` times a full cell's matrix is added so
    nearly empty cells stay well-conditioned.

    Parameters
    ----------
    h : array_like, shape (3,)
        Cell edges, m.
    E, nu, rho : float
        Young's modulus (Pa), Poisson's ratio, density (kg/m^3).
    rows : ndarray of int, shape (Q,)
        Cell (0..n_cells-1) of each quadrature point.
    local : ndarray, shape (Q, 3)
        Point coordinates in the cell, scaled to [0, 1].
    weight : ndarray, shape (Q,)
        Volume weights, m^3.
    n_cells : int

    Returns
    -------
    K : ndarray, shape (n_cells, 24, 24), N/m
    M : ndarray, shape (n_cells, 24, 24), kg
    """
    h = np.asarray(h, dtype=float)
    D = elasticity_matrix(E, nu)
    K33 = np.zeros((n_cells, 33, 33))
    M8 = np.zeros((n_cells, 8, 8))
    order = np.argsort(rows, kind="stable")
    rows, local, weight = rows[order], local[order], weight[order]
    wsum = np.bincount(rows, weights=weight, minlength=n_cells)
    centre = np.stack([np.bincount(rows, weights=weight * local[:, i], minlength=n_cells) for i in range(3)], axis=1)
    centre /= np.maximum(wsum, 1e-300)[:, None]
    for a in range(0, len(rows), chunk):
        r, lo, w = rows[a : a + chunk], local[a : a + chunk], weight[a : a + chunk]
        N, g = _natural_grads(lo, h, centre[r])
        B = _strain_operators(g)
        kq = np.einsum("qji,jk,qkl->qil", B, D, B, optimize=True) * w[:, None, None]
        mq = N[:, :, None] * N[:, None, :] * (rho * w)[:, None, None]
        starts = np.r_[0, np.nonzero(np.diff(r))[0] + 1]
        K33[r[starts]] += np.add.reduceat(kq, starts, axis=0)
        M8[r[starts]] += np.add.reduceat(mq, starts, axis=0)
    full = hex8_stiffness(h, E, nu, incompatible=True, condense=False)
    K33 += void_stiffness * full[None]
    if not incompatible:
        K = K33[:, :24, :24]
        M = np.einsum("cab,ij->caibj", M8, np.eye(3)).reshape(n_cells, 24, 24)
        return K, M
    kcc, kci, kii = K33[:, :24, :24], K33[:, :24, 24:], K33[:, 24:, 24:]
    K = kcc - kci @ np.linalg.solve(kii, np.transpose(kci, (0, 2, 1)))
    K = 0.5 * (K + np.transpose(K, (0, 2, 1)))
    M = np.einsum("cab,ij->caibj", M8, np.eye(3)).reshape(n_cells, 24, 24)
    return K, M


def cell_node_ids(cells: np.ndarray, shape) -> np.ndarray:
    """Grid-node index of the 8 corners of each cell.

    Parameters
    ----------
    cells : ndarray of int, shape (n, 3)
        Cell indices (i, j, k).
    shape : tuple of 3 ints
        Number of cells per axis (nx, ny, nz); nodes are (nx+1, ny+1, nz+1).

    Returns
    -------
    ndarray of int64, shape (n, 8)
    """
    nx, ny, nz = (int(s) for s in shape)
    corners = cells[:, None, :] + CORNERS[None, :, :]
    return np.ravel_multi_index((corners[..., 0], corners[..., 1], corners[..., 2]), (nx + 1, ny + 1, nz + 1))


def _element_dofs(conn: np.ndarray) -> np.ndarray:
    """(n, 8) node ids -> (n, 24) DOF ids, node-major."""
    return (3 * conn[:, :, None] + np.arange(3)[None, None, :]).reshape(len(conn), 24)


def assemble(conn: np.ndarray, scale: np.ndarray, ke: np.ndarray, me: np.ndarray, n_nodes: int):
    """Global stiffness and mass (vectorised).

    Parameters
    ----------
    conn : ndarray of int, shape (n, 8)
        Compact node ids (0..n_nodes-1) of each cell's corners.
    scale : ndarray, shape (n,)
        Per-cell factor on both matrices.
    ke, me : ndarray, shape (24, 24) or (n, 24, 24)
        Element stiffness and mass: one for all cells, or one per cell.
    n_nodes : int

    Returns
    -------
    K, M : scipy.sparse.csc_matrix, shape (3 n_nodes, 3 n_nodes)
    """
    dofs = _element_dofs(conn)
    rows = np.repeat(dofs, 24, axis=1).ravel()
    cols = np.tile(dofs, (1, 24)).ravel()
    n = 3 * n_nodes
    ke = np.broadcast_to(ke, (len(conn), 24, 24)).reshape(len(conn), 576)
    me = np.broadcast_to(me, (len(conn), 24, 24)).reshape(len(conn), 576)
    kv = (scale[:, None] * ke).ravel()
    mv = (scale[:, None] * me).ravel()
    K = sp.coo_matrix((kv, (rows, cols)), shape=(n, n)).tocsc()
    M = sp.coo_matrix((mv, (rows, cols)), shape=(n, n)).tocsc()
    K.sum_duplicates()
    M.sum_duplicates()
    return K, M


def assemble_reference(conn, scale, ke, me, n_nodes):
    """Element-by-element assembly into dense arrays (slow, obviously correct; for tests).

    Same parameters and meaning as ``assemble``; returns dense ndarrays.
    """
    n = 3 * n_nodes
    K = np.zeros((n, n))
    M = np.zeros((n, n))
    ke = np.broadcast_to(ke, (len(conn), 24, 24))
    me = np.broadcast_to(me, (len(conn), 24, 24))
    for e in range(len(conn)):
        idx = []
        for node in conn[e]:
            idx += [3 * node, 3 * node + 1, 3 * node + 2]
        for a in range(24):
            for b in range(24):
                K[idx[a], idx[b]] += scale[e] * ke[e, a, b]
                M[idx[a], idx[b]] += scale[e] * me[e, a, b]
    return K, M


def _single_blas_thread():
    """Context that keeps BLAS to one thread where threadpoolctl is installed.

    ARPACK's many small BLAS calls gain nothing from threads; on a shared 2-core
    machine the thread hand-offs made the eigensolve 2-3 x slower (measured).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def nested_dissection(coords: np.ndarray, leaf: int = 64) -> np.ndarray:
    """Geometric nested-dissection ordering of grid nodes.

    Recursively cuts the node set by the grid plane at the median of its longest
    axis; the nodes on that plane separate the two halves (box elements only couple
    adjacent planes), so ordering ``[left, right, plane]`` keeps the factor's fill
    near the optimum for grids. Hand-written because scipy ships no nested
    dissection (SuperLU's COLAMD gives about twice the fill and 3-5 x the time here),
    and on a grid the geometric cut is the textbook one (George 1973).

    Parameters
    ----------
    coords : ndarray of int, shape (n, 3)
        Integer grid coordinates of the nodes.

    Returns
    -------
    ndarray of int, shape (n,)
        Node permutation.
    """
    out = []
    stack = [(np.arange(len(coords)), 0)]
    # Iterative post-order: a part is emitted after its two halves, then its separator.
    while stack:
        idx, state = stack.pop()
        if state == 1:
            out.append(idx)
            continue
        if len(idx) <= leaf:
            out.append(idx)
            continue
        c = coords[idx]
        lo, hi = c.min(axis=0), c.max(axis=0)
        ax = int(np.argmax(hi - lo))
        cut = np.floor(np.median(c[:, ax]))
        left, sep, right = idx[c[:, ax] < cut], idx[c[:, ax] == cut], idx[c[:, ax] > cut]
        if len(left) == 0 or len(right) == 0:
            out.append(idx)
            continue
        stack.append((sep, 1))
        stack.append((right, 0))
        stack.append((left, 0))
    return np.concatenate(out)


def lowest_modes(K, M, n_modes: int, n_rigid: int, f_floor: float = 1.0, f_guess: float = 100.0,
                 node_coords: np.ndarray | None = None):
    """Lowest elastic modes of a free body: ``K phi = w^2 M phi``, rigid modes dropped.

    Shift-invert Lanczos (``scipy.sparse.linalg.eigsh``) about a negative shift,
    so ``K - sigma M`` is positive definite although the body is free.

    Parameters
    ----------
    K, M : sparse matrices, shape (n, n)
    n_modes : int
        Elastic modes wanted (fewer come back when the model has fewer DOFs).
    n_rigid : int
        Rigid-body modes to expect (6 per disconnected part); asked for on top of
        ``n_modes``.
    f_floor : float
        Modes below this frequency (Hz) count as rigid and are dropped.
    f_guess : float
        Rough guess of the lowest elastic frequency, Hz (within a factor of ~10 is
        plenty). The shift is placed at ``-(2 pi f_guess)^2``; a shift far below it
        lets the rigid modes swamp the shift-inverted spectrum (slow Lanczos).
    node_coords : ndarray of int, shape (n / 3, 3), optional
        Grid coordinates of the nodes; when given, the factorisation uses a nested
        dissection ordering (much faster on 3-D grids).

    Returns
    -------
    freqs : ndarray, shape (m,), Hz, ascending
    vecs : ndarray, shape (n, m), mass-normalised (``vecs.T @ M @ vecs = I``)
    """
    n = K.shape[0]
    k = min(n_modes + n_rigid, n - 2)
    sigma = -((2 * np.pi * f_guess) ** 2)
    A = (K - sigma * M).tocsc()
    if node_coords is not None:
        nodes = nested_dissection(np.asarray(node_coords))
        perm = (3 * nodes[:, None] + np.arange(3)[None, :]).ravel()
        inv = np.empty_like(perm)
        inv[perm] = np.arange(n)
        # A is symmetric positive definite: no pivoting needed, keep our ordering.
        lu = spla.splu(A[perm][:, perm].tocsc(), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                       options=dict(SymmetricMode=True))

        def solve(x):
            return lu.solve(np.asarray(x)[perm])[inv]
    else:
        lu = spla.splu(A)
        solve = lu.solve
    op = spla.LinearOperator((n, n), matvec=solve, dtype=float)
    # Fixed pseudo-random start vector: the same mesh always gives the same modes, and
    # unlike a constant vector it is not symmetric, so Lanczos does not miss the
    # partners of degenerate pairs in symmetric objects.
    v0 = np.random.default_rng(12345).standard_normal(n)
    # A roomy Krylov space: the rigid modes are a 6-fold (or 6 x parts) eigenvalue,
    # which a tight space can leave incomplete.
    ncv = min(n - 1, max(2 * k + 1, k + 32))
    with _single_blas_thread():
        vals, vecs = spla.eigsh(K, k=k, M=M, sigma=sigma, which="LM", OPinv=op, v0=v0, tol=1e-10, ncv=ncv)
    order = np.argsort(vals)
    vals, vecs = vals[order], vecs[:, order]
    freqs = np.sqrt(np.clip(vals, 0.0, None)) / (2 * np.pi)
    # Rigid modes are told apart by frequency, not by count: the solver may return
    # one fewer of them than expected, and counting would then drop a real mode.
    keep = freqs >= f_floor
    return freqs[keep], vecs[:, keep]
