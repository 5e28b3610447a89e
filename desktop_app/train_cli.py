"""``lookalike train`` and ``lookalike eval``: the training module from the command line."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from engine.embedding import Embedder
from engine.errors import LookalikeError
from engine.library import Library, default_folder
from training.config import TrainConfig
from training.evaluate import EvalConfig, evaluate_embedder, format_table

_FLAG_FIELDS = {"recipe": "recipe", "loss": "loss", "alpha": "alpha_deg", "epochs": "epochs",
                "steps_per_epoch": "steps_per_epoch", "image_size": "image_size", "n_classes": "n_classes",
                "copy_batch": "copy_batch", "lr": "lr", "workers": "workers", "seed": "seed"}


def config_from_args(args, library: Path) -> TrainConfig:
    """The recipe file (or the defaults), with every flag the user gave laid over it."""
    base = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    given = {field: getattr(args, flag) for flag, field in _FLAG_FIELDS.items() if getattr(args, flag) is not None}
    model = base.model
    if args.dim is not None:
        model = replace(model, heads={"copy": args.dim, "semantic": args.dim})
    if args.trunk is not None:
        model = replace(model, trunk_policy=args.trunk)
    return replace(base, **given, data=str(args.data), model=model, device=args.device, name=args.out,
                   out=str(library / "runs" / args.out))


def _bar_progress(bar: tqdm):
    def progress(done: int, total: int, what: str):
        if total and bar.total != total:
            bar.reset(total=total)
        bar.n = done
        bar.set_postfix_str(what, refresh=False)
        bar.refresh()
        return True
    return progress


def cmd_train(args) -> int:
    from training.loop import train

    if args.from_feedback:
        return cmd_from_feedback(args)
    if args.data is None:
        raise LookalikeError("lookalike train needs a labeled folder (or --from-feedback)")
    args.out = args.out or "lookalike-custom"
    library = Path(args.library or default_folder())
    models_dir = library / "models"
    config = config_from_args(args, library)
    with tqdm(total=0, unit="step", file=sys.stderr, disable=None) as bar:
        result = train(config, _bar_progress(bar), resume=args.resume, export_to=models_dir / args.out)
    print(f"{'epoch':>5} {'loss':>8}  " + "  ".join(k for k in result.history[0] if "/" in k or k == "score"))
    for row in result.history:
        loss = f"{row['train_loss']:.4f}" if row["train_loss"] is not None else "-"
        print(f"{row['epoch']:>5} {loss:>8}  " + "  ".join(
            f"{v:.4f}".rjust(len(k)) for k, v in row.items() if "/" in k or k == "score"))
    if result.cancelled:
        print("Stopped; run again with --resume to continue.")
    elif result.bundle:
        print(f"Best epoch {result.best['epoch']} exported to {result.bundle}; "
              f"use it with: lookalike --model {args.out} scan ...")
    return 0


def cmd_from_feedback(args) -> int:
    """Fine-tune the library's active model on the person's decisions; print before/after."""
    from training.feedback_train import FeedbackConfig, train_from_feedback

    config = FeedbackConfig(name=args.out, **({"steps": args.feedback_steps} if args.feedback_steps else {}),
                            **({"seed": args.seed} if args.seed is not None else {}))
    with Library(args.library, model=args.model, device=args.device) as lib, \
            tqdm(total=0, unit="step", file=sys.stderr, disable=None) as bar:
        counts = lib.feedback.counts()
        print(f"Decisions: {counts['same-photo']} same photo, {counts['not-duplicate']} not a duplicate, "
              f"{counts['similar-not-near']} similar but not a copy (model {lib.model_id})")
        result = train_from_feedback(lib, config, _bar_progress(bar))
    print(f"{'':34} {'active model':>12} {'new model':>10}")
    for key, label in (("heldout_ap", "held-out decisions: pair AP"),
                       ("heldout_false_positives", "held-out false pairs, equal recall"),
                       ("benchmark_micro_ap", "built-in benchmark: micro-AP"),
                       ("benchmark_recall@1", "built-in benchmark: recall@1")):
        print(f"{label:34} {result.before[key]:>12.3f} {result.after[key]:>10.3f}")
    print(f"{result.pairs['train_pairs']} training pairs, {result.pairs['held_pairs']} held out; "
          f"{result.seconds:.0f} s")
    print(result.reason[0].upper() + result.reason[1:])
    if result.activated:
        print(f"Now using {result.name}; run `lookalike scan` to embed the library with it.")
    return 0


def cmd_eval(args) -> int:
    library = args.library or default_folder()
    embedder = Embedder.load(args.model, device=args.device, search_dirs=(Path(library) / "models",))
    config = EvalConfig(dataset=args.dataset, split=args.split, queries=args.queries,
                        distractors=args.distractors)
    with tqdm(total=0, unit="img", file=sys.stderr, disable=None) as bar:
        results = evaluate_embedder(embedder, config, _bar_progress(bar))
    print(json.dumps(results, indent=2, default=str) if args.json else format_table(results))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval}
