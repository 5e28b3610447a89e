"""``lookalike`` command line: scan folders, list duplicates, find similar photos.

    lookalike [--library DIR] scan PATH...
    lookalike duplicates [--level exact|near|similar|moment] [--window S] [--json|--csv]
    lookalike similar IMAGE [-k N]
    lookalike info
    lookalike thresholds [--precision P] [--save]
    lookalike keeper [--learn]

Long work shows a tqdm bar; Ctrl-C stops cleanly and keeps what was done (a second Ctrl-C
quits at once). Errors are one line on stderr, not a traceback.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import signal
import sys
from pathlib import Path

from tqdm import tqdm

from engine.errors import LookalikeError
from engine.keeper import format_bytes
from engine.library import LEVELS, Library, default_folder
from engine.keeper_model import FILE_NAME as KEEPER_FILE, MIN_REVIEWS, KeeperPreference
from engine.keeper_signals import short_folder
from engine.moments import DEFAULT_WINDOW_S
from engine.personal_thresholds import DEFAULT_PRECISION, calibrate_personal, save_personal


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find duplicate and similar photos.")
    parser.add_argument("--library", type=Path, default=None,
                        help=f"library folder (default: {default_folder()})")
    parser.add_argument("--model", default=None, help="model bundle name or folder (default: built-in)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scan", help="add folders (or files) to the library, or refresh them")
    p.add_argument("paths", nargs="+", type=Path)
    p = sub.add_parser("duplicates", help="list groups of duplicate photos")
    p.add_argument("--level", choices=LEVELS, default="near",
                   help="exact copies, near-duplicates (edited/re-encoded, default), similar photos, "
                        "or moment: similar photos taken seconds apart (bursts), with the best shot")
    p.add_argument("--window", type=float, default=DEFAULT_WINDOW_S, metavar="S",
                   help="moment level: most seconds between consecutive shots "
                        f"(default {DEFAULT_WINDOW_S:g})")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p = sub.add_parser("similar", help="photos most like IMAGE (in the library or not)")
    p.add_argument("image", type=Path)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("info", help="library size, model and problems")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("thresholds", help="near/similar thresholds learned from your review decisions")
    p.add_argument("--precision", type=float, default=DEFAULT_PRECISION,
                   help=f"target precision on your decisions (default {DEFAULT_PRECISION})")
    p.add_argument("--save", action="store_true",
                   help="keep them for this model (the app uses them when Settings say so)")
    p = sub.add_parser("keeper", help="which copy you keep, as learned from the copies you removed")
    p.add_argument("--learn", action="store_true",
                   help="learn it again from your decisions now (keepers follow it from then on)")
    _add_training_commands(sub)
    return parser


def _add_training_commands(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model on a labeled folder (one subfolder per label)",
                       description="Flags left out keep the value of --config, or the default shown.",
                       argument_default=None)
    p.add_argument("data", type=Path, nargs="?",
                   help="labeled folder, or a Caltech-101 folder (uses its train classes)")
    p.add_argument("--from-feedback", action="store_true",
                   help="instead: improve the active model from your review decisions in this library "
                        "(activated only if better on held-out decisions)")
    p.add_argument("--feedback-steps", type=int, help="training steps with --from-feedback (default 200)")
    p.add_argument("--recipe", choices=("finetune", "copy-detection", "both"), help="default: finetune")
    p.add_argument("--loss", choices=("npair+angular", "angular", "angular-npair", "npair", "triplet",
                                      "contrastive"), help="default: npair+angular")
    p.add_argument("--alpha", type=float, help="angular loss α in degrees (default 45; paper: 36–55)")
    p.add_argument("--epochs", type=int, help="default 5")
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--dim", type=int, help="embedding size of the trained heads (default 256)")
    p.add_argument("--image-size", type=int, help="default 224")
    p.add_argument("--n-classes", type=int, help="N of the N-pair batch (default 16)")
    p.add_argument("--copy-batch", type=int, help="photos per copy-detection batch (default 32)")
    p.add_argument("--lr", type=float, help="default 1e-3 (trunk: 0.1×)")
    p.add_argument("--trunk", choices=("all", "partial", "frozen"), help="default: partial")
    p.add_argument("--workers", type=int, help="data loader processes (default 2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", type=Path, help="a JSON recipe file with TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--out", help="name of the exported bundle (default lookalike-custom; with "
                                 "--from-feedback <active model>-personal-N)")
    p = sub.add_parser("eval", help="retrieval metrics of a model on a Caltech-101-style folder")
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--distractors", type=int, default=1000)
    p.add_argument("--json", action="store_true")


class _Interrupt:
    """First Ctrl-C asks the work to stop at the next safe point; the second one quits."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Stopping after the current batch (Ctrl-C again to quit now)…", file=sys.stderr)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)


