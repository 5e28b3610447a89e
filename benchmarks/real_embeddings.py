"""Real embeddings for ``bench_index.py --real``: Caltech-101 photos through a bundle's head.

    .venv/bin/python benchmarks/real_embeddings.py [--count 3000] [--model lookalike-angular-v1]
        [--head copy] [--out build/real-embeddings.npy]

Photos are drawn evenly across all 101 classes (train and test: the index benchmark trains
nothing), embedded on the CPU with the engine's own ``Embedder`` and saved as a float32
``.npy`` (rows = photos). ``bench_index.py`` repeats them with small noise up to its sizes, so
the graph meets the clusters, near neighbours and spread of real embeddings. The default is
the trained model's 256-d ``copy`` head, the dimension the index benchmark measures at; a
file that already holds this model, head and count is kept (its ``.json`` says what it is).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.embedding import Embedder  # noqa: E402
from training.calibrate import sample_images, split_classes  # noqa: E402

DATA = ROOT.parent / "shared/datasets/caltech101"


def pick(dataset: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` photos, evenly across the classes of both splits."""
    half = count // 2
    return ([p for p, _ in sample_images(dataset, "train", count - half, seed)]
            + [p for p, _ in sample_images(dataset, "test", half, seed)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(DATA))
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--model", default="lookalike-angular-v1")
    parser.add_argument("--head", default="copy")
    parser.add_argument("--out", default=str(ROOT / "build/real-embeddings.npy"))
    args = parser.parse_args(argv)
    out, dataset = Path(args.out), Path(args.dataset)
    if not (dataset / "split.csv").is_file() or not split_classes(dataset, "train"):
        print(f"{dataset}: no Caltech-101 with split.csv; not written", file=sys.stderr)
        return 2
    embedder = Embedder.load(args.model, device="cpu")
    want = {"model": embedder.model_id, "head": args.head, "count": args.count}
    side = out.with_suffix(".json")
    if out.is_file() and side.is_file() and json.loads(side.read_text()).get("wanted") == want:
        print(f"{out}: already holds {want}")
        return 0
    paths = pick(dataset, args.count)
    started = time.perf_counter()
    errors: list = []
    vectors = embedder.embed_files(paths, head=args.head, skip_errors=True, errors=errors)
    seconds = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors.astype(np.float32))
    side.write_text(json.dumps({"wanted": want, "rows": len(vectors), "dim": int(vectors.shape[1]),
                                "skipped": [str(e) for e in errors], "seconds": round(seconds, 1)},
                               indent=1) + "\n")
    print(f"{out}: {len(vectors)} × {vectors.shape[1]} from {args.model} '{args.head}' in {seconds:.0f} s"
          f" ({len(errors)} unreadable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
