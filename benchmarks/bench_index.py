"""Vector index at library scale: build, memory, query latency, recall and duplicate grouping.

    .venv/bin/python benchmarks/bench_index.py                      # quick: 100k, reduced grid
    .venv/bin/python benchmarks/bench_index.py --full               # 100k and 1M, full grid
    .venv/bin/python benchmarks/bench_index.py --real emb.npy       # also real embeddings
    .venv/bin/python benchmarks/bench_index.py --sizes 5000 --M 16 --efc 100 --ef 32 64 \\
        --threads 1 --catalog-rows 1000                             # a smoke run

Vectors (``--dim``, default 256), L2-normalised float32:

  * ``synthetic``: clustered like real embeddings. A few thousand cluster centres on the
    sphere share a common direction (unrelated photos: cosine ~0-0.3); members are centre +
    noise with a decaying spectrum, as embeddings have (same cluster: ~0.5-0.7); ~10 % of the
    photos sit in planted near-duplicate groups of 2-5 very close vectors (cosine > 0.9). The
    measured cosine percentiles of each kind of pair are printed, so the claim can be checked.
  * ``real`` (``--real FILE.npy``): real embeddings, repeated with small noise up to the size.

For every size and every (M, ef_construction) of the grid, through ``engine.index.VectorIndex``
(one ``add`` of all vectors, as ``Library`` rebuilds an index):

  * build time and vectors/s; index file size after ``save`` (and per vector); RSS growth
    (VmRSS from /proc/self/status, freed heap handed back first with glibc's malloc_trim) and
    peak RSS growth during the build (VmHWM, reset through /proc/self/clear_refs where the
    kernel allows it; the vectors' temporary copies in ``add`` show here);
  * per ef: recall@10 of ``--queries`` (1,000) single-vector k=10 queries against exact numpy
    search (queries are library members, so each one's own vector counts, as in ``Library``),
    through ``Library.similar``'s path (``engine.index.rescored_query``): 2k + 10 candidates
    from the index, re-ranked by exact cosine with the float vectors, widened while a left-out
    item could still rank (the index alone, ranking by its 8-bit codes, is shown too);
    their latency p50/p99 (each timed with perf_counter), the same queries straight through
    faiss (the wrapper's own cost is the difference) and batched throughput. The index
    stores 8-bit codes, so recall here is against exact search over the float vectors;
  * the recommended setting: of each (M, ef_construction)'s first ef to reach recall@10 >=
    0.98, the one with the smallest M (memory is the binding target: M 32 takes 536 bytes
    per 256-d entry against M 16's 408, past the 2 KB per photo budget; every setting here
    answers far inside the latency targets), then the fastest (p50).

With the recommended setting (reloaded from its file, timed): the full duplicate grouping,
k-NN of every vector (k = ``--group-k``, 32 as ``Library``), the exact rescoring of those
neighbours with the float vectors (``engine.grouping.rescore_neighbours``, as ``Library``
does), then ``engine.grouping.group_neighbours`` at ``--threshold`` (the copy head's near
threshold is ~0.80), with how many
planted near-duplicate pairs it recovered. Then bytes per photo: index file bytes / n, and
the catalog's, measured by inserting ``--catalog-rows`` photos (a files row and one
embedding per head, which the catalog stores as 8-bit codes and a scale) into an
``engine.catalog.Catalog``; the issue's target is index + catalog <= 2 KB per photo, with one
index per head.

``--threads`` sets faiss's OpenMP threads for add and batched queries (its default is every
core, which is what the app gets); numpy follows OMP_NUM_THREADS. Results print as
markdown tables and go to ``bench-results/index.json``. Numbers compare only on one idle
machine (the load average is printed). Nothing here is asserted in tests;
tests/engine/test_bench_index.py checks the vector generator and the recall function.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.catalog import Catalog  # noqa: E402
from engine.grouping import group_neighbours, rescore_neighbours  # noqa: E402
from engine.index import VectorIndex, rescored_query  # noqa: E402
from engine.model_bundle import load_bundle  # noqa: E402

PROFILES = {"quick": {"sizes": [100_000], "M": [16, 32], "efc": [200], "ef": [32, 64, 128, 256]},
            "full": {"sizes": [100_000, 1_000_000], "M": [16, 32], "efc": [100, 200],
                     "ef": [32, 64, 128, 256]}}
K = 10
TARGET_RECALL = 0.98
TARGET_BYTES = 2048        # the issue's index + catalog budget per photo
HEADS = ("copy", "semantic")
COMMON_WEIGHT = 0.42       # centres share a direction: unrelated cosine ~0.15 on average
SPREAD = (0.65, 1.0)       # member noise norm: same-cluster cosine 1/(1+s^2), ~0.5-0.7
JITTER = (0.1, 0.25)       # near-duplicate noise norm: pairwise cosine >= ~0.94
SPECTRUM_DECAY = 0.3       # member noise std per axis ~ (i+1)^-decay
CHUNK = 65_536


# ---- vectors --------------------------------------------------------------------------------
def normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _centres(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    common = normalise(rng.standard_normal((1, dim), dtype=np.float32))
    own = normalise(rng.standard_normal((count, dim), dtype=np.float32))
    return normalise(COMMON_WEIGHT * common + own)


def _dup_sizes(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Sizes (2-5) of the planted near-duplicate groups, together about ``fraction * n`` rows
    and leaving at least one original per group."""
    sizes = rng.integers(2, 6, size=int(fraction * n / 2) + 1)
    fits = np.cumsum(sizes) <= fraction * n
    fits &= np.cumsum(sizes - 1) + np.arange(1, len(sizes) + 1) <= n
    return sizes[fits]


