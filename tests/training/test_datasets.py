"""Tests for training.datasets: labelled folders, class splits, the image cache, view datasets."""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import photo, save_jpeg
from PIL import Image
from torch.utils.data import DataLoader

from engine.errors import DecodeError, FileError, LookalikeError
from training.datasets import (
    NOT_IN_LABEL_FOLDER,
    CopyViewsDataset,
    ImageCache,
    LabeledFolder,
    PairViewsDataset,
    caltech_folder,
    collate_views,
    load_labeled_folder,
    split_classes,
)

SMALL = (96, 72)


@pytest.fixture
def labeled(tmp_path: Path) -> Path:
    root = tmp_path / "labels"
    save_jpeg(photo(1, SMALL), root / "animals" / "cats" / "c1.jpg")
    save_jpeg(photo(2, SMALL), root / "animals" / "cats" / "c2.jpg")
    photo(3, SMALL).save(root / "animals" / "cats" / "c3.png")
    save_jpeg(photo(4, SMALL), root / "animals" / "dogs" / "d1.jpg")
    save_jpeg(photo(5, SMALL), root / "animals" / "dogs" / "d2.txt")  # JPEG under a text name
    save_jpeg(photo(6, SMALL), root / "cars" / "a.jpg")
    save_jpeg(photo(7, SMALL), root / "cars" / "b b.jpg")
    (root / "cars" / "notes.txt").write_text("not a photo")
    (root / "cars" / "empty.jpg").write_bytes(b"")
    save_jpeg(photo(8, SMALL), root / "fête" / "x 1.jpg")
    save_jpeg(photo(9, SMALL), root / "fête" / "x 2.jpg")
    save_jpeg(photo(10, SMALL), root / "lonely" / "only.jpg")
    save_jpeg(photo(11, SMALL), root / "at_root.jpg")
    return root


def test_load_labeled_folder(labeled: Path):
    folder = load_labeled_folder(labeled)
    assert folder.root == labeled
    assert folder.classes == ["animals/cats", "animals/dogs", "cars", "fête"]
    names = [p.relative_to(labeled).as_posix() for p in folder.paths]
    assert names == ["animals/cats/c1.jpg", "animals/cats/c2.jpg", "animals/cats/c3.png",
                     "animals/dogs/d1.jpg", "animals/dogs/d2.txt",
                     "cars/a.jpg", "cars/b b.jpg", "fête/x 1.jpg", "fête/x 2.jpg"]
    assert folder.labels == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert folder.singletons == ["lonely"]
    ignored = {p.relative_to(labeled).as_posix(): why for p, why in folder.ignored}
    assert set(ignored) == {"cars/notes.txt", "cars/empty.jpg", "at_root.jpg"}
    assert ignored["at_root.jpg"] == NOT_IN_LABEL_FOLDER
    assert "not an image" in ignored["cars/notes.txt"]
    assert "empty" in ignored["cars/empty.jpg"]
    assert load_labeled_folder(str(labeled)) == folder  # str accepted, ordering deterministic


def test_load_labeled_folder_errors(tmp_path: Path):
    with pytest.raises(LookalikeError, match="missing"):
        load_labeled_folder(tmp_path / "missing")
    save_jpeg(photo(1, SMALL), tmp_path / "one" / "a.jpg")
    save_jpeg(photo(2, SMALL), tmp_path / "one" / "b.jpg")
    save_jpeg(photo(3, SMALL), tmp_path / "two" / "a.jpg")  # a singleton: not usable
    with pytest.raises(FileError, match="found 1") as caught:
        load_labeled_folder(tmp_path)
    assert caught.value.path == str(tmp_path)


def fake_folder(n_classes: int, per_class: int = 3) -> LabeledFolder:
    classes = [f"class{c:02d}" for c in range(n_classes)]
    paths = [Path(name, f"{i}.jpg") for name in classes for i in range(per_class)]
    labels = [c for c in range(n_classes) for _ in range(per_class)]
    return LabeledFolder(Path("root"), paths, labels, classes, [(Path("x.txt"), "why")], ["solo"])


