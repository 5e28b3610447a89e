"""The GPU recipe (training/gpu_build.py) at toy sizes on the CPU: pack → decode → both stages →
weights the engine's network loads. The CUDA path (nvJPEG round trip, bf16) runs on a lent GPU
through scripts/gpu_session.sh; here the same code runs with libjpeg and float32."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from engine.model_bundle import load_bundle
from engine.network import EmbeddingNet, NetworkConfig
from training import gpu_build
from training.gpu_build import GPURecipe, JpegRoundTrip, decode_pack, resize, start_network


def _photo(rng: np.random.Generator, label: int, side: int = 64) -> Image.Image:
    base = np.zeros((side, side, 3), np.float32)
    base[..., label % 3] = 60 + 40 * label
    yy, xx = np.mgrid[:side, :side]
    base += 50 * np.sin(xx / (3 + label) + rng.uniform(0, 6))[..., None]
    base += rng.normal(0, 20, (side, side, 3))
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def _pack(tmp_path, classes: int = 4, per_class: int = 6, side: int = 48):
    rng = np.random.default_rng(0)
    jpegs, labels, held = [], [], []
    for c in range(classes):
        for _ in range(per_class):
            buf = io.BytesIO()
            _photo(rng, c).resize((side, side)).save(buf, "JPEG", quality=85)
            jpegs.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
            labels.append(c)
            held.append(c == classes - 1)
    pack = {"jpegs": jpegs, "labels": torch.tensor(labels), "held_out": torch.tensor(held),
            "classes": [f"c{i}" for i in range(classes)], "files": [], "side": side, "quality": 85}
    path = tmp_path / "pack.pt"
    torch.save(pack, path)
    return path, pack


def test_decode_pack_gives_uint8_squares(tmp_path):
    _, pack = _pack(tmp_path)
    images = decode_pack(pack, torch.device("cpu"), workers=2)
    assert images.shape == (24, 3, 48, 48) and images.dtype == torch.uint8
    x = resize(images[:2], 32)
    assert x.shape == (2, 3, 32, 32) and float(x.abs().max()) <= 1.0


def test_jpeg_round_trip_changes_only_the_picked_share():
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 3, 32, 32, generator=gen) * 255 - 127) / 128
    out = JpegRoundTrip(0.5, (30, 90), gen)(x)
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert out.shape == x.shape and 0 < int(changed.sum()) < 16
    assert JpegRoundTrip(0.0, (30,), gen)(x) is x


def test_start_network_keeps_the_semantic_head_and_forks_the_copy_branch():
    recipe = GPURecipe(copy_stages=3, semantic_stages=2)
    net = start_network(recipe).eval()
    old = load_bundle(recipe.start).build_network().eval()
    assert net.config.branches == {"copy": 3} and net.fork == len(net.trunk.blocks) - 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x, ("semantic",))["semantic"], old(x, ("semantic",))["semantic"], atol=1e-5)
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="fork"):
        start_network(GPURecipe(copy_stages=2, semantic_stages=6))


def test_run_trains_both_stages_and_writes_weights_the_engine_loads(tmp_path):
    path, _ = _pack(tmp_path)
    recipe = GPURecipe(train_size=32, semantic_size=32, eval_size=48, copy_batch=8, copy_seconds=3,
                       semantic_seconds=3, eval_every_s=1, val_distractors=6, copy_warmup=2,
                       semantic_warmup=2, semantic_groups=1, koleo=1.0)  # KoLeo on: its path runs too
    before = start_network(recipe)
    lines = []
    report = gpu_build.run(path, tmp_path / "out", recipe, device="cpu", log_fn=lines.append)
    for stage, key in (("copy", "micro-AP"), ("semantic", "map@r")):
        r = report[stage]
        assert r["steps"] >= 1 and r["history"][0]["step"] == 0
        assert r["best"] >= r["history"][0][key]          # the start is a candidate
        assert r["best"] == max(row[key] for row in r["history"])
    saved = json.loads((tmp_path / "out/gpu-model.json").read_text())
    net = EmbeddingNet(NetworkConfig.from_dict(saved["architecture"]))
    state = load_file(str(tmp_path / "out/gpu-model.safetensors"))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    # the lower trunk (below the fork) is frozen: untouched by either stage
    lower = [k for k in state if k.startswith("trunk.blocks.0.") or k.startswith("trunk.conv_stem")]
    ref = before.state_dict()
    assert lower and all(torch.allclose(state[k].float(), ref[k].float(), atol=1e-2) for k in lower)
    # the copy branch and the semantic top did learn
    top = [k for k in state if k.startswith(("branches.copy.", "heads.copy.")) and state[k].is_floating_point()]
    assert any(not torch.allclose(state[k].float(), before.state_dict()[k].float(), atol=1e-3) for k in top)
    assert saved["pack"]["held_out"] == 6 and saved["copy"]["jpeg"] == "on"


def test_warm_start_extends_the_start_copy_branch_downwards():
    recipe = GPURecipe(copy_stages=2, copy_init="start")
    net = start_network(recipe).eval()
    old = load_bundle(recipe.start).build_network().eval()
    assert old.config.branches == {"copy": 1} and net.config.branches == {"copy": 2}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():   # the extra stage is the ImageNet one the old network shares: same output
        assert torch.allclose(net(x, ("copy",))["copy"], old(x, ("copy",))["copy"], atol=1e-4)
    with pytest.raises(ValueError, match="copy_init"):
        start_network(GPURecipe(copy_init="nonsense"))


def test_finished_bundle_describes_where_and_what_the_run_trained():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "finish_gpu_model", Path(__file__).resolve().parents[2] / "scripts/finish_gpu_model.py")
    finish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finish)
    recipe = GPURecipe(copy_stages=2, copy_init="start").to_dict()
    on_cpu = finish.description({"recipe": recipe, "device": "cpu", "copy": {"steps": 9}})
    assert "the CPU (cpu)" in on_cpu and "GPU" not in on_cpu
    assert "warm-started from lookalike-angular-v1" in on_cpu and "semantic head of lookalike-angular-v1 unchanged" in on_cpu
    on_gpu = finish.description({"recipe": GPURecipe().to_dict(), "device": "cuda:0",
                                 "copy": {"steps": 9}, "semantic": {"steps": 3}})
    assert "trained on a GPU" in on_gpu and "started from ImageNet" in on_gpu
    assert "trunk top (2 stages) is fine-tuned" in on_gpu


def test_family_copies_cover_every_family_evenly_and_are_reproducible():
    from training.families import FAMILIES
    rng = np.random.default_rng(3)
    originals = torch.from_numpy(np.stack([np.asarray(_photo(rng, i % 4)) for i in range(8)])
                                 ).permute(0, 3, 1, 2).contiguous()
    queries, source, names = gpu_build.family_copies(originals, 2, 40, seed=5)
    assert queries.shape == (16, 3, 40, 40) and queries.dtype == torch.uint8
    assert source.tolist() == [i for i in range(8) for _ in range(2)]
    assert sorted(names) == sorted(list(FAMILIES) * 2)          # 8 photos × 2: each family twice
    assert all(names[2 * i] != names[2 * i + 1] for i in range(8))
    again, _, _ = gpu_build.family_copies(originals, 2, 40, seed=5)
    assert torch.equal(queries, again)
    other, _, _ = gpu_build.family_copies(originals, 2, 40, seed=6)
    assert not torch.equal(queries, other)
    none, src, fam = gpu_build.family_copies(originals, 0, 40, seed=5)
    assert len(none) == 0 and len(src) == 0 and fam == []


def test_held_out_check_pools_device_and_family_copies(tmp_path):
    path, _ = _pack(tmp_path)
    recipe = GPURecipe(eval_size=48, val_distractors=6, check_family_copies=2)
    pack = torch.load(path, weights_only=False)
    images = decode_pack(pack, torch.device("cpu"))
    check = gpu_build.HeldOutCheck(images, pack["labels"], pack["held_out"], recipe)
    n = int(pack["held_out"].sum())
    assert len(check.family_queries) == 2 * n and len(check.queries) == n
    net = start_network(recipe)
    score = check.copy_score(net)
    assert {"micro-AP", "R@1", "device µAP", "families µAP"} <= set(score)
    assert all(0.0 <= score[k] <= 1.0 for k in ("micro-AP", "R@1", "device µAP", "families µAP"))
    plain = gpu_build.HeldOutCheck(images, pack["labels"], pack["held_out"],
                                   GPURecipe(eval_size=48, val_distractors=6, check_family_copies=0))
    alone = plain.copy_score(net)
    assert set(alone) == {"micro-AP", "R@1"}
    # the same device-made copies as before the family copies were added, scored the same
    assert torch.equal(plain.queries, check.queries)
    assert score["device µAP"] == pytest.approx(alone["micro-AP"], abs=1e-6)
