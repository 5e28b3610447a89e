"""Group near-duplicate photos from their k nearest neighbours.

Pure functions over numpy arrays: no I/O, no index, no catalog.

Candidate edges (pairs at or above ``threshold``) are joined in descending similarity with a
union-find, Kruskal style. Single-link union-find alone lets chains glue together (a~b, b~c,
c~d although a and d look nothing alike), so every merge is guarded by a complete-link check:
two clusters merge only if *every* cross pair is at least ``link_floor`` similar, and the
merged cluster is no larger than ``max_group_size``.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

PADDING_LABEL = -1
DEFAULT_FLOOR_MARGIN = 0.05


class _UnionFind:
    """Union-find over row indices ``0..n-1`` that also keeps each root's member rows."""

    def __init__(self, n: int):
        self._parent = list(range(n))
        self._members: dict[int, list[int]] = {i: [i] for i in range(n)}

    def find(self, x: int) -> int:
        root = x
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[x] != root:  # path compression
            self._parent[x], x = root, self._parent[x]
        return root

    def members(self, root: int) -> list[int]:
        return self._members[root]

    def union(self, a: int, b: int) -> int:
        """Merge the clusters whose roots are ``a`` and ``b``; return the new root."""
        if len(self._members[a]) < len(self._members[b]):
            a, b = b, a
        self._parent[b] = a
        self._members[a].extend(self._members.pop(b))
        return a

    def clusters(self) -> list[list[int]]:
        return list(self._members.values())


def pairwise_min(vectors: np.ndarray) -> float:
    """Smallest off-diagonal cosine similarity among L2-normalised rows (1.0 for < 2 rows)."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 2:
        return 1.0
    sims = v @ v.T
    np.fill_diagonal(sims, np.inf)
    return float(sims.min())


def rescore_neighbours(ids: np.ndarray, vectors: np.ndarray, neighbour_ids: np.ndarray,
                       neighbour_sims: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Exact cosines of each row's neighbours, from ``vectors`` (L2-normalised rows aligned
    with ``ids``), for k-NN lists whose similarities are approximate (the index scores 8-bit
    codes, within about ±0.004). Neighbours not in ``ids`` (padding, items gone since) keep the
    score given. Works ``chunk`` rows at a time: the gathered (chunk, k, d) block stays small."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.array(neighbour_sims, dtype=np.float32, copy=True)
    if ids.shape[0] == 0 or out.size == 0:
        return out
    rows, known = _rows_of(ids, np.asarray(neighbour_ids, dtype=np.int64))
    for start in range(0, ids.shape[0], chunk):
        part = slice(start, start + chunk)
        exact = np.einsum("nd,nkd->nk", vectors[part], vectors[rows[part]])
        out[part] = np.where(known[part], exact, out[part])
    return out


def _rows_of(ids: np.ndarray, neighbour_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each neighbour label, its row in ``ids`` and whether it is there at all (padding
    and labels not in ``ids`` are not; their row is arbitrary). ``ids`` must not be empty."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, neighbour_ids), 0, ids.shape[0] - 1)
    known = (sorted_ids[pos] == neighbour_ids) & (neighbour_ids != PADDING_LABEL)
    return order[pos], known


def _candidate_edges(ids: np.ndarray, neighbour_ids: np.ndarray, neighbour_sims: np.ndarray,
                     threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique row pairs ``(i, j)`` with similarity >= threshold, in merge order.

    Merge order is descending similarity, ties broken by the pair's labels, so it does not
    depend on the order of the input rows. A pair seen from both ends keeps its higher score.
    """
    n = ids.shape[0]
    cols, known = _rows_of(ids, neighbour_ids)
    rows = np.broadcast_to(np.arange(n)[:, None], neighbour_ids.shape)
    keep = known & (neighbour_sims >= threshold) & (rows != cols)
    i, j, sim = rows[keep], cols[keep], neighbour_sims[keep].astype(np.float64)
    a, b = np.minimum(ids[i], ids[j]), np.maximum(ids[i], ids[j])
    lo, hi = np.where(ids[i] <= ids[j], i, j), np.where(ids[i] <= ids[j], j, i)
    by_pair = np.lexsort((-sim, b, a))  # per pair, best score first
    first = np.ones(by_pair.shape[0], dtype=bool)
    first[1:] = (a[by_pair][1:] != a[by_pair][:-1]) | (b[by_pair][1:] != b[by_pair][:-1])
    uniq = by_pair[first]
    merge = uniq[np.lexsort((b[uniq], a[uniq], -sim[uniq]))]
    return lo[merge], hi[merge], sim[merge]