def check_part(part: LabeledFolder) -> None:
    assert sorted(set(part.labels)) == list(range(len(part.classes)))
    for path, label in zip(part.paths, part.labels):
        assert path.parent.as_posix() == part.classes[label]


def test_split_classes_is_class_disjoint_and_reindexed():
    folder = fake_folder(10)
    train, val = split_classes(folder, val_fraction=0.3, seed=1)
    assert len(val.classes) == 3 and len(train.classes) == 7
    assert not set(train.classes) & set(val.classes)
    assert sorted(train.classes + val.classes) == folder.classes
    assert sorted(train.paths + val.paths) == sorted(folder.paths)
    check_part(train)
    check_part(val)
    assert train.singletons == ["solo"] and val.singletons == [] and val.ignored == []
    assert split_classes(folder, 0.3, seed=1) == (train, val)
    picks = {tuple(split_classes(folder, 0.3, seed=s)[1].classes) for s in range(6)}
    assert len(picks) > 1  # the seed matters


def test_split_classes_sizes():
    assert len(split_classes(fake_folder(10), 0.05)[1].classes) == 2  # min_val_classes
    assert len(split_classes(fake_folder(4), 0.9)[1].classes) == 2    # train keeps 2
    train, val = split_classes(fake_folder(3), 0.5)
    assert val.classes == [] and val.paths == [] and len(train.classes) == 3
    with pytest.raises(ValueError):
        split_classes(fake_folder(5), 1.0)


def test_caltech_folder(tmp_path: Path):
    rows = [("Ant", "train", 2), ("bee", "train", 2), ("Cat", "test", 3), ("dog", "test", 2)]
    seed = 0
    for name, _, count in rows + [("BACKGROUND_Google", "", 2)]:
        for i in range(count):
            seed += 1
            save_jpeg(photo(seed, SMALL), tmp_path / name / f"image_{i:04d}.jpg")
    table = "class,split,images\n" + "".join(f"{c},{s},{n}\n" for c, s, n in rows)
    (tmp_path / "split.csv").write_text(table)
    train = caltech_folder(tmp_path, "train")
    assert train.classes == ["Ant", "bee"] and train.labels == [0, 0, 1, 1]
    test = caltech_folder(tmp_path, "test")
    assert test.classes == ["Cat", "dog"] and len(test.paths) == 5
    assert all(p.parent.name in ("Cat", "dog") for p in test.paths)
    with pytest.raises(FileError, match="no class in split"):
        caltech_folder(tmp_path, "val")
    (tmp_path / "split.csv").write_text(table + "eel,train,2\n")
    with pytest.raises(FileError, match="eel"):
        caltech_folder(tmp_path, "train")


@pytest.fixture
def shaped(tmp_path: Path) -> list[Path]:
    sizes = [(256, 192), (90, 240), (40, 30), (64, 64)]  # landscape, portrait, tiny, square
    return [save_jpeg(photo(20 + k, size), tmp_path / f"p{k}.jpg") for k, size in enumerate(sizes)]


def test_image_cache_resident_and_lazy_agree(shaped: list[Path]):
    lazy = ImageCache(shaped, 64, resident=False)
    resident = ImageCache(shaped, 64, resident=True)
    preloaded = ImageCache(shaped, 64)
    assert preloaded.resident and preloaded.preload(workers=2)
    originals = [Image.open(p).size for p in shaped]
    for i, (w, h) in enumerate(originals):
        images = [lazy.get(i), resident.get(i), preloaded.get(i), resident.get(i)]
        assert all(img.mode == "RGB" for img in images)
        assert min(images[0].size) == 64
        assert abs(images[0].width / images[0].height - w / h) < 0.05
        arrays = [np.asarray(img) for img in images]
        assert all(np.array_equal(arrays[0], a) for a in arrays[1:])
    assert len(lazy) == len(shaped)


