"""Find-similar, fine-tune and settings views, driven through real Services (offscreen)."""
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent

from desktop_app.views.finetune_view import FineTuneView
from desktop_app.views.plot_widget import PlotWidget
from desktop_app.views.settings_dialog import SettingsDialog
from desktop_app.views.similar_view import SimilarView
from imagegen import decision_photos, labeled_folder, photo, save_jpeg


def scan(qtbot, services, folder):
    job = services.scan([str(folder)])
    with qtbot.waitSignal(job.finished, timeout=60000):
        pass


def drop(widget, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    widget.dropEvent(event)
    return event


# ---- SimilarView ---------------------------------------------------------------------------
def test_search_shows_the_exact_copy_first_and_opens_a_preview(qtbot, services, photo_folder):
    scan(qtbot, services, photo_folder)
    view = SimilarView(services)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.resultsShown, timeout=30000) as shown:
        view.search(str(photo_folder / "beach.jpg"))
    assert shown.args == [4] and view.results.count() == 4   # the other photos, the query left out
    first = view.matches[0]
    assert first.file.path.endswith("beach copy.jpg") and first.similarity == pytest.approx(1.0)
    assert view.results.item(0).text().startswith("1.000")
    assert view.matches[1].file.path.endswith("beach-small.jpg")
    qtbot.waitUntil(lambda: not view.results.item(0).icon().isNull(), timeout=10000)
    qtbot.waitUntil(lambda: view.query_image.pixmap() is not None and not view.query_image.pixmap().isNull(),
                    timeout=10000)
    with qtbot.waitSignal(view.previewRequested) as requested:
        view.results.setCurrentRow(0)
    assert requested.args == [first.file.path]
    assert view.preview_path.text() == first.file.path and not view.preview_image.pixmap().isNull()


def test_dropping_an_image_from_outside_the_library_searches(qtbot, services, photo_folder, tmp_path):
    scan(qtbot, services, photo_folder)
    outside = save_jpeg(photo(1), tmp_path / "elsewhere" / "beach again.jpg")
    view = SimilarView(services)
    qtbot.addWidget(view)
    assert drop(view, tmp_path / "notes.txt").isAccepted() is False
    with qtbot.waitSignal(view.resultsShown, timeout=30000):
        assert drop(view, outside).isAccepted()
    assert view.query_path == str(outside)
    assert view.matches[0].similarity == pytest.approx(1.0)
    assert {m.file.path.rsplit("/", 1)[-1] for m in view.matches[:2]} == {"beach.jpg", "beach copy.jpg"}


def test_a_failed_search_shows_an_error_instead_of_crashing(qtbot, services, photo_folder, tmp_path):
    scan(qtbot, services, photo_folder)
    view = SimilarView(services)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.searchFailed, timeout=30000):
        view.search(str(tmp_path / "no such photo.jpg"))
    assert not view.error_label.isHidden() and "no such photo.jpg" in view.error_label.text()
    assert view.results.count() == 0
    with qtbot.waitSignal(view.resultsShown, timeout=30000):   # and the next search works again
        view.search(str(photo_folder / "beach.jpg"))
    assert view.error_label.isHidden()


# ---- PlotWidget ----------------------------------------------------------------------------
def test_plot_scales_to_every_point_and_renders(qtbot):
    plot = PlotWidget("Loss", "step", "loss")
    qtbot.addWidget(plot)
    plot.resize(320, 200)
    assert not plot.grab().isNull()              # empty plot draws too
    for x, y in [(1, 2.5), (2, 1.0), (3, -0.5), (4, float("nan"))]:
        plot.add_point("loss", x, y)
    plot.add_point("other", 10, 7.0)
    assert plot.points("loss") == [(1, 2.5), (2, 1.0), (3, -0.5)]   # NaN skipped
    (x0, x1), (y0, y1) = plot.x_range(), plot.y_range()
    assert x0 <= 1 and x1 >= 10 and y0 <= -0.5 and y1 >= 7.0
    assert plot.grab().size().width() == 320
    plot.clear()
    assert plot.point_count() == 0
    plot.add_point("single", 0, 0.5)             # one point still gives a non-empty range
    (x0, x1), (y0, y1) = plot.x_range(), plot.y_range()
    assert x0 < 0 < x1 and y0 < 0.5 < y1
    assert not plot.grab().isNull()


# ---- FineTuneView --------------------------------------------------------------------------
@pytest.fixture
def labeled(tmp_path):
    root = labeled_folder(tmp_path / "labeled", classes=6, per_class=4, size=(96, 72))
    (root / "notes.txt").write_text("not a photo")
    save_jpeg(photo(3), root / "lonely" / "only.jpg")
    return root