def cmd_scan(lib: Library, args) -> int:
    with tqdm(total=0, unit="photo", dynamic_ncols=True, file=sys.stderr, disable=None) as bar, \
            _Interrupt() as stop:
        def progress(done: int, total: int, what: str):
            if total and bar.total != total:
                bar.reset(total=total)
            bar.n = done
            bar.set_postfix_str(Path(what).name[-30:], refresh=False)
            bar.refresh()
            return not stop.requested
        report = lib.scan(args.paths, progress)
    rate = (report.embedded + report.reused) / report.seconds if report.seconds else 0.0
    print(f"{'Stopped' if report.cancelled else 'Scanned'}: {report.found} photos found in "
          f"{report.seconds:.1f} s — {report.embedded} embedded, {report.reused} reused "
          f"(renamed or copied), {report.unchanged} unchanged, {report.removed} removed "
          f"({rate:.1f} photos/s processed).")
    if report.cancelled:
        print("Work done so far is saved; run the same scan again to finish.")
    _print_problems(report.problems)
    return 0


def _print_problems(problems) -> None:
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print(f"  {p.path}: {p.message} [{p.kind}]")


def _file_json(member, keep_path: str) -> dict:
    f = member.file
    return {"path": f.path, "similarity": member.similarity, "keep": f.path == keep_path,
            "width": f.width, "height": f.height, "size": f.size, "format": f.format,
            "capture_time": f.capture_time, "camera": f.camera, "content_hash": f.content_hash}


