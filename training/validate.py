"""Validation during training, on the held-out classes: class retrieval for the semantic
head (Recall@1, MAP@R) and near-duplicate retrieval for the copy head (Recall@1, micro-AP on
transformed copies of the held-out photos). The score picks the best epoch."""
from __future__ import annotations

import random

import numpy as np
import torch

from engine.network import EmbeddingNet
from training.augment import eval_transform
from training.datasets import ImageCache
from training.evaluate import class_retrieval_metrics, near_duplicate_metrics
from training.families import FAMILIES, make_copy


@torch.no_grad()
def embed(net: EmbeddingNet, images, head: str, size: int, device: torch.device, batch: int = 64) -> np.ndarray:
    net.eval()
    transform = eval_transform(size)
    out = []
    for start in range(0, len(images), batch):
        x = torch.stack([transform(img) for img in images[start:start + batch]]).to(device)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out.append(net(x, (head,))[head].float().cpu().numpy())
        else:
            out.append(net(x, (head,))[head].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.head_dim(head)), np.float32)


def _val_set(data) -> tuple[list, np.ndarray]:
    """Held-out photos (cached on ``data``); falls back to training photos for tiny folders."""
    if getattr(data, "_val_cache", None) is None:
        folder = data.val if len(data.val.classes) >= 2 else data.train
        order = list(range(len(folder.paths)))
        random.Random(data.config.seed).shuffle(order)
        keep = sorted(order[: data.config.val_images])
        cache = ImageCache([folder.paths[i] for i in keep], data.config.image_size)
        data._val_cache = ([cache.get(i) for i in range(len(keep))],
                           np.array([folder.labels[i] for i in keep]))
    return data._val_cache


def validate(net: EmbeddingNet, data, heads: tuple[str, ...], device: torch.device) -> dict:
    images, labels = _val_set(data)
    size = data.config.image_size
    metrics: dict = {}
    parts = []
    if "semantic" in heads:
        m = class_retrieval_metrics(embed(net, images, "semantic", size, device), labels)
        metrics.update({"semantic/recall@1": m["recall@1"], "semantic/map@r": m["map@r"]})
        parts.append(m["map@r"])
    if "copy" in heads:
        families = sorted(FAMILIES)
        fams = [families[i % len(families)] for i in range(len(images))]
        copies = [make_copy(img, fam, data.config.seed * 7919 + i) for i, (img, fam) in enumerate(zip(images, fams))]
        db = embed(net, images, "copy", size, device)
        queries = embed(net, copies, "copy", size, device)
        ids = np.arange(len(images))
        m = near_duplicate_metrics(queries, ids, np.array(fams), db, ids)["overall"]
        metrics.update({"copy/recall@1": m["recall@1"], "copy/micro_ap": m["micro-AP"]})
        parts.append(m["micro-AP"])
    metrics["score"] = float(np.mean(parts))
    return metrics