def _members(rng, centres, cluster, spread) -> np.ndarray:
    """Centre + noise with a decaying per-axis spectrum and norm ``spread[cluster]``."""
    dim = centres.shape[1]
    scale = (np.arange(1, dim + 1, dtype=np.float32) ** -SPECTRUM_DECAY)
    scale /= np.sqrt((scale ** 2).sum())
    out = np.empty((len(cluster), dim), dtype=np.float32)
    for start in range(0, len(cluster), CHUNK):
        part = cluster[start:start + CHUNK]
        noise = rng.standard_normal((len(part), dim), dtype=np.float32) * scale
        out[start:start + CHUNK] = normalise(centres[part] + spread[part, None] * noise)
    return out


def clustered_vectors(n: int, dim: int = 256, *, clusters: int | None = None,
                      dup_fraction: float = 0.1, seed: int = 0,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vectors, cluster, dup_group)``: n unit rows, each row's cluster, and its planted
    near-duplicate group (-1 for none); rows are shuffled. ``clusters`` defaults to
    n / 30, between 1 and 5,000; cluster sizes vary (log-normal weights)."""
    rng = np.random.default_rng(seed)
    count = clusters or int(np.clip(n // 30, 1, 5000))
    centres = _centres(rng, count, dim)
    sizes = _dup_sizes(rng, n, dup_fraction)
    originals = n - int((sizes - 1).sum())
    weights = rng.lognormal(0.0, 1.0, count)
    cluster = rng.choice(count, size=originals, p=weights / weights.sum())
    vectors = _members(rng, centres, cluster, rng.uniform(*SPREAD, count).astype(np.float32))
    heads = rng.choice(originals, size=len(sizes), replace=False)
    source = np.repeat(heads, sizes - 1)
    jitter = np.repeat(rng.uniform(*JITTER, len(sizes)), sizes - 1).astype(np.float32)
    noise = rng.standard_normal((len(source), dim), dtype=np.float32) / np.sqrt(dim)
    copies = normalise(vectors[source] + jitter[:, None] * noise)
    dup_group = np.full(n, -1, dtype=np.int64)
    dup_group[heads] = np.arange(len(sizes))
    dup_group[originals:] = np.repeat(np.arange(len(sizes)), sizes - 1)
    order = rng.permutation(n)
    return (np.concatenate([vectors, copies])[order], np.concatenate([cluster, cluster[source]])[order],
            dup_group[order])


def real_vectors(path: str | Path, n: int, *, noise: float = 0.1, seed: int = 0,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real embeddings from a ``.npy`` (rows = photos), normalised; beyond the file's rows,
    repeats of them plus isotropic noise of norm ``noise``. Same return shape as
    ``clustered_vectors``: clusters are unknown (-1), dup_group is the source row."""
    base = normalise(np.load(path, mmap_mode="r"))
    source = np.arange(n) % len(base)
    rng = np.random.default_rng(seed)
    out = base[source]
    for start in range(len(base), n, CHUNK):
        stop = min(start + CHUNK, n)
        jitter = rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32)
        out[start:stop] = normalise(out[start:stop] + noise / np.sqrt(base.shape[1]) * jitter)
    repeated = np.bincount(source)[source] > 1
    return out, np.full(n, -1, dtype=np.int64), np.where(repeated, source, -1)


