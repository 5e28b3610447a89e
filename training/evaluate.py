"""Retrieval metrics and the dataset evaluation behind ``lookalike eval`` and the benchmarks.

Two questions, one head each:

- **class retrieval** (``semantic`` head), on the class-disjoint split: do the nearest
  neighbours share the query's class? Recall@K (Song et al. 2016, leave-one-out), MAP@R
  (Musgrave et al., "A Metric Learning Reality Check", 2020) and NMI of k-means.
- **near-duplicate retrieval** (``copy`` head): a transformed copy (``training.families``)
  queries a database of originals plus distractors. Recall@1, mAP, micro-AP over pooled
  (query, database item) pairs (DISC21 / SSCD "uAP"), and the pair threshold at 95 % precision.
  Database photos that the dataset itself lists as copies of a query's source
  (``duplicates_found.csv``: near-copies inside Caltech-101, e.g. the same llama photo saved
  twice) are neither right nor wrong answers for that query: they are left out of its
  ranking, as Radenović et al. ("Revisiting Oxford and Paris", 2018) leave out "junk" images.

The metric functions are pure numpy on L2-normalised rows (cosine = dot product) and compute
similarities ``CHUNK`` query rows at a time, so memory stays bounded. Ties: neighbour lists
break them arbitrarily; near-duplicate ranks and micro-AP count them pessimistically (a
negative that ties with a positive ranks before it).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from engine.decode import read_photo
from engine.errors import Cancelled, DecodeError, LookalikeError
from engine.parallel import ordered_map
from engine.progress import ProgressCallback, null_progress, wants_stop
from training.calibrate import sample_images, threshold_at_precision
from training.families import FAMILIES, make_copy

log = logging.getLogger(__name__)

CHUNK = 1024
KS = (1, 2, 4, 8)
NEAR_PRECISION = 0.95
CLASS_HEAD, COPY_HEAD = "semantic", "copy"
BACKGROUND = "BACKGROUND_Google"
BATCH = 64
KNOWN_COPIES = "duplicates_found.csv"


# ---- class retrieval ------------------------------------------------------------------------

def _neighbours(emb: np.ndarray, k: int, queries: np.ndarray | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per chunk of rows: (rows, indices of their min(k, n-1) most similar *other* rows, best first).
    ``queries``: search with these vectors instead of the rows' own (row i still skips item i)."""
    n = len(emb)
    k = min(k, n - 1)
    queries = emb if queries is None else queries
    for start in range(0, n, CHUNK):
        rows = np.arange(start, min(start + CHUNK, n))
        sims = queries[rows] @ emb.T
        sims[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
        yield rows, np.take_along_axis(top, order, 1)


def _check(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    emb, labels = np.asarray(embeddings), np.asarray(labels)
    if emb.ndim != 2 or len(emb) != len(labels) or len(emb) < 2:
        raise ValueError(f"need (n, d) embeddings with n ≥ 2 and n labels, got {emb.shape}, {labels.shape}")
    return emb, labels


def expand_leave_one_out(embeddings, k: int) -> np.ndarray:
    """Each row as find-similar searches with it: ``engine.index.expanded_queries`` of the row and
    its ``k`` nearest *other* rows, weighted by their cosines to it (leave-one-out, as the
    metrics here are)."""
    from engine.index import expanded_queries  # here: engine.index needs faiss, the metrics do not

    emb = np.asarray(embeddings)
    if k <= 0:
        return emb
    tops = np.concatenate([top for _, top in _neighbours(emb, k)])
    return expanded_queries(emb, emb[tops], np.einsum("nd,nkd->nk", emb, emb[tops]))


def recall_at_k(embeddings, labels, ks: Sequence[int] = KS, queries=None) -> dict[int, float]:
    """Fraction of queries with a same-label item among their k nearest others (all queries count).
    ``queries``: row i searches with ``queries[i]`` instead of its own vector."""
    emb, labels = _check(embeddings, labels)
    kmax = max(ks)
    hits = dict.fromkeys(ks, 0)
    for rows, top in _neighbours(emb, kmax, queries):
        match = labels[top] == labels[rows][:, None]
        first = np.where(match.any(1), match.argmax(1), kmax)  # position of the first hit
        for k in ks:
            hits[k] += int((first < k).sum())
    return {k: hits[k] / len(emb) for k in ks}


def map_at_r(embeddings, labels, queries=None) -> float:
    """MAP@R: per query, R = other items with its label; mean of Σ P@i·[i-th correct] / R over i ≤ R.
    ``queries``: row i searches with ``queries[i]`` instead of its own vector."""
    emb, labels = _check(embeddings, labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    r_all = counts[inverse] - 1
    if r_all.max() == 0:
        raise ValueError("MAP@R needs at least one label with two items")
    total, counted = 0.0, 0
    for rows, top in _neighbours(emb, int(r_all.max()), queries):
        r = r_all[rows]
        position = np.arange(1, top.shape[1] + 1)
        correct = (labels[top] == labels[rows][:, None]) & (position <= r[:, None])
        precision = np.cumsum(correct, 1) / position
        keep = r > 0
        total += float(((precision * correct).sum(1)[keep] / r[keep]).sum())
        counted += int(keep.sum())
    return total / counted


def nmi(embeddings, labels, seed: int = 0) -> float:
    """NMI between the labels and k-means clusters (k = number of labels)."""
    from sklearn.cluster import KMeans  # scikit-learn is needed for this metric only
    from sklearn.metrics import normalized_mutual_info_score

    emb, labels = _check(embeddings, labels)
    clusters = KMeans(n_clusters=len(np.unique(labels)), n_init=3, random_state=seed).fit_predict(emb)
    return float(normalized_mutual_info_score(labels, clusters))


def class_retrieval_metrics(embeddings, labels, seed: int = 0, expand: int = 0) -> dict:
    """Recall@K and MAP@R (searching as find-similar does when ``expand`` > 0: with each photo's
    vector averaged with its ``expand`` nearest others'), and NMI of the embeddings themselves."""
    queries = expand_leave_one_out(embeddings, expand) if expand else None
    recall = recall_at_k(embeddings, labels, KS, queries)
    return {**{f"recall@{k}": v for k, v in recall.items()}, "map@r": map_at_r(embeddings, labels, queries),
            "nmi": nmi(embeddings, labels, seed), "items": len(labels),
            "classes": len(np.unique(np.asarray(labels))), "expand": expand}


# ---- near-duplicate retrieval ---------------------------------------------------------------

def near_duplicate_metrics(query_emb, query_source, query_family, db_emb, db_ids,
                           precision: float = NEAR_PRECISION, ignore=None) -> dict:
    """Copy retrieval metrics, overall and per family; query i is a copy of db item query_source[i].

    ``ignore``: (query row, database row) pairs that count neither as a match nor as a miss —
    known copies of the query's source other than the source itself (``ignored_pairs``).

    Exact, without materialising the pooled pairs: micro-AP needs, for each positive pair,
    only the number of negatives scoring ≥ it, counted by binary search in each chunk's
    sorted negatives; the threshold needs only the top ⌊n_pos/precision⌋+1 negatives
    (a cut below that many pairs has precision < target), which are kept per chunk.
    """
    query, db = np.asarray(query_emb), np.asarray(db_emb)
    families = np.asarray(query_family).astype(str)
    src = _source_index(query_source, db_ids)
    if len(src) == 0:
        raise ValueError("near-duplicate metrics need at least one query")
    names = sorted(set(families.tolist()))
    pos = np.einsum("nd,nd->n", query, db[src])
    junk = _ignore_pairs(ignore, len(query), len(db), src)
    rank, neg_ge, top_neg = _scan_pairs(query, db, src, pos, families, names,
                                        limit=int(len(pos) / precision) + 1, junk=junk)
    overall = _group_metrics(np.ones(len(pos), bool), pos, rank, sum(neg_ge.values()),
                             np.concatenate(sum(top_neg.values(), [])), precision)
    per_family = {f: _group_metrics(families == f, pos, rank, neg_ge[f], np.concatenate(top_neg[f]),
                                    precision) for f in names}
    return {"overall": overall, "families": per_family, "queries": len(pos), "database": len(db),
            "ignored_pairs": len(junk)}


def _ignore_pairs(ignore, n_query: int, n_db: int, src: np.ndarray) -> np.ndarray:
    """``ignore`` as a checked (k, 2) int array; a pair naming the query's own source is an error."""
    junk = np.zeros((0, 2), np.int64) if ignore is None else np.asarray(ignore, np.int64).reshape(-1, 2)
    if len(junk) and (junk.min() < 0 or junk[:, 0].max() >= n_query or junk[:, 1].max() >= n_db):
        raise ValueError(f"ignored pairs must name query rows < {n_query} and database rows < {n_db}")
    if np.any(src[junk[:, 0]] == junk[:, 1]):
        raise ValueError("an ignored pair names a query's own source")
    return junk


def _scan_pairs(query, db, src, pos, families, names, limit, junk):
    """One pass over the similarities, CHUNK queries at a time. Returns each query's rank
    (1 + negatives of its own scoring ≥ its positive), per family f the number of f's
    negatives scoring ≥ each positive, and per family its chunks' top ``limit`` negatives.
    ``junk`` pairs are neither positives nor negatives."""
    rank = np.zeros(len(pos), np.int64)
    neg_ge = {f: np.zeros(len(pos), np.int64) for f in names}
    top_neg: dict[str, list[np.ndarray]] = {f: [] for f in names}
    for start in range(0, len(pos), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(pos)))
        at_pos = (np.arange(len(rows)), src[rows])
        sims = query[rows] @ db.T
        sims[at_pos] = pos[rows]  # the same value for each positive everywhere
        here = junk[(junk[:, 0] >= rows[0]) & (junk[:, 0] <= rows[-1])]
        sims[here[:, 0] - rows[0], here[:, 1]] = -np.inf  # below every positive: never counted
        rank[rows] = (sims >= pos[rows, None]).sum(1)
        negative = np.ones_like(sims, dtype=bool)
        negative[at_pos] = False
        negative[here[:, 0] - rows[0], here[:, 1]] = False
        for f in names:
            in_f = families[rows] == f
            neg = np.sort(sims[in_f][negative[in_f]])
            neg_ge[f] += len(neg) - np.searchsorted(neg, pos, side="left")
            top_neg[f].append(neg[-limit:])
    return rank, neg_ge, top_neg


def known_copies(dataset: Path) -> dict[str, str]:
    """The dataset's own list of copies inside it: path relative to ``dataset`` → group, from
    ``duplicates_found.csv`` (columns file, group); empty when the dataset has no such list."""
    path = Path(dataset) / KNOWN_COPIES
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"file", "group"} <= set(reader.fieldnames or ()):
            raise LookalikeError(f"{path}: needs the columns file and group")
        return {row["file"]: row["group"] for row in reader}


def copy_groups(dataset: Path, paths: Sequence[Path]) -> list[str | None]:
    """Each photo's ``known_copies`` group (None: listed in none, or not inside ``dataset``)."""
    groups, root = known_copies(dataset), Path(dataset).resolve()

    def group(path: Path) -> str | None:
        try:
            return groups.get(Path(path).resolve().relative_to(root).as_posix())
        except ValueError:  # not inside the dataset
            return None

    return [group(p) for p in paths]


def ignored_pairs(dataset: Path, query_sources: Sequence[Path], database: Sequence[Path]) -> np.ndarray:
    """(query row, database row) pairs where the database photo is a known copy of the query's
    source photo (same ``known_copies`` group) without being that photo: (k, 2) int array."""
    members: dict[str, list[int]] = {}
    for j, g in enumerate(copy_groups(dataset, database)):
        if g is not None:
            members.setdefault(g, []).append(j)
    where = {Path(p).resolve(): j for j, p in enumerate(database)}
    pairs = [(i, j) for i, (source, g) in enumerate(zip(query_sources, copy_groups(dataset, query_sources)))
             for j in members.get(g, []) if j != where.get(Path(source).resolve())]
    return np.array(pairs, np.int64).reshape(-1, 2)


def _source_index(query_source, db_ids) -> np.ndarray:
    index = {ident: i for i, ident in enumerate(np.asarray(db_ids).tolist())}
    if len(index) != len(db_ids):
        raise ValueError("database ids are not unique")
    missing = [s for s in np.asarray(query_source).tolist() if s not in index]
    if missing:
        raise ValueError(f"{len(missing)} query sources are not in the database, e.g. {missing[0]!r}")
    return np.array([index[s] for s in np.asarray(query_source).tolist()], np.int64)


def _group_metrics(member: np.ndarray, pos: np.ndarray, rank: np.ndarray, neg_ge: np.ndarray,
                   top_neg: np.ndarray, precision: float) -> dict:
    counts = neg_ge[member][np.argsort(-pos[member], kind="stable")]
    r = np.arange(1, len(counts) + 1)  # the r-th best positive has r positives up to it
    threshold, pair_recall = threshold_at_precision(pos[member], top_neg, precision)
    pct = round(precision * 100)
    return {"queries": int(member.sum()), "recall@1": float((rank[member] == 1).mean()),
            "mAP": float((1.0 / rank[member]).mean()), "micro-AP": float((r / (r + counts)).mean()),
            f"threshold@{pct}p": threshold, f"recall@{pct}p": pair_recall}


# ---- dataset evaluation ---------------------------------------------------------------------

@dataclass
class EvalConfig:
    dataset: Path               # caltech101 folder with split.csv
    split: str = "test"
    queries: int = 1000         # transformed copies for the near-duplicate test
    distractors: int = 1000     # extra database images: same split, not sources
    background: int = 0         # further distractors from BACKGROUND_Google
    class_images: int | None = None  # cap for class retrieval, drawn evenly across classes
    seed: int = 0
    image_size: int = 320       # decode size of originals before transformation


class _Ticker:
    def __init__(self, progress: ProgressCallback, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self, count: int, what: str) -> None:
        self.done += count
        if wants_stop(self.progress, self.done, self.total, what):
            raise Cancelled(f"evaluation cancelled during {what}")


def evaluate_embedder(embedder, config: EvalConfig, progress: ProgressCallback = null_progress) -> dict:
    """Both evaluations for any object with ``embed_images(images, heads)`` and ``model_id``."""
    dataset = Path(config.dataset)
    labelled = sample_images(dataset, config.split, config.class_images or 10**9, config.seed)
    sources, distractors = _near_duplicate_sets(dataset, config)
    ticker = _Ticker(progress, len(labelled) + len(sources) + len(distractors))
    ticker.advance(0, "class retrieval")
    semantic = _embed_classes(embedder, [p for p, _ in labelled], config, ticker)
    class_result = class_retrieval_metrics(semantic, [c for _, c in labelled], config.seed)
    near = _near_duplicate(embedder, sources, distractors, config, ticker)
    return {"model": embedder.model_id, "config": {**asdict(config), "dataset": str(dataset)},
            "class_retrieval": class_result, "near_duplicate": near}


def _near_duplicate_sets(dataset: Path, config: EvalConfig) -> tuple[list[Path], list[Path]]:
    """Sources and distractors, both drawn evenly across the split's classes; sources shuffled."""
    rng = random.Random(config.seed)
    pool = [p for p, _ in sample_images(dataset, config.split, 10**9, config.seed + 1)]
    sources = pool[:config.queries]
    distractors = pool[config.queries:config.queries + config.distractors]
    if len(sources) + len(distractors) < config.queries + config.distractors:
        log.warning("split %s has %d images: %d queries, %d distractors", config.split, len(pool),
                    len(sources), len(distractors))
    rng.shuffle(sources)  # so the round-robin families do not follow the class order
    if config.background:
        background = sorted((dataset / BACKGROUND).glob("*.jpg"))
        if not background:
            raise LookalikeError(f"{dataset / BACKGROUND}: no background images for distractors")
        distractors += rng.sample(background, min(config.background, len(background)))
    return sources, distractors


def _decoded(paths: list[Path], config: EvalConfig, ticker: _Ticker,
             what: str) -> Iterator[tuple[int, list[Image.Image]]]:
    for start in range(0, len(paths), BATCH):
        images = []
        for path, photo, error in ordered_map(lambda p: read_photo(p, config.image_size),
                                              paths[start:start + BATCH]):
            if error is not None:
                raise error if isinstance(error, DecodeError) else DecodeError(path, str(error))
            images.append(photo.image)
        yield start, images
        ticker.advance(len(images), what)


def _embed_classes(embedder, paths: list[Path], config: EvalConfig, ticker: _Ticker) -> np.ndarray:
    parts = [embedder.embed_images(images, (CLASS_HEAD,))[CLASS_HEAD]
             for _, images in _decoded(paths, config, ticker, "class retrieval")]
    return np.concatenate(parts)


def _near_duplicate(embedder, sources: list[Path], distractors: list[Path], config: EvalConfig,
                    ticker: _Ticker) -> dict:
    names = sorted(FAMILIES)
    family = [names[i % len(names)] for i in range(len(sources))]
    originals, copies, others = [], [], []
    for start, images in _decoded(sources, config, ticker, "near-duplicate queries"):
        made = [make_copy(img, family[start + i], config.seed * 1_000_003 + start + i)
                for i, img in enumerate(images)]
        out = embedder.embed_images(images + made, (COPY_HEAD,))[COPY_HEAD]
        originals.append(out[:len(images)])
        copies.append(out[len(images):])
    for _, images in _decoded(distractors, config, ticker, "near-duplicate distractors"):
        others.append(embedder.embed_images(images, (COPY_HEAD,))[COPY_HEAD])
    db = np.concatenate(originals + others)
    return near_duplicate_metrics(np.concatenate(copies), np.arange(len(sources)), family,
                                  db, np.arange(len(db)),
                                  ignore=ignored_pairs(config.dataset, sources, sources + distractors))


def format_table(results: dict) -> str:
    """Markdown tables of whatever parts of ``evaluate_embedder``'s result are present."""
    lines = [f"model: {results['model']}"] if "model" in results else []
    if "class_retrieval" in results:
        c = results["class_retrieval"]
        keys = [f"recall@{k}" for k in KS] + ["map@r", "nmi"]
        lines += ["", f"Class retrieval ({CLASS_HEAD} head, {c['items']} images, {c['classes']} classes)",
                  "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{c[k]:.4f}" for k in keys) + " |"]
    if "near_duplicate" in results:
        n = results["near_duplicate"]
        keys = ["recall@1", "mAP", "micro-AP"]
        lines += ["", f"Near-duplicate retrieval ({COPY_HEAD} head, {n['queries']} queries, "
                      f"{n['database']} database images)",
                  "| family | queries | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
        for name, row in [("overall", n["overall"]), *sorted(n["families"].items())]:
            lines.append(f"| {name} | {row['queries']} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
        pct = round(NEAR_PRECISION * 100)
        lines.append(f"\nthreshold at {pct} % pair precision: {n['overall'][f'threshold@{pct}p']:.4f} "
                     f"(pair recall {n['overall'][f'recall@{pct}p']:.4f})")
    return "\n".join(lines)


def run_eval(config: EvalConfig, model: str | Path | None = None, device: str = "auto",
             output: Path | None = None, progress: ProgressCallback = null_progress) -> dict:
    """What ``lookalike eval`` does: load a bundle, evaluate it, optionally save the JSON."""
    from engine.embedding import Embedder

    embedder = Embedder.load(model, device=device)
    log.info("evaluating %s on %s (%s split)", embedder.model_id, config.dataset, config.split)
    results = evaluate_embedder(embedder, config, progress)
    if output is not None:
        _write_json(Path(output), results)
    return results


def _write_json(target: Path, data: dict) -> None:
    """Atomic: temporary file in the same folder, fsync, rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