def inspected(qtbot, services, folder) -> FineTuneView:
    view = FineTuneView(services)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.folderInspected, timeout=30000):
        view.inspect(str(folder))
    view.epochs_spin.setValue(1)
    view.device_combo.setCurrentText("cpu")
    view.image_size_spin.setValue(64)
    view.name_edit.setText("tiny")
    view.extra_settings = {"steps_per_epoch": 2, "n_classes": 3, "workers": 0,
                           "model": {"heads": {"copy": 32, "semantic": 32}}}
    return view


def test_inspecting_a_labeled_folder_lists_classes_and_left_out_files(qtbot, services, labeled):
    view = FineTuneView(services)
    qtbot.addWidget(view)
    assert not view.start_button.isEnabled()
    with qtbot.waitSignal(view.folderInspected, timeout=30000):
        view.inspect(str(labeled))
    table = view.class_table
    assert table.rowCount() == 6
    assert [table.item(r, 0).text() for r in range(6)] == [f"class_{i:02d}" for i in range(6)]
    assert all(table.item(r, 1).text() == "4" for r in range(6))
    left_out = [view.left_out.item(i).text() for i in range(view.left_out.count())]
    assert any(t.startswith("notes.txt") for t in left_out) and any(t.startswith("lonely/") for t in left_out)
    assert view.start_button.isEnabled() and not view.cancel_button.isEnabled()


def test_inspecting_a_missing_folder_says_why(qtbot, services, tmp_path):
    view = FineTuneView(services)
    qtbot.addWidget(view)
    view.inspect(str(tmp_path / "nowhere"))
    qtbot.waitUntil(lambda: "Cannot use this folder" in view.status_label.text(), timeout=30000)
    assert not view.start_button.isEnabled()


def test_training_plots_compares_and_activates(qtbot, services, labeled):
    view = inspected(qtbot, services, labeled)
    settings = view.training_settings()
    assert {k: settings[k] for k in ("recipe", "epochs", "device", "name", "image_size")} == \
        {"recipe": "finetune", "epochs": 1, "device": "cpu", "name": "tiny", "image_size": 64}
    with qtbot.waitSignal(view.trainingStopped, timeout=120000) as stopped:
        view.start()
        assert view.cancel_button.isEnabled() and not view.start_button.isEnabled()
    assert stopped.args == ["finished"], view.status_label.text()
    assert view.loss_plot.point_count() == 2                 # two steps
    assert set(view.recall_plot.series_names()) == {"Recall@1 (labels)", "MAP@R (labels)"}
    assert [x for x, _ in view.recall_plot.points("Recall@1 (labels)")] == [0, 1]   # before, after
    metrics = {view.metrics_table.item(r, 0).text(): (view.metrics_table.item(r, 1).text(),
                                                      view.metrics_table.item(r, 2).text())
               for r in range(view.metrics_table.rowCount())}
    assert set(metrics) == {"Recall@1 (labels)", "MAP@R (labels)", "Score"}
    assert all(0 <= float(v) <= 1 for pair in metrics.values() for v in pair)
    assert view.activate_button.isEnabled() and view.start_button.isEnabled()
    assert not view.grab().isNull()                          # plots paint inside the view
    assert "tiny" in services.available_models()
    with qtbot.waitSignal(view.modelActivated, timeout=60000) as activated:
        view.activate()
    assert activated.args == ["tiny"]
    assert services.library.model_id.startswith("tiny@")
    assert services.library.active_model_name() == "tiny"  # the command line uses it too


def test_cancel_returns_to_idle(qtbot, services, labeled):
    view = inspected(qtbot, services, labeled)
    view.extra_settings["steps_per_epoch"] = 50
    with qtbot.waitSignal(view.trainingStopped, timeout=120000) as stopped:
        view.start()
        view.cancel_button.click()
        assert not view.cancel_button.isEnabled()
    assert stopped.args == ["cancelled"]
    assert view.result is None or view.result.cancelled
    assert view.loss_plot.point_count() <= 1
    assert view.start_button.isEnabled() and not view.cancel_button.isEnabled()
    assert not view.activate_button.isEnabled() and "cancelled" in view.status_label.text()


# ---- SettingsDialog ------------------------------------------------------------------------
@pytest.fixture
def ini_settings(tmp_path):
    settings = QSettings(str(tmp_path / "lookalike.ini"), QSettings.Format.IniFormat)
    yield settings
    settings.clear()