def cmd_duplicates(lib: Library, args) -> int:
    if args.window < 0:
        raise LookalikeError(f"--window must be 0 or more seconds, got {args.window:g}")
    groups = lib.duplicates(args.level, window_s=args.window)
    if args.json:
        print(json.dumps({"level": args.level, "groups": [
            {"level": g.level, "files": [_file_json(m, g.keep.path) for m in g.members],
             "keep": g.keep.path, "reason": g.reason} for g in groups]}, indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout)
        out.writerow(["group", "level", "path", "similarity", "keep", "width", "height", "size", "format", "reason"])
        for n, g in enumerate(groups, 1):
            for m in g.members:
                f = m.file
                out.writerow([n, g.level, f.path, m.similarity, f.path == g.keep.path, f.width,
                              f.height, f.size, f.format, g.reason])
    else:
        _print_groups(groups, args.level)
    return 0


def _print_groups(groups, level: str) -> None:
    if not groups:
        print("No same-moment stacks." if level == "moment" else f"No {level}-level duplicate groups.")
        return
    keep = "best shot" if level == "moment" else "keep"
    for n, g in enumerate(groups, 1):
        print(f"Group {n} · {g.level} · {len(g.members)} photos · {keep} {Path(g.keep.path).name}: {g.reason}")
        for m in g.members:
            f = m.file
            mark = "KEEP" if f.id == g.keep.id else "    "
            print(f"  {mark} {m.similarity:6.3f}  {f.path}  ({f.width}×{f.height} {f.format}, {format_bytes(f.size)})")
    print(f"{len(groups)} group(s), {sum(len(g.members) - 1 for g in groups)} photo(s) could go.")


def cmd_similar(lib: Library, args) -> int:
    matches = lib.similar(args.image, args.k)
    if args.json:
        print(json.dumps({"query": str(args.image), "matches": [
            {"path": m.file.path, "similarity": m.similarity,
             **({} if m.score is None else {"rank_score": m.score})} for m in matches]}, indent=2))
        return 0
    print(f"Most similar to {args.image} (cosine to it; ranked together with its closest look-alikes):"
          if any(m.score is not None for m in matches) else f"Most similar to {args.image}:")
    for m in matches:
        print(f"  {m.similarity:6.3f}  {m.file.path}")
    return 0


def cmd_info(lib: Library, args) -> int:
    info = lib.info()
    if args.json:
        print(json.dumps({"library": str(info.folder), "files": info.files, "distinct_photos":
                          info.distinct_photos, "model": info.model_id, "embedded": info.embedded,
                          "problems": [p.__dict__ for p in info.problems]}, indent=2))
        return 0
    print(f"Library:  {info.folder}\nModel:    {info.model_id}\nPhotos:   {info.files} files, "
          f"{info.distinct_photos} distinct\nIndexed:  " + ", ".join(f"{h} {n}" for h, n in info.embedded.items()))
    _print_problems(info.problems)
    return 0


def _pr(threshold: float, precision: float | None, recall: float | None) -> str:
    def fmt(value):
        return "—" if value is None else f"{value:.2f}"
    return f"{threshold:.3f} (P {fmt(precision)} / R {fmt(recall)})"


def cmd_thresholds(lib: Library, args) -> int:
    result = calibrate_personal(lib, args.precision)
    print(f"Thresholds learned from your decisions · model {result.model_id} · "
          f"target precision {result.target_precision:.2f}")
    rows = [("level", "decisions", "card threshold", "learned threshold")]
    for level, lt in result.levels.items():
        learned = (_pr(lt.threshold, lt.precision, lt.recall) if lt.fitted
                   else f"— {lt.note}")
        rows.append((level, f"{lt.decisions} ({lt.positives} same, {lt.negatives} not)",
                     _pr(lt.card_threshold, lt.card_precision, lt.card_recall), learned))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    skipped = sum(lt.skipped for lt in result.levels.values())
    if skipped:
        print(f"{skipped} decided pair(s) left out: photos with no embedding and no snapshot.")
    if args.save:
        print(f"Saved to {save_personal(lib.folder, result)}; the app uses them when "
              "“Use learned thresholds” is on in Settings.")
    else:
        print("Not saved (add --save to keep them).")
    return 0


def cmd_keeper(lib: Library, args) -> int:
    pref = lib.learn_keeper() if args.learn else KeeperPreference.load(lib.folder / KEEPER_FILE)
    if pref is None:
        print("No keeper preference learned yet; `lookalike keeper --learn` learns one from the "
              "copies you removed.")
        return 0
    if not pref.fitted:
        print(f"Not enough decisions yet: {pref.decisions} usable same-photo decision(s), "
              f"{MIN_REVIEWS} needed. Keepers are chosen by the rules.")
        return 0
    accuracy = "n/a" if pref.accuracy is None else f"{pref.accuracy:.0%}"
    print(f"Keeper preference learned from {pref.decisions} decisions; held-out accuracy "
          f"{accuracy} on the last {pref.held_out}.")
    print("What counts (standardised weights, strongest first):")
    for weight, words in pref.weights_in_words()[:6]:
        print(f"  {weight:+6.2f}  {words}")
    notable = pref.folders.notable()
    if notable:
        print("Folders:")
        for prefix, rate, kept, seen in notable:
            print(f"  kept {kept} of {seen} under {short_folder(prefix)} (learned rate {rate:.0%})")
    return 0


COMMANDS = {"scan": cmd_scan, "duplicates": cmd_duplicates, "similar": cmd_similar, "info": cmd_info,
            "thresholds": cmd_thresholds, "keeper": cmd_keeper}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command in ("train", "eval"):
            from desktop_app import train_cli
            return train_cli.COMMANDS[args.command](args)
        with Library(args.library, model=args.model, device=args.device) as lib:
            return COMMANDS[args.command](lib, args)
    except LookalikeError as exc:
        print(f"lookalike: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