def _validate(ids: np.ndarray, vectors: np.ndarray, neighbour_ids: np.ndarray,
              neighbour_sims: np.ndarray, max_group_size: int) -> None:
    n = ids.shape[0]
    if ids.ndim != 1 or vectors.ndim != 2 or vectors.shape[0] != n:
        raise ValueError(f"ids {ids.shape} and vectors {vectors.shape} do not line up")
    if neighbour_ids.shape != neighbour_sims.shape or neighbour_ids.ndim != 2 \
            or neighbour_ids.shape[0] != n:
        raise ValueError(f"neighbour_ids {neighbour_ids.shape} and neighbour_sims "
                         f"{neighbour_sims.shape} must both be ({n}, k)")
    if np.unique(ids).shape[0] != n:
        raise ValueError("ids must be unique")
    if max_group_size < 2:
        raise ValueError(f"max_group_size must be at least 2, got {max_group_size}")


def group_neighbours(ids: np.ndarray, vectors: np.ndarray, neighbour_ids: np.ndarray,
                     neighbour_sims: np.ndarray, threshold: float, *,
                     link_floor: float | None = None,
                     max_group_size: int = 200) -> list[list[int]]:
    """Groups (>= 2 labels each) of items that are all alike.

    ``ids`` (n,) labels; ``vectors`` (n, d) L2-normalised rows aligned with ``ids``;
    ``neighbour_ids`` / ``neighbour_sims`` (n, k) each item's k-NN labels and cosine
    similarities. Neighbours that are the item itself, labels not in ``ids`` and ``-1`` padding
    are ignored. ``link_floor`` defaults to ``threshold - 0.05``. Each group is sorted
    ascending; groups are sorted by their first label. The result does not depend on the order
    of the input rows.
    """
    ids = np.asarray(ids, dtype=np.int64)
    # float32 as given: a float64 copy would double the memory (2 GB at a million 256-d rows)
    # for the few cross-group minima the guard computes.
    vectors = np.asarray(vectors, dtype=np.float32)
    neighbour_ids = np.asarray(neighbour_ids, dtype=np.int64)
    neighbour_sims = np.asarray(neighbour_sims, dtype=np.float64)
    _validate(ids, vectors, neighbour_ids, neighbour_sims, max_group_size)
    floor = threshold - DEFAULT_FLOOR_MARGIN if link_floor is None else link_floor

    uf = _UnionFind(ids.shape[0])
    refused: set[tuple[int, int]] = set()  # root pairs that failed; failing is permanent
    rows_a, rows_b, _ = _candidate_edges(ids, neighbour_ids, neighbour_sims, threshold)
    for a, b in zip(rows_a.tolist(), rows_b.tolist()):
        ra, rb = uf.find(a), uf.find(b)
        pair = (min(ra, rb), max(ra, rb))
        if ra == rb or pair in refused:
            continue
        ma, mb = uf.members(ra), uf.members(rb)
        if len(ma) + len(mb) > max_group_size or float((vectors[ma] @ vectors[mb].T).min()) < floor:
            refused.add(pair)  # clusters only grow, so the cross minimum only falls
            continue
        uf.union(ra, rb)

    groups = sorted(sorted(int(ids[r]) for r in rows) for rows in uf.clusters() if len(rows) > 1)
    log.debug("grouped %d items into %d groups (%d candidate edges, %d refused merges)",
              ids.shape[0], len(groups), rows_a.shape[0], len(refused))
    return groups
