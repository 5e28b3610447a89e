"""Turn a GPU run's weights (training/gpu_build.py, via scripts/gpu_session.sh) into a bundle.

    .venv/bin/python scripts/finish_gpu_model.py --run /work/.device/.../files \\
        --name lookalike-angular-v4                     # → resources/models/lookalike-angular-v4/

Reads ``gpu-model.safetensors`` and ``gpu-model.json`` from ``--run``, checks the weights
against the architecture the run reports, writes the bundle (fp16 safetensors + card with the
GPU recipe, its histories and the machine), then calibrates its thresholds here with the
engine's own ``Embedder`` on the CPU exactly as ``make model`` does (``training.build.calibrate``:
held-out train classes and their edited copies, training photos as extra negatives, the near
threshold at the recipe file's ``near_precision``). The copy head is averaged over the quarter
turns the recipe file names (``turns``; the default recipe's 4), as in the default model.
Needs ``../shared/datasets``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.model_bundle import BUILTIN_MODELS, load_bundle, save_bundle, weight_problems  # noqa: E402
from engine.network import EmbeddingNet, NetworkConfig  # noqa: E402
from training.build import HeldOut, ModelRecipe, calibrate, set_turns, training_folders  # noqa: E402


def description(report: dict, turns: int = 1) -> str:
    """What the run did, from its report: the device it ran on, how the copy branch started,
    and whether the semantic stage ran at all; ``turns``: the copy head's quarter turns."""
    r = report["recipe"]
    turns = f", averaged over {turns} quarter turns of the photo" if turns > 1 else ""
    where = "a GPU" if report["device"].startswith("cuda") else f"the CPU ({report['device']})"
    start = (f"warm-started from {r['start']}'s copy branch" if r.get("copy_init") == "start"
             else "started from ImageNet")
    semantic = (f"a semantic head whose trunk top ({r['semantic_stages']} stages) is fine-tuned on class labels"
                if report.get("semantic") else f"the semantic head of {r['start']} unchanged")
    return (f"EfficientNet-Lite0 + GeM, angular loss (N-pair + angular), trained on {where}: a copy head "
            f"with its own fine-tuned last {r['copy_stages']} stages ({start}){turns}, and {semantic}")


def card_for(report: dict, net: EmbeddingNet, name: str, start_card: dict) -> dict:
    r = report["recipe"]
    copy, semantic = report.get("copy", {}), report.get("semantic", {})
    return {
        "name": name,
        "version": _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S"),
        "description": description(report, net.turns("copy")),
        "architecture": net.config.to_dict(),
        "input": start_card["input"],
        "heads": {"copy": {"dim": net.head_dim("copy"), "use": "near-duplicates"},
                  "semantic": {"dim": net.head_dim("semantic"), "use": "similar photos and find-similar"}},
        "training_data": {**start_card.get("training_data", {}),
                          "images": report["pack"]["photos"] - report["pack"]["held_out"],
                          "classes": report["pack"]["train_classes"],
                          "held_out_classes": report["pack"]["held_out_classes"],
                          "pack": f"{report['pack']['side']}² JPEG pack (scripts/make_gpu_pack.py)"},
        "licence": start_card.get("licence"),
        "recipe": {"script": "training/gpu_build.py (scripts/gpu_session.sh)", "start": r["start"], **r},
        "metrics": {"history": {"copy": copy.get("history"), "semantic": semantic.get("history")}},
        "timings": {"device": report["device"], "machine": report["machine"], "decode_s": report["decode_s"],
                    "copy_s": copy.get("train_seconds"), "copy_steps": copy.get("steps"),
                    "copy_views_per_s": copy.get("views_per_s"),
                    "semantic_s": semantic.get("train_seconds"), "semantic_steps": semantic.get("steps"),
                    "semantic_images_per_s": semantic.get("views_per_s"), "total_s": report["total_s"],
                    "jpeg_round_trip": copy.get("jpeg")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="folder with gpu-model.safetensors and gpu-model.json")
    parser.add_argument("--name", default="lookalike-angular-v4")  # v3 is the shipped default
    parser.add_argument("--out", help="bundle folder (default resources/models/NAME)")
    parser.add_argument("--recipe", default=str(ROOT / "resources/recipes/default-model.json"),
                        help="split, calibration photos and near_precision")
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/datasets/caltech101"))
    parser.add_argument("--work", default=str(ROOT / "build/model"))
    args = parser.parse_args()
    run = Path(args.run)
    report = json.loads((run / "gpu-model.json").read_text())
    state = load_file(str(run / "gpu-model.safetensors"))
    net = EmbeddingNet(NetworkConfig.from_dict(report["architecture"]))
    problems = weight_problems(state, net.state_dict())
    if problems:
        raise SystemExit(f"{run / 'gpu-model.safetensors'}: " + "; ".join(problems))
    net.load_state_dict({k: v.to(net.state_dict()[k].dtype) for k, v in state.items()})
    net.eval()
    out = Path(args.out) if args.out else BUILTIN_MODELS / args.name
    recipe = ModelRecipe.from_file(args.recipe)
    set_turns(net, recipe)
    card = card_for(report, net, args.name, load_bundle(report["recipe"]["start"]).card)
    save_bundle(out, card, net.state_dict())
    train, val = training_folders(Path(args.dataset), recipe)
    t = time.perf_counter()
    bundle = load_bundle(out)
    calibration = calibrate(bundle, recipe, train, HeldOut(bundle.build_network(), val, recipe, Path(args.work)), val)
    card.update(thresholds=calibration["thresholds"], calibration=calibration)
    card["timings"]["calibrate_cpu_s"] = round(time.perf_counter() - t, 1)
    save_bundle(out, card, net.state_dict())
    print(f"{out}: thresholds {calibration['thresholds']} "
          f"({(out / 'weights.safetensors').stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
