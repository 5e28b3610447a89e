"""Safety below the GUI: the last copy of a group is never removed, photos are only ever read,
model bundles and checkpoints load without running code from them, SQL takes values as
parameters."""
import hashlib
import json
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import FileError, ModelBundleError
from engine.review import LastCopyError, check_removal
from imagegen import crop, photo, resize, save_jpeg

# ---- the last copy of a group ------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    path: str


@dataclass(frozen=True)
class Member:
    file: File


@dataclass(frozen=True)
class Group:
    members: list


def group_of(*paths) -> Group:
    return Group([Member(File(str(p))) for p in paths])


def files(folder: Path, *names) -> list[Path]:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(name.encode())
    return [folder / n for n in names]


def test_removing_every_copy_of_a_group_is_refused_naming_its_files(tmp_path):
    a, b, c, d = files(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    groups = [group_of(a, b), group_of(c, d)]

    with pytest.raises(LastCopyError) as err:
        check_removal(groups, [a, b, c])

    assert err.value.groups == [[str(a), str(b)]]
    assert str(a) in str(err.value) and str(b) in str(err.value)
    assert "every copy is marked" in str(err.value) and "nothing was moved" in str(err.value)
    check_removal(groups, [a, c])  # one copy of each kept: fine
    check_removal(groups, [])


def test_every_failing_group_is_named(tmp_path):
    a, b, c, d = files(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    with pytest.raises(LastCopyError) as err:
        check_removal([group_of(a, b), group_of(c, d)], [a, b, c, d])
    assert err.value.groups == [[str(a), str(b)], [str(c), str(d)]]


def test_a_kept_copy_that_is_gone_from_disk_does_not_count(tmp_path):
    a, b = files(tmp_path, "a.jpg", "b.jpg")
    b.unlink()  # deleted outside the app after the review
    with pytest.raises(LastCopyError, match="no longer on disk"):
        check_removal([group_of(a, b)], [a])


def test_a_kept_symlink_to_the_removed_file_does_not_count(tmp_path):
    [a] = files(tmp_path, "a.jpg")
    link = tmp_path / "link.jpg"
    link.symlink_to(a)
    with pytest.raises(LastCopyError):
        check_removal([group_of(a, link)], [a])


def test_overlapping_groups_and_plain_path_lists(tmp_path):
    a, b, c = files(tmp_path, "a.jpg", "b.jpg", "c.jpg")
    check_removal([[a, b], [b, c]], [b])  # a and c survive
    with pytest.raises(LastCopyError):
        check_removal([[a, b], [b, c]], [b, c])
    check_removal([[a, b]], [c])  # a file in no group is not this check's business


def test_services_refuse_before_the_trash_is_touched(tmp_path):
    """The bridge checks too, not only the view: a stand-in trash records any call."""
    pytest.importorskip("PySide6")
    from desktop_app import workers

    a, b = files(tmp_path, "a.jpg", "b.jpg")
    calls = []

    class Recorder:
        backend = "freedesktop"

        def remove(self, *args, **kwargs):
            calls.append(args)

    services = workers.Services.__new__(workers.Services)  # no Qt pools: run the work inline
    services.trash = Recorder()
    services.run = lambda work, name, **kw: work(None)
    records = [File(str(a)), File(str(b))]
    with pytest.raises(LastCopyError):
        services.move_to_trash(records, [group_of(a, b)])
    assert calls == [] and a.exists() and b.exists()


# ---- photos are only ever read ------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_MUTATING = {"os.rename", "os.remove", "os.rmdir", "os.utime", "os.chmod", "os.chown",
             "os.truncate", "os.link", "os.symlink", "shutil.rmtree", "shutil.move"}
_watch: dict = {"root": None, "writes": []}


def _audit(event, args):
    root = _watch["root"]
    if root is None:
        return
    if event == "open":
        path, mode, flags = args
        writing = (flags or 0) & _WRITE_FLAGS or (isinstance(mode, str) and set(mode) & set("wax+"))
        paths = [path]
    elif event in _MUTATING:
        writing, paths = True, [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    hits = [os.fsdecode(p) for p in paths if not isinstance(p, int)
            and os.path.abspath(os.fsdecode(p)).startswith(root)]
    if writing and hits:
        _watch["writes"].append((event, hits[0]))


sys.addaudithook(_audit)  # cannot be removed; it does nothing while no test watches


def fingerprint(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        data = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p)] = (data, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_the_write_watch_sees_writes(tmp_path):
    """The watch below is not vacuous: each kind of write to a photo is seen."""
    from PIL import Image
    [a] = files(tmp_path, "a.jpg")
    _watch.update(root=str(tmp_path), writes=[])
    try:
        open(a, "ab").close()
        open(a, "r+b").close()
        os.close(os.open(a, os.O_WRONLY))
        os.utime(a)
        os.rename(a, tmp_path / "b.jpg")
        Image.new("RGB", (4, 4)).save(tmp_path / "c.jpg")
        open(tmp_path / "b.jpg", "rb").close()  # reading is fine
    finally:
        _watch["root"] = None
    assert [e for e, _ in _watch["writes"]] == ["open", "open", "open", "os.utime", "os.rename", "open"]


def test_scan_thumbnails_grouping_and_search_never_write_a_photo(tmp_path, embedder):
    from engine.decode import read_photo
    from engine.library import Library
    from engine.thumbnails import ThumbnailCache

    folder = tmp_path / "photos"
    save_jpeg(photo(1), folder / "beach.jpg")
    save_jpeg(photo(1), folder / "copies" / "beach copy.jpg")
    save_jpeg(resize(photo(1), 0.7), folder / "copies" / "small.jpg", quality=80)
    save_jpeg(crop(photo(2)), folder / "x'); DROP TABLE files;--.jpg")
    save_jpeg(photo(3), folder / "100%_a" / "été.jpg")
    photo(4).save(folder / "p.png")
    (folder / "notes.txt").write_text("not a photo")
    for p in folder.rglob("*"):
        os.utime(p, ns=(1_000_000_000_000_000_000, 1_234_567_890_123_456_789))
    before = fingerprint(folder)

    _watch.update(root=str(folder), writes=[])
    try:
        with Library(tmp_path / "library", embedder=embedder) as library:
            report = library.scan([folder])
            records = library.catalog.files()
            thumbs = ThumbnailCache(tmp_path / "thumbnails")
            for record in records:
                thumbs.get(record.path, record.content_hash)
                thumbs.get(record.path)
                read_photo(record.path, 512)
            groups = {level: library.duplicates(level) for level in ("exact", "near", "similar")}
            for record in records:
                library.similar(record.path, k=3)
            library.scan([folder])  # a rescan of unchanged files
    finally:
        _watch["root"] = None

    assert _watch["writes"] == []
    assert fingerprint(folder) == before
    assert len(records) == 6 and report.found >= 6
    assert any(len(g.members) == 2 for g in groups["exact"])
    assert not list(folder.rglob("*.xmp")) and not list(folder.rglob(".*"))


def test_sql_values_are_parameters_not_text(tmp_path, embedder):
    """Names that are SQL or LIKE wildcards are stored and matched literally."""
    from engine.library import Library

    folder = tmp_path / "photos"
    save_jpeg(photo(1), folder / "a_b" / "x'); DROP TABLE files;--.jpg")
    save_jpeg(photo(2), folder / "axb" / "it's 100%.jpg")
    save_jpeg(photo(3), folder / "a%b" / "y.jpg")
    with Library(tmp_path / "library", embedder=embedder) as library:
        library.scan([folder])
        assert library.forget([folder / "a_b"]) == 1
        left = sorted(os.path.relpath(f.path, folder) for f in library.catalog.files())
        assert left == ["a%b/y.jpg", "axb/it's 100%.jpg"]
        assert library.catalog.file_by_path(str(folder / "axb" / "it's 100%.jpg")) is not None


# ---- model bundles: safetensors + JSON, checked ---------------------------------------------

@pytest.fixture(scope="module")
def default_bundle():
    from engine.model_bundle import load_bundle
    return load_bundle()


def bad_bundle(tmp_path: Path, source, mutate) -> Path:
    from engine.model_bundle import CARD, WEIGHTS
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(source.path / CARD, folder / CARD)
    state = load_file(source.path / WEIGHTS)
    mutate(state)
    save_file(state, folder / WEIGHTS)
    return folder


FIRST = "trunk.conv_stem.weight"


@pytest.mark.parametrize("mutate, reason", [
    (lambda s: s.update({FIRST: s[FIRST].to(torch.int8)}), f"'{FIRST}' is int8, expected a floating"),
    (lambda s: s.update({FIRST: s[FIRST].bool()}), f"'{FIRST}' is bool, expected a floating"),
    (lambda s: s.pop(FIRST), f"1 tensor\\(s\\) missing \\('{FIRST}'\\)"),
    (lambda s: s.update({"trunk.extra.weight": torch.zeros(3)}), "1 unexpected tensor\\(s\\) \\('trunk.extra.weight'\\)"),
    (lambda s: s.update({FIRST: s[FIRST][:, :2].contiguous()}), f"'{FIRST}' has shape \\(32, 2, 3, 3\\), the architecture needs \\(32, 3, 3, 3\\)"),
    (lambda s: s.update({FIRST: torch.full_like(s[FIRST], float("nan"))}), "NaN or infinite"),
    (lambda s: s.update({"trunk.bn1.num_batches_tracked": torch.tensor(0.5)}), "expected an integer tensor"),
], ids=["int8", "bool", "missing", "extra", "shape", "nan", "float-counter"])
def test_bad_weights_give_a_clear_error_naming_the_file(tmp_path, default_bundle, mutate, reason):
    from engine.model_bundle import WEIGHTS, load_bundle
    folder = bad_bundle(tmp_path, default_bundle, mutate)
    with pytest.raises(ModelBundleError, match=reason) as err:
        load_bundle(folder).build_network()
    assert err.value.path == str(folder / WEIGHTS)


def test_good_fp16_bundle_loads_as_fp32(tmp_path, default_bundle):
    folder = bad_bundle(tmp_path, default_bundle, lambda s: None)
    from engine.model_bundle import load_bundle
    net = load_bundle(folder).build_network()
    assert all(p.dtype == torch.float32 for p in net.parameters())


class Boom:
    """Unpickling this would create a marker file: proof that code ran."""

    marker = None

    def __reduce__(self):
        return (Path.touch, (Path(Boom.marker),))


def pickled_boom(path: Path, marker: Path, wrap=lambda x: x) -> Path:
    Boom.marker = str(marker)
    torch.save(wrap({"x": Boom()}), path)
    return path


def test_a_pickle_named_weights_safetensors_is_not_run(tmp_path, default_bundle):
    from engine.model_bundle import CARD, WEIGHTS, load_bundle
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(default_bundle.path / CARD, folder / CARD)
    pickled_boom(folder / WEIGHTS, tmp_path / "ran")
    with pytest.raises(ModelBundleError, match="not a safetensors file") as err:
        load_bundle(folder).build_network()
    assert err.value.path == str(folder / WEIGHTS) and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("card, reason", [
    ("[1, 2]", "not a JSON object"),
    ('{"name": "x", "version": "1", "input": {}}', "card lacks 'architecture'"),
    ('{"name": "x", "version": "1", "input": {}, "architecture": 3}', "'architecture' is not a JSON object"),
    ('{"name": "x", "version": "1", "input": {}, "architecture": {}, "format": "1"}', "not a number"),
    ("{not json", "unreadable card"),
])
def test_bad_cards_give_a_clear_error(tmp_path, card, reason):
    from engine.model_bundle import CARD, WEIGHTS, load_bundle
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / CARD).write_text(card)
    (folder / WEIGHTS).write_bytes(b"")
    with pytest.raises(ModelBundleError, match=reason) as err:
        load_bundle(folder)
    assert err.value.path == str(folder / CARD)


def test_an_architecture_the_app_cannot_build_is_named(tmp_path, default_bundle):
    from engine.model_bundle import CARD, load_bundle
    folder = bad_bundle(tmp_path, default_bundle, lambda s: None)
    card = json.loads((folder / CARD).read_text())
    card["architecture"]["trunk"] = "no_such_trunk"
    (folder / CARD).write_text(json.dumps(card))
    with pytest.raises(ModelBundleError, match="architecture is not one this app can build") as err:
        load_bundle(folder).build_network()
    assert err.value.path == str(folder / CARD)


def test_pretrained_backbone_file_is_read_weights_only(tmp_path):
    from engine.backbone import imagenet_state_dict
    path = pickled_boom(tmp_path / "backbone.pth", tmp_path / "ran")
    with pytest.raises(ModelBundleError, match="cannot read pretrained weights") as err:
        imagenet_state_dict(path)
    assert err.value.path == str(path) and not (tmp_path / "ran").exists()


# ---- training checkpoints: tensors and plain data only ---------------------------------------

def test_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path):
    from training.checkpoint import REQUIRED, read_checkpoint
    path = pickled_boom(tmp_path / "checkpoint.pt", tmp_path / "ran",
                        wrap=lambda d: {**{k: 0 for k in REQUIRED}, **d})
    with pytest.raises(FileError, match=r"refused: it holds a Python object \(.*\).*could run code"
                       ".*nothing in it was run") as err:
        read_checkpoint(path)
    assert err.value.path == str(path) and not (tmp_path / "ran").exists()


