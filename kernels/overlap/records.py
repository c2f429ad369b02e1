"""The records the overlap kernels pass around (``typing.NamedTuple``: Numba reads their
fields by name at no cost, and every field has one fixed type)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PreparedMap(NamedTuple):
    """A sky map prepared once for any number of overlap calls.

    Holds the sorted map, its quadtree with min/max bounds and node moments (multi-order
    maps) or the min/max pyramid (flat maps). Build it with :func:`prepare_map` or
    :func:`prepare_map_flat` and pass it to :func:`psf_overlap_prepared` and
    :func:`psf_pair_overlap_prepared`; the kernels then pay only the traversal. Both
    kinds of map share these fields, so one traversal serves both.

    Attributes
    ----------
    flat : int
        0: multi-order map (explicit tree); 1: flat NESTED map (implicit tree).
    top_order : int
        The flat map's order, or the multi-order map's deepest order.
    density, density_weighted : (rows + 1,) or (npix,) float64
        ``rho`` [sr^-1] and ``rho * pixel_weight`` per map row (a multi-order map has one
        extra row of zeros for sky the map does not cover) or per flat pixel.
    range_lo, range_hi : (rows,) int64
        NESTED index ranges of the rows at ``top_order`` (multi-order maps).
    child : (nodes,) int64
        First of a tree node's 4 consecutive children, -1 for a leaf (multi-order).
    leaf_row : (nodes,) int64
        The map row of a leaf node (multi-order).
    bounds : (nodes, 4) float64
        Per tree node (multi-order) or pyramid node (flat): rho_max, rho_min, rw_max,
        rw_min below it.
    pyramid_offsets : (pyramid_order + 2,) int64
        First pyramid node of each order (flat maps).
    pyramid_order : int
        Deepest order of the pyramid (flat maps; -1 for multi-order).
    moments : (internal nodes, 30) float64
        Mass, first and second moments of rho, rho*w and area per internal tree node
        (see :func:`.tree.leaf_moments`; row :func:`.tree.moment_row` of the node's
        first child; multi-order).
    centres : (nodes, 3) float64
        Unit vectors of the tree nodes' centres (multi-order).

    Examples
    --------
    >>> import numpy as np
    >>> from kernels.overlap import prepare_map
    >>> pm = prepare_map(4 + np.arange(12), np.full(12, 1 / (4 * np.pi)))
    >>> pm.flat, int(pm.top_order), pm.child.size
    (0, 0, 12)
    """

    flat: int
    top_order: int
    density: np.ndarray
    density_weighted: np.ndarray
    range_lo: np.ndarray
    range_hi: np.ndarray
    child: np.ndarray
    leaf_row: np.ndarray
    bounds: np.ndarray
    pyramid_offsets: np.ndarray
    pyramid_order: int
    moments: np.ndarray
    centres: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays [bytes]."""
        return int(sum(getattr(a, "nbytes", 0) for a in self))

    @property
    def mp(self) -> PreparedMap:
        """The record itself (the kernels' view, as the old ``PreparedMap.mp`` was)."""
        return self

    def __repr__(self) -> str:
        kind = "flat" if self.flat else "multi-order"
        return f"PreparedMap({kind}, order {int(self.top_order)}, {self.nbytes / 2**20:.1f} MiB)"


class Neutrinos(NamedTuple):
    """Neutrino directions and errors, one entry per neutrino (float64, C order).

    Attributes
    ----------
    ra, dec : (n,) float64
        Direction [rad].
    sigma : (n,) float64
        1-sigma angular error [rad].
    """

    ra: np.ndarray
    dec: np.ndarray
    sigma: np.ndarray


class SignalRows(NamedTuple):
    """Each neutrino's sky weight, constant in sin(dec) bands (the LLAMA statistic's
    signal energy density a(eps_i, theta = 90 deg + dec), historically "A_eff").

    Attributes
    ----------
    rows : (n, n_dec) float64
        Non-negative weight per neutrino and band.
    sindec_edges : (n_dec + 1,) float64
        Ascending sin(dec) band edges; positions outside use the edge bands.
    """

    rows: np.ndarray
    sindec_edges: np.ndarray


class Accuracy(NamedTuple):
    """PSF and accuracy of a traversal.

    Attributes
    ----------
    psf_kind : int
        ``PSF_GAUSS`` (0) or ``PSF_VMF`` (1).
    rtol : float
        Relative tolerance of the pruning.
    res : float
        Midpoint-rule resolution in units of sigma.
    """

    psf_kind: int
    rtol: float
    res: float


class Heap(NamedTuple):
    """Scratch arrays of a best-first heap of nodes.

    The heap orders ``keys`` and ``slots`` (position ``k`` of the heap: its node's key
    and the slot holding the rest of it); a node's ints (order, ipix, tid) and floats
    (bound_o, bound_w, value_o, value_w) stay in its slot, so a sift moves two words a
    level instead of eight. ``slots`` is always a permutation of the slots: positions
    below the heap's size hold the nodes' slots, the others the free ones.
    """

    keys: np.ndarray
    slots: np.ndarray
    ints: np.ndarray
    floats: np.ndarray

    @staticmethod
    def empty(size: int) -> Heap:
        """A heap of room for ``size`` nodes (every slot free)."""
        return Heap(np.empty(size), np.arange(size, dtype=np.int64), np.empty((size, 3), np.int64), np.empty((size, 4)))  # fmt: skip