def test_settings_prefill_round_trip_and_reset(qtbot, services, ini_settings, tmp_path):
    calibrated = services.thresholds()
    dialog = SettingsDialog(services, ini_settings)
    qtbot.addWidget(dialog)
    first = dialog.values()
    assert first["thresholds/near"] == pytest.approx(calibrated["near"], abs=1e-3)
    assert first["thresholds/similar"] == pytest.approx(calibrated["similar"], abs=1e-3)
    assert first["model/device"] == "auto" and first["thumbnails/max_mb"] == 512
    assert dialog.model_combo.count() == 1 + len(services.available_models())
    # each model says what it is; the default's copy head is averaged over turns and says what that costs
    from PySide6.QtCore import Qt
    tips = {dialog.model_combo.itemData(i): dialog.model_combo.itemData(i, Qt.ItemDataRole.ToolTipRole)
            for i in range(1, dialog.model_combo.count())}
    assert "4 passes" in tips["lookalike-angular-v3"] and "passes" not in tips["lookalike-angular-v2"]
    assert services.model_description("no-such-model") == ""

    dialog.folder_edit.setText(str(tmp_path / "elsewhere"))
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cuda"))
    dialog.near_spin.setValue(0.91)
    dialog.similar_spin.setValue(0.42)
    dialog.model_combo.setCurrentIndex(0)
    dialog.cache_spin.setValue(2048)
    dialog.removal_edit.setText(str(tmp_path / "removed"))
    dialog.accept()
    expected = {"library/folder": str(tmp_path / "elsewhere"), "model/device": "cuda",
                "thresholds/near": 0.91, "thresholds/similar": 0.42, "model/name": "",
                "thumbnails/max_mb": 2048, "removal/folder": str(tmp_path / "removed"),
                "thresholds/use_learned": False, "thresholds/learn_precision": 0.95}
    assert dialog.values() == expected

    reread = QSettings(str(tmp_path / "lookalike.ini"), QSettings.Format.IniFormat)
    assert reread.value("model/device") == "cuda" and reread.value("thresholds/near", type=float) == 0.91
    again = SettingsDialog(services, reread)
    qtbot.addWidget(again)
    assert again.values() == expected
    again.reset_button.click()
    assert again.values()["thresholds/near"] == pytest.approx(calibrated["near"], abs=1e-3)
    again.reject()                                  # Cancel keeps what was saved
    assert reread.value("thresholds/near", type=float) == 0.91


# ---- Settings: thresholds learned from the decisions ----------------------------------------
def record_decisions(qtbot, services, folder):
    """Three copies of one photo with one kept (3 same-photo pairs), three different photos
    dismissed together (3 not-duplicate pairs)."""
    from engine.library import DuplicateGroup, Member

    decision_photos(folder)
    scan(qtbot, services, folder)
    lib = services.library
    files = sorted(lib.catalog.files(), key=lambda f: f.path)      # a grainy, a small, a, other 6-8

    def group(members):
        return DuplicateGroup("near", [Member(f, 1.0) for f in members], members[0], "test")
    copies = group([files[2], files[1], files[0]])
    assert lib.record_removal([copies], [files[0].path, files[1].path]) == 1
    lib.dismiss(group(files[3:]))


def test_settings_learn_thresholds_and_use_them(qtbot, services, ini_settings, tmp_path):
    from desktop_app.app import apply_thresholds

    record_decisions(qtbot, services, tmp_path / "decided")
    card = services.calibrated_thresholds()
    dialog = SettingsDialog(services, ini_settings)
    qtbot.addWidget(dialog)
    group = dialog.learn_group
    assert "Nothing learned" in group.status_label.text() and group.plot.point_count() == 0
    assert group.precision_spin.value() == pytest.approx(0.95) and not group.use_check.isChecked()

    group.precision_spin.setValue(0.9)
    with qtbot.waitSignal(group.learned, timeout=60000) as learned:
        group.recalibrate_button.click()
    result = learned.args[0]
    near, similar = result.levels["near"].threshold, result.levels["similar"].threshold
    assert result.target_precision == 0.9 and near is not None and similar is not None
    status = group.status_label.text()
    assert "Near-duplicates: 6 decisions (3 same, 3 not)" in status and f"learned {near:.3f}" in status
    assert f"card {card['near']:.3f}" in status and "Similar: 6 decisions" in status
    assert group.plot.series_names() == ["Near-duplicates", "Similar"] and group.recalibrate_button.isEnabled()
    assert services.thresholds() == card                   # learned, not used yet

    group.use_check.setChecked(True)                       # the boxes follow the learned values
    assert dialog.near_spin.value() == pytest.approx(near, abs=1e-3)
    dialog.accept()
    assert ini_settings.value("thresholds/use_learned", type=bool) is True
    assert not ini_settings.contains("thresholds/near")    # not set by hand: nothing overrides
    apply_thresholds(services, ini_settings)
    assert services.thresholds() == {"near": near, "similar": similar}

    again = SettingsDialog(services, ini_settings)         # what was learned is shown again
    qtbot.addWidget(again)
    assert again.learn_group.use_check.isChecked() and "learned" in again.learn_group.status_label.text()
    assert again.learn_group.plot.point_count() == group.plot.point_count()
    again.near_spin.setValue(0.5)                          # set by hand: wins over the learned one
    again.accept()
    apply_thresholds(services, ini_settings)
    assert services.thresholds() == {"near": 0.5, "similar": similar}
    again.learn_group.use_check.setChecked(False)
    again.accept()
    apply_thresholds(services, ini_settings)
    assert services.thresholds() == {"near": 0.5, "similar": card["similar"]}