def _pairs_within(labels: np.ndarray, rng: np.random.Generator, count: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random pairs of distinct rows sharing a label >= 0 (none if no label has two)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    _, starts, sizes = np.unique(sorted_labels, return_index=True, return_counts=True)
    ok = (sizes >= 2) & (sorted_labels[starts] >= 0)
    if not ok.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pick = rng.choice(np.flatnonzero(ok), size=count, p=sizes[ok] / sizes[ok].sum())
    first = rng.integers(0, sizes[pick])
    second = (first + 1 + rng.integers(0, sizes[pick] - 1)) % sizes[pick]
    return order[starts[pick] + first], order[starts[pick] + second]


def cosine_profile(vectors, cluster, dup_group, *, pairs: int = 20_000, seed: int = 0) -> dict:
    """Cosine p5/p50/p95 of random pairs: unrelated (different clusters), same cluster (not
    near-duplicates of each other) and planted near-duplicates."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    kinds = {"unrelated": (a, b, (a != b) & ((cluster[a] != cluster[b]) | (cluster[a] < 0))
                           & ((dup_group[a] != dup_group[b]) | (dup_group[a] < 0)))}
    a, b = _pairs_within(cluster, rng, pairs)
    kinds["same_cluster"] = (a, b, (dup_group[a] != dup_group[b]) | (dup_group[a] < 0))
    a, b = _pairs_within(dup_group, rng, pairs)
    kinds["near_duplicate"] = (a, b, np.ones(len(a), bool))
    out = {}
    for kind, (a, b, keep) in kinds.items():
        cos = np.einsum("ij,ij->i", vectors[a[keep]], vectors[b[keep]])
        if len(cos):
            out[kind] = dict(zip(("p5", "p50", "p95"), np.percentile(cos, [5, 50, 95]).round(3).tolist()))
    return out


# ---- exact search and recall ----------------------------------------------------------------
def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = CHUNK,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and cosine similarities of each query's k most similar rows of ``base``
    (all unit rows), best first, by brute force over chunks of ``base``."""
    best_i = np.empty((len(queries), 0), dtype=np.int64)
    best_s = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(base), chunk):
        sims = queries @ base[start:start + chunk].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        sims = np.concatenate([best_s, np.take_along_axis(sims, part, axis=1)], axis=1)
        labels = np.concatenate([best_i, part + start], axis=1)
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(sims, top, axis=1), np.take_along_axis(labels, top, axis=1)
    return best_i, best_s


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean over rows of |found[:k] & truth[:k]| / k (labels; -1 padding never matches)."""
    found, truth = np.asarray(found)[:, :k], np.asarray(truth)[:, :k]
    hits = ((found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)).any(axis=2)
    return float(hits.sum(axis=1).mean() / truth.shape[1]) if truth.size else 1.0


def planted_recovery(groups: list[list[int]], dup_group: np.ndarray) -> dict:
    """Of the planted near-duplicate pairs, the share that ended in one found group; of the
    found groups, the share whose members are all of one planted group (ids = row indices).
    Counted per (planted, found) group pair, so large planted groups cost nothing extra."""
    found = np.full(len(dup_group), -1, dtype=np.int64)
    for g, members in enumerate(groups):
        found[members] = g
    _, sizes = np.unique(dup_group[dup_group >= 0], return_counts=True)
    both = (dup_group >= 0) & (found >= 0)
    together = np.unique(np.stack([dup_group[both], found[both]]), axis=1, return_counts=True)[1]
    planted = int((sizes * (sizes - 1) // 2).sum())
    hits = int((together * (together - 1) // 2).sum())
    pure = None
    if groups:
        rows = np.flatnonzero(found >= 0)
        rows = rows[np.argsort(found[rows], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(found[rows]) != 0])
        low = np.minimum.reduceat(dup_group[rows], starts)
        pure = float(((low == np.maximum.reduceat(dup_group[rows], starts)) & (low >= 0)).mean())
    return {"planted_pairs": planted, "pair_recall": hits / planted if planted else None,
            "pure_groups": pure}


# ---- memory ---------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb * 1024


def trim_heap() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc's malloc_trim), so an RSS
    difference is what a build keeps, not what earlier builds freed."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


def _mb(value: int | None) -> float | None:
    return None if value is None else value / 2**20


# ---- the index ------------------------------------------------------------------------------
def set_threads(index: VectorIndex, threads: int) -> None:
    """VectorIndex has no thread setting; faiss's (OpenMP's) default is every core."""
    import faiss

    faiss.omp_set_num_threads(threads)


def build_index(vectors: np.ndarray, M: int, efc: int, threads: int,
                ) -> tuple[VectorIndex, dict]:
    trim_heap()
    peak_ok = reset_peak_rss()
    before = rss_bytes()
    index = VectorIndex(vectors.shape[1], model_id="bench", head="bench", M=M, ef_construction=efc)
    set_threads(index, threads)
    started = time.perf_counter()
    index.add(np.arange(len(vectors)), vectors)
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    trim_heap()
    after = rss_bytes()
    return index, {"M": M, "ef_construction": efc, "build_s": seconds,
                   "vectors_per_s": len(vectors) / seconds,
                   "rss_growth_mb": _mb(after - before) if before and after else None,
                   "peak_growth_mb": _mb(peak - before) if peak_ok and before and peak else None}


def save_index(index: VectorIndex, path: Path, n: int) -> dict:
    started = time.perf_counter()
    index.save(path)
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    return {"save_s": seconds, "file_mb": size / 2**20, "bytes_per_vector": size / n}


def _time_single(search, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query seconds and labels of ``search(one_row, k)`` over every query, one by one."""
    for q in queries[:20]:  # warm-up
        search(q[None, :], k)
    seconds = np.empty(len(queries))
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        started = time.perf_counter()
        found, _ = search(q[None, :], k)
        seconds[i] = time.perf_counter() - started
        labels[i, :found.shape[1]] = found[0]
    return seconds, labels