def test_image_cache_residency_by_estimate_and_threads(shaped: list[Path]):
    assert not ImageCache(shaped, 64, max_bytes=1000).resident
    assert ImageCache(shaped, 64, max_bytes=10**6).resident
    cache = ImageCache(shaped * 4, 48, resident=True)
    with ThreadPoolExecutor(4) as pool:
        arrays = list(pool.map(lambda i: np.asarray(cache.get(i % len(cache))), range(64)))
    for i, array in enumerate(arrays):
        assert np.array_equal(array, np.asarray(cache.get(i % len(cache))))
    assert not ImageCache(shaped, 48).preload(progress=lambda done, total, what: False)


def test_image_cache_undecodable_file(tmp_path: Path, shaped: list[Path]):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # sniffs as JPEG, decodes as nothing
    cache = ImageCache(shaped + [bad], 32)
    with pytest.raises(DecodeError, match="bad.jpg"):
        cache.get(len(shaped))
    with pytest.raises(DecodeError, match="bad.jpg"):
        cache.preload()


def test_pair_views_dataset(shaped: list[Path]):
    cache = ImageCache(shaped, 32)
    dataset = PairViewsDataset(cache, [3, 3, 1, 1], to_tensor)
    image, label = dataset[2]
    assert torch.equal(image, to_tensor(cache.get(2))) and min(image.shape[1:]) == 32
    assert label == 1 and len(dataset) == 4
    with pytest.raises(ValueError):
        PairViewsDataset(cache, [0, 1], to_tensor)


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def rng_transform(image: Image.Image, rng: random.Random) -> torch.Tensor:
    side = rng.randint(20, 32)
    x, y = rng.randint(0, image.width - side), rng.randint(0, image.height - side)
    tensor = to_tensor(image.crop((x, y, x + side, y + side)).resize((24, 24)))
    return tensor + 0.01 * torch.rand(tensor.shape)  # torch's stream is seeded too


rng_transform.takes_rng = True


def torch_transform(image: Image.Image) -> torch.Tensor:
    """Draws only from torch's global stream, as torchvision's random transforms do."""
    side = int(torch.randint(20, 33, ()))
    x = int(torch.randint(0, image.width - side + 1, ()))
    y = int(torch.randint(0, image.height - side + 1, ()))
    tensor = to_tensor(image.crop((x, y, x + side, y + side)).resize((24, 24)))
    return tensor * (0.8 + 0.4 * torch.rand(()))


@pytest.mark.parametrize("transform", [rng_transform, torch_transform], ids=["takes_rng", "torch"])
def test_copy_views_are_reproducible_per_epoch(shaped: list[Path], transform):
    cache = ImageCache(shaped, 32)
    dataset = CopyViewsDataset(cache, transform, seed=3)
    again = CopyViewsDataset(cache, transform, seed=3)
    views, index = dataset[1]
    assert views.shape == (2, 3, 24, 24) and index == 1
    assert not torch.equal(views[0], views[1])  # two independent augmentations
    state = torch.get_rng_state()
    assert torch.equal(dataset[1][0], views) and torch.equal(again[1][0], views)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's torch stream is untouched
    assert not torch.equal(dataset[2][0][0], views[0])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1][0], views)
    dataset.set_epoch(0)
    assert torch.equal(dataset[1][0], views)
    assert not torch.equal(CopyViewsDataset(cache, transform, seed=4)[1][0], views)


def test_collate_views_orders_pairs(shaped: list[Path]):
    dataset = CopyViewsDataset(ImageCache(shaped, 32), rng_transform, seed=0)
    images, labels = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate_views)))
    assert images.shape == (6, 3, 24, 24)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    for k in range(3):
        views, _ = dataset[k]
        assert torch.equal(images[2 * k], views[0]) and torch.equal(images[2 * k + 1], views[1])
    with pytest.raises(ValueError):
        collate_views([])
