"""`lookalike train` makes a bundle the library then uses; `lookalike eval` prints metrics."""
import csv
import json

from desktop_app.cli import main
from imagegen import labeled_folder, photo, save_jpeg


def test_train_then_scan_with_the_trained_model(tmp_path, capsys):
    data = labeled_folder(tmp_path / "labeled", classes=6, per_class=4, size=(96, 72))
    (data / "notes.txt").write_text("not a photo")
    library = tmp_path / "lib"
    code = main(["--library", str(library), "--device", "cpu", "train", str(data), "--epochs", "1",
                 "--steps-per-epoch", "2", "--image-size", "64", "--n-classes", "3", "--dim", "32",
                 "--workers", "0", "--out", "mine"])
    out = capsys.readouterr().out
    assert code == 0
    assert "semantic/recall@1" in out and "exported to" in out
    card = json.loads((library / "models" / "mine" / "card.json").read_text())
    assert card["heads"]["semantic"] == {"dim": 32, "trained": True}
    assert card["recipe"]["loss"] == "npair+angular" and card["recipe"]["image_size"] == 64
    assert set(card["thresholds"]) == {"copy", "semantic"}

    photos = tmp_path / "photos"
    for seed in range(3):
        save_jpeg(photo(seed), photos / f"{seed}.jpg")
    assert main(["--library", str(library), "--model", "mine", "--device", "cpu", "scan", str(photos)]) == 0
    capsys.readouterr()
    assert main(["--library", str(library), "--model", "mine", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"].startswith("mine@") and info["embedded"] == {"copy": 3, "semantic": 3}


def test_eval_prints_the_metric_tables(tmp_path, capsys):
    dataset = tmp_path / "caltech"
    rows = []
    for c in range(4):
        for i in range(5):
            save_jpeg(photo(100 * c + i), dataset / f"class{c}" / f"image_{i:04d}.jpg")
        rows.append({"class": f"class{c}", "split": "test" if c < 3 else "train", "images": 5})
    with open(dataset / "split.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["class", "split", "images"])
        writer.writeheader()
        writer.writerows(rows)
    code = main(["--library", str(tmp_path / "lib"), "--device", "cpu", "eval", str(dataset),
                 "--queries", "6", "--distractors", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "MAP@R" in out or "map@r" in out
    assert "micro-AP" in out


def test_train_from_feedback_without_decisions_is_a_one_line_error(tmp_path, capsys):
    code = main(["--library", str(tmp_path / "lib"), "--device", "cpu", "train", "--from-feedback"])
    out, err = capsys.readouterr()
    assert code != 0 and "not enough decisions" in err and "Traceback" not in err


def test_train_from_feedback_prints_before_and_after(tmp_path, capsys, monkeypatch):
    import training.feedback_train as ft

    seen = {}

    def fake(lib, config, progress):
        seen["config"] = config
        side = {"heldout_ap": 0.5, "heldout_false_positives": 4, "benchmark_micro_ap": 0.9,
                "benchmark_recall@1": 0.95}
        return ft.FeedbackResult("m-personal-1", None, False, "not activated: no better", side,
                                 {**side, "heldout_ap": 0.45}, {"train_pairs": 7, "held_pairs": 3}, seconds=2)

    monkeypatch.setattr(ft, "train_from_feedback", fake)
    code = main(["--library", str(tmp_path / "lib"), "--device", "cpu", "train", "--from-feedback",
                 "--feedback-steps", "12", "--out", "mine"])
    out = capsys.readouterr().out
    assert code == 0 and seen["config"].steps == 12 and seen["config"].name == "mine"
    assert "held-out decisions: pair AP" in out and "0.500      0.450" in out
    assert "7 training pairs, 3 held out" in out and "Not activated: no better" in out