def _raw_search(index: VectorIndex, ef: int):
    """faiss's own search at ``ef``, without the wrapper (benchmark-only reach-in)."""
    import faiss

    params = faiss.SearchParametersHNSW()
    params.efSearch = max(ef, K)
    return lambda rows, k: index._index.search(rows, k, params=params)[::-1]  # noqa: SLF001


def rescored_search(index: VectorIndex, vectors: np.ndarray):
    """``Library.similar``'s path (``engine.index.rescored_query``): candidates from the
    index, re-ranked by exact cosine with the float vectors (the catalog's, there), the
    candidate list widening while a left-out item could still rank in the top k."""
    lookup = lambda labels: vectors[labels]  # noqa: E731

    def search(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = [rescored_query(index, row, k, lookup) for row in rows]
        return (np.array([f[0] for f in found], np.int64), np.array([f[1] for f in found], np.float32))
    return search


def measure_ef(index: VectorIndex, ef: int, queries: np.ndarray, truth: np.ndarray,
               batch: np.ndarray, vectors: np.ndarray) -> dict:
    index.ef = ef
    seconds, labels = _time_single(rescored_search(index, vectors), queries, K)
    _, codes_only = _time_single(index.query, queries, K)
    raw, _ = _time_single(_raw_search(index, ef), queries, K)  # the wrapper's own cost
    started = time.perf_counter()
    rescored_search(index, vectors)(batch, K)
    batch_s = time.perf_counter() - started
    ms = lambda values, q: float(np.percentile(values, q) * 1000)  # noqa: E731
    return {"ef": ef, "recall": recall_at_k(labels, truth, K),
            "recall_codes_only": recall_at_k(codes_only, truth, K), "p50_ms": ms(seconds, 50),
            "p99_ms": ms(seconds, 99), "faiss_p50_ms": ms(raw, 50),
            "batch_qps": len(batch) / batch_s}


def sweep_config(vectors, M, efc, queries, truth, batch, path: Path, args) -> tuple[dict, list[dict]]:
    """Build one (M, ef_construction), save it to ``path``, and measure every ef."""
    index, build = build_index(vectors, M, efc, args.threads)
    build.update(save_index(index, path, len(vectors)))
    print(f"  built M={M} ef_construction={efc} in {build['build_s']:.1f} s", file=sys.stderr, flush=True)
    rows = [{"M": M, "ef_construction": efc, **measure_ef(index, ef, queries, truth, batch, vectors)}
            for ef in args.ef]
    reached = [r for r in rows if r["recall"] >= TARGET_RECALL]
    if reached:
        reached[0]["first_to_target"] = True
    return build, rows


def recommend(rows: list[dict]) -> dict | None:
    """Of each config's first ef to reach the target recall, the smallest M (the bytes per
    photo), then the fastest (p50), so timing noise cannot pick a larger ef; if none reaches
    it, the best recall."""
    good = [r for r in rows if r.get("first_to_target")]
    if good:
        return min(good, key=lambda r: (r["M"], round(r["p50_ms"], 3), r["ef_construction"]))
    return max(rows, key=lambda r: r["recall"]) if rows else None


def run_grid(vectors, queries, truth, batch, work: Path, args) -> tuple[list, list, dict, Path]:
    """Every (M, ef_construction); only the file of the best config so far is kept on disk."""
    builds, rows, best, best_path = [], [], None, None
    for M in args.M:
        for efc in args.efc:
            path = work / f"index-M{M}-efc{efc}.bin"
            build, config_rows = sweep_config(vectors, M, efc, queries, truth, batch, path, args)
            builds.append(build)
            rows += config_rows
            choice = recommend(([best] if best else []) + config_rows)
            keep, drop = (path, best_path) if choice is not best else (best_path, path)
            for stale in (drop,) if drop else ():
                stale.unlink(missing_ok=True)
                Path(str(stale) + ".json").unlink(missing_ok=True)
            best, best_path = choice, keep
    return builds, rows, best, best_path


# ---- grouping, catalog, wrapper -------------------------------------------------------------
def measure_grouping(path: Path, ef: int, vectors: np.ndarray, dup_group: np.ndarray,
                     args) -> dict:
    started = time.perf_counter()
    index = VectorIndex.load(path)
    load_s = time.perf_counter() - started
    set_threads(index, args.threads)
    index.ef = ef
    ids = np.arange(len(vectors), dtype=np.int64)
    started = time.perf_counter()
    nids, nsims = index.query(vectors, min(args.group_k, len(vectors)))
    knn_s = time.perf_counter() - started
    started = time.perf_counter()
    nsims = rescore_neighbours(ids, vectors, nids, nsims)
    rescore_s = time.perf_counter() - started
    started = time.perf_counter()
    groups = group_neighbours(ids, vectors, nids, nsims, args.threshold)
    group_s = time.perf_counter() - started
    return {"load_s": load_s, "knn_s": knn_s, "k": nids.shape[1], "rescore_s": rescore_s,
            "group_s": group_s, "total_s": knn_s + rescore_s + group_s,
            "threshold": args.threshold, "groups": len(groups),
            "grouped_photos": sum(map(len, groups)), **planted_recovery(groups, dup_group)}


def _catalog_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("catalog.sqlite*"))