def test_old_pickled_checkpoint_with_numpy_rng_state_is_refused(tmp_path):
    from training.checkpoint import read_checkpoint
    path = tmp_path / "old.pt"
    torch.save({"rng": {"numpy": np.random.get_state()}}, path)  # the format before this one
    with pytest.raises(FileError, match="refused: it holds a Python object"):
        read_checkpoint(path)


@pytest.mark.parametrize("content, reason", [
    (b"", "cannot read checkpoint"),
    (b"\x80\x02garbage", "refused: not a checkpoint of tensors and plain data, or damaged"),
    (b"PK\x03\x04 not really a zip", "cannot read checkpoint"),
    (None, "lacks model"),
])
def test_damaged_or_foreign_checkpoints_give_a_clear_error(tmp_path, content, reason):
    from training.checkpoint import read_checkpoint
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(FileError, match=reason):
        read_checkpoint(path)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    from training.checkpoint import plain, rng_state, set_rng_state
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # a cached Gaussian in both
    path = tmp_path / "rng.pt"
    torch.save({"rng": rng_state(), "history": plain([{"a": np.float64(0.5), "b": np.arange(2)}])},
               path)
    draws = lambda: (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),  # noqa: E731
                     np.random.normal(), torch.rand(3).tolist())
    expected = draws()
    state = torch.load(path, weights_only=True)
    set_rng_state(state["rng"])
    assert draws() == expected
    assert state["history"][0]["a"] == 0.5 and type(state["history"][0]["a"]) is float
