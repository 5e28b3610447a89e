"""The training loop on a generated labeled folder: it learns, resumes exactly, exports a
bundle the engine reads, stops on request, and runs under DistributedDataParallel (gloo)."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from engine.embedding import Embedder
from imagegen import class_photo, labeled_folder
from training.config import TrainConfig
from training.export import export_bundle
from training.loop import Trainer
from training.model import ModelConfig
from training.validate import embed


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return labeled_folder(tmp_path_factory.mktemp("labeled"), classes=16, per_class=6)


def small_config(folder, out, **overrides) -> TrainConfig:
    base = dict(data=str(folder), recipe="finetune", image_size=64, epochs=3, steps_per_epoch=8,
                n_classes=6, copy_batch=8, workers=0, val_fraction=0.25, lr=1e-3, warmup_steps=2,
                out=str(out), model=ModelConfig(heads={"copy": 64, "semantic": 64}))
    base.update(overrides)
    return TrainConfig(**base)


def test_finetune_lowers_loss_and_raises_recall(folder, tmp_path):
    trainer = Trainer(small_config(folder, tmp_path))
    losses = []
    step = trainer.train_step
    trainer.train_step = lambda batches: losses.append(step(batches)) or losses[-1]
    result = trainer.run()
    before, after = result.history[0], result.history[-1]
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    assert after["semantic/recall@1"] > before["semantic/recall@1"]
    assert result.best["score"] >= before["score"]


def test_copy_detection_recipe_improves_micro_ap(folder, tmp_path):
    result = Trainer(small_config(folder, tmp_path, recipe="copy-detection")).run()
    assert result.best["copy/micro_ap"] > result.history[0]["copy/micro_ap"]


@pytest.mark.parametrize("stop_at", [2, 3])   # mid-epoch and at an epoch boundary
def test_resume_continues_identically(folder, tmp_path, stop_at):
    straight = Trainer(small_config(folder, tmp_path / "a", epochs=2, steps_per_epoch=3))
    straight.run()
    first = Trainer(small_config(folder, tmp_path / "b", epochs=2, steps_per_epoch=3))
    assert first.run(lambda done, total, what: done < stop_at).cancelled
    resumed = Trainer(small_config(folder, tmp_path / "b", epochs=2, steps_per_epoch=3))
    resumed.run(resume=True)
    assert resumed.step == straight.step == 6
    for (name, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_cancel_saves_a_checkpoint_to_resume_from(folder, tmp_path):
    trainer = Trainer(small_config(folder, tmp_path, epochs=2, steps_per_epoch=4))
    result = trainer.run(lambda done, total, what: done < 2)
    assert result.cancelled and trainer.step == 2 and (tmp_path / "checkpoint.pt").exists()
    again = Trainer(small_config(folder, tmp_path, epochs=2, steps_per_epoch=4))
    finished = again.run(resume=True)
    assert not finished.cancelled and again.step == 8


@pytest.mark.parametrize("half, tolerance", [(False, 1e-5), (True, 2e-2)])
def test_export_round_trip_gives_the_training_vectors(folder, tmp_path, half, tolerance):
    trainer = Trainer(small_config(folder, tmp_path, recipe="both", epochs=1, steps_per_epoch=2))
    trainer.run()
    bundle = export_bundle(trainer, tmp_path / "bundle", half=half)
    loaded = Embedder.load(bundle, device="cpu")
    assert set(loaded.heads) == {"copy", "semantic"} and loaded.dim("copy") == 64
    assert 0 < loaded.threshold("copy", "near") <= 1
    trainer.net.load_state_dict(trainer.best_state)
    images = [class_photo(3, i) for i in range(4)]
    for head in ("copy", "semantic"):
        want = embed(trainer.net, images, head, 64, torch.device("cpu"))
        got = loaded.embed_images(images, (head,))[head]
        assert np.abs(want - got).max() < tolerance


def _ddp_worker(rank, world, port, folder, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(small_config(folder, out, epochs=1, steps_per_epoch=2, device="cpu"))
    trainer.run()
    results[rank] = torch.cat([p.detach().flatten() for p in trainer.net.parameters()]).numpy()
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_train_in_step(folder, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, str(folder), str(tmp_path), results), nprocs=2, join=True)
    assert np.array_equal(results[0], results[1])      # gradients were averaged across ranks
    assert (tmp_path / "checkpoint.pt").exists()       # rank 0 saved