def measure_catalog(rows: int, dim: int, seed: int = 0, heads: tuple[str, ...] = HEADS,
                    dims: dict[str, int] | None = None) -> dict:
    """Bytes per photo of a catalog holding ``rows`` photos, each with a files row and one
    embedding per head (all contents distinct; ``dims`` gives a head's length where it is not
    ``dim``), over the empty catalog's size."""
    dims = {head: (dims or {}).get(head, dim) for head in heads}
    rng = np.random.default_rng(seed)
    vectors = {head: normalise(rng.standard_normal((rows, d), dtype=np.float32)) for head, d in dims.items()}
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-catalog-") as tmp:
        folder = Path(tmp)
        catalog = Catalog(folder / "catalog.sqlite")
        scan = catalog.start_scan(["/home/someone/Pictures"])
        catalog.close()
        empty = _catalog_bytes(folder)
        catalog = Catalog(folder / "catalog.sqlite")
        started = time.perf_counter()
        with catalog.transaction():
            for i in range(rows):
                digest = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=20).hexdigest()
                catalog.upsert_file(f"/home/someone/Pictures/{2010 + i % 15}/{i // 500:04d}/IMG_{i:06d}.JPG",
                                    3_000_000 + i, 1_600_000_000_000_000_000 + i, digest, 4032, 3024,
                                    "JPEG", "2019-07-14T12:34:56", "Apple iPhone 11", scan)
                for head in heads:
                    catalog.put_embedding(digest, "lookalike-model@1.0", head, vectors[head][i])
        insert_s = time.perf_counter() - started
        catalog.close()
        size = _catalog_bytes(folder) - empty
    return {"rows": rows, "dim": dim, "heads": len(heads), "bytes_per_photo": size / rows,
            "embedding_bytes_per_photo": sum(d + 4 for d in dims.values()), "insert_rows_per_s": rows / insert_s}


def measure_default_model(rows: int, seed: int = 0) -> dict:
    """Bytes per photo with the built-in default model: the vectors it stores (identical heads
    once: ``ModelBundle.storage_head``), each head's at its own length, and one index each."""
    bundle = load_bundle()
    dims = {head: bundle.head_dim(head) for head in bundle.stored_heads}
    catalog = measure_catalog(rows, 0, seed, heads=tuple(dims), dims=dims)
    index_bytes = 0.0
    rng = np.random.default_rng(seed + 1)
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-default-") as tmp:
        for head, dim in dims.items():
            index = VectorIndex(dim)
            index.add(np.arange(rows), normalise(rng.standard_normal((rows, dim), dtype=np.float32)))
            index.save(Path(tmp) / f"{head}.idx")
            index_bytes += (Path(tmp) / f"{head}.idx").stat().st_size / rows
    return {"model": bundle.model_id, "rows": rows, "dims": dims, "stored_vectors": len(dims),
            "index_bytes_per_photo": index_bytes, "catalog_bytes_per_photo": catalog["bytes_per_photo"],
            "total_bytes_per_photo": index_bytes + catalog["bytes_per_photo"]}


# ---- one size -------------------------------------------------------------------------------
def make_vectors(dataset: str, n: int, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if dataset == "real":
        return real_vectors(args.real, n, noise=args.real_noise, seed=args.seed)
    return clustered_vectors(n, args.dim, clusters=args.clusters, seed=args.seed)


def bench_size(dataset: str, n: int, work: Path, args) -> dict:
    print(f"{dataset} {n:,}: generating ...", file=sys.stderr, flush=True)
    vectors, cluster, dup_group = make_vectors(dataset, n, args)
    rng = np.random.default_rng(args.seed + 1)
    queries = vectors[rng.choice(n, size=min(args.queries, n), replace=False)]
    batch = vectors[rng.choice(n, size=min(args.batch, n), replace=False)]
    started = time.perf_counter()
    truth, _ = exact_knn(vectors, queries, K)
    exact_s = time.perf_counter() - started
    builds, rows, best, best_path = run_grid(vectors, queries, truth, batch, work, args)
    grouping = measure_grouping(best_path, best["ef"], vectors, dup_group, args)
    index_bytes = next(b for b in builds if (b["M"], b["ef_construction"])
                       == (best["M"], best["ef_construction"]))["bytes_per_vector"]
    return {"dataset": dataset, "n": n, "dim": vectors.shape[1],
            "cosines": cosine_profile(vectors, cluster, dup_group, seed=args.seed),
            "exact_search_s": exact_s, "queries": len(queries), "batch": len(batch),
            "builds": builds, "rows": rows, "recommended": best, "grouping": grouping,
            "index_bytes_per_photo": index_bytes}


# ---- output ---------------------------------------------------------------------------------
def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_builds(result: dict) -> None:
    print(f"\n### {result['dataset']}: {result['n']:,} × {result['dim']}\n")
    for kind, p in result["cosines"].items():
        print(f"- {kind.replace('_', ' ')} pairs, cosine p5/p50/p95: {p['p5']} / {p['p50']} / {p['p95']}")
    print(f"- exact search for {result['queries']:,} queries: {result['exact_search_s']:.2f} s\n")
    print("| M | ef_construction | build s | vectors/s | file MB | bytes/vector | RSS growth MB "
          "| peak growth MB | save s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in result["builds"]:
        print(f"| {b['M']} | {b['ef_construction']} | {b['build_s']:.2f} | {b['vectors_per_s']:,.0f} "
              f"| {b['file_mb']:.1f} | {b['bytes_per_vector']:.0f} | {_fmt(b['rss_growth_mb'], '.1f')} "
              f"| {_fmt(b['peak_growth_mb'], '.1f')} | {b['save_s']:.2f} |")


def print_queries(result: dict) -> None:
    print(f"\n| M | ef_construction | ef | recall@{K} (rescored) | recall@{K} (codes only) | p50 ms "
          f"| p99 ms | faiss p50 ms | batch queries/s | |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in result["rows"]:
        mark = f"first ≥ {TARGET_RECALL}" if r.get("first_to_target") else ""
        print(f"| {r['M']} | {r['ef_construction']} | {r['ef']} | {r['recall']:.4f} "
              f"| {r['recall_codes_only']:.4f} | {r['p50_ms']:.3f} "
              f"| {r['p99_ms']:.3f} | {r['faiss_p50_ms']:.3f} | {r['batch_qps']:,.0f} | {mark} |")
    best = result["recommended"]
    verdict = "reaches" if best["recall"] >= TARGET_RECALL else "NO setting reaches; best recall"
    print(f"\n**Recommended ({result['n']:,}): M={best['M']}, ef_construction="
          f"{best['ef_construction']}, ef={best['ef']}** — {verdict} recall@{K} ≥ {TARGET_RECALL} "
          f"({best['recall']:.4f}), p50 {best['p50_ms']:.3f} ms, p99 {best['p99_ms']:.3f} ms.")


def print_grouping(result: dict) -> None:
    g, best = result["grouping"], result["recommended"]
    print(f"\n| grouping {result['n']:,} (M={best['M']}, ef={best['ef']}) | load s | k-NN s (k={g['k']}) "
          f"| exact rescoring s | group_neighbours s | total s | groups | photos grouped "
          f"| planted pairs found | pure groups |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| threshold {g['threshold']} | {g['load_s']:.2f} | {g['knn_s']:.2f} "
          f"| {g.get('rescore_s', 0.0):.2f} | {g['group_s']:.2f} "
          f"| {g['total_s']:.2f} | {g['groups']:,} | {g['grouped_photos']:,} "
          f"| {_fmt(g['pair_recall'] and 100 * g['pair_recall'], '.1f')} % "
          f"| {_fmt(g['pure_groups'] and 100 * g['pure_groups'], '.1f')} % |")


def print_bytes(results: list[dict], catalog: dict, default: dict | None = None) -> None:
    print(f"\n### Bytes per photo ({catalog['heads']} heads, one index each; catalog measured "
          f"with {catalog['rows']:,} photos, {catalog['insert_rows_per_s']:,.0f} photos/s inserted)\n")
    print("| dataset | n | index per head | catalog | total | target | within |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        index = r["index_bytes_per_photo"]
        total = catalog["heads"] * index + catalog["bytes_per_photo"]
        r["total_bytes_per_photo"] = total
        print(f"| {r['dataset']} | {r['n']:,} | {index:,.0f} | {catalog['bytes_per_photo']:,.0f} "
              f"| {total:,.0f} | {TARGET_BYTES:,} | {'yes' if total <= TARGET_BYTES else 'no'} |")
    print(f"\nThe embeddings alone take {catalog['embedding_bytes_per_photo']:,} bytes per "
          f"photo in the catalog (8-bit codes and a scale per head), and each index stores its "
          f"head's codes again.")
    if default:
        dims = " + ".join(f"{head} {dim}" for head, dim in default["dims"].items())
        print(f"\nThe default model {default['model']} (stored dims: {dims}; identical heads once): "
              f"index {default['index_bytes_per_photo']:,.0f} + catalog "
              f"{default['catalog_bytes_per_photo']:,.0f} = {default['total_bytes_per_photo']:,.0f} "
              f"bytes per photo ({default['rows']:,} photos measured).")


# ---- main -----------------------------------------------------------------------------------
def machine_info(args) -> dict:
    return {"machine": platform.processor() or platform.machine(), "system": platform.platform(),
            "cpus": os.cpu_count(), "faiss_threads": args.threads,
            "omp_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--full", action="store_true", help="same as --profile full")
    parser.add_argument("--sizes", type=int, nargs="+", help="vector counts (profile default)")
    parser.add_argument("--M", type=int, nargs="+", help="graph degrees (profile default)")
    parser.add_argument("--efc", type=int, nargs="+", help="ef_construction values (profile default)")
    parser.add_argument("--ef", type=int, nargs="+", help="query ef values (profile default)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, help="synthetic clusters (default n/30, ≤ 5,000)")
    parser.add_argument("--real", help="a .npy of real embeddings (rows), benchmarked as well")
    parser.add_argument("--real-noise", type=float, default=0.1,
                        help="noise norm on the repeats of real rows (cosine ~0.995 to the source)")
    parser.add_argument("--queries", type=int, default=1000, help="single queries timed, and recall")
    parser.add_argument("--batch", type=int, default=10_000, help="rows of the batched query")
    parser.add_argument("--group-k", type=int, default=32, help="neighbours per photo when grouping")
    parser.add_argument("--threshold", type=float, default=0.80, help="near-duplicate cosine")
    parser.add_argument("--catalog-rows", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="faiss (OpenMP) threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for index files (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "bench-results/index.json"))
    args = parser.parse_args(argv)
    args.profile = "full" if args.full else args.profile
    for key in ("sizes", "M", "efc", "ef"):
        if getattr(args, key) is None:
            setattr(args, key, PROFILES[args.profile][key])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="lookalike-bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    datasets = ["synthetic"] + (["real"] if args.real else [])
    try:
        results = [bench_size(d, n, work, args) for d in datasets for n in args.sizes]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    for result in results:
        print_builds(result)
        print_queries(result)
        print_grouping(result)
    catalog = measure_catalog(args.catalog_rows, results[0]["dim"], args.seed)
    default = measure_default_model(args.catalog_rows, seed=args.seed)
    print_bytes(results, catalog, default)
    info = machine_info(args)
    print(f"\nMachine: {info['machine']}, {info['cpus']} CPUs, faiss threads {args.threads}, "
          f"load average {info['load_average']} (other work on the cores skews every number)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "profile": args.profile, "args": vars(args),
                               "results": results, "catalog": catalog,
                               "default_model_storage": default}, indent=1))
    print(f"Results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
