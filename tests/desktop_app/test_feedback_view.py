"""The Learn tab: decision counts, improving the model, learning the keeper preference."""
import pytest

WAIT = 60_000


@pytest.fixture
def view(services, qtbot):
    from desktop_app.views.feedback_view import FeedbackView

    widget = FeedbackView(services)
    qtbot.addWidget(widget)
    return widget


def _scan(qtbot, services, folder):
    with qtbot.waitSignal(services.scan([str(folder)]).finished, timeout=WAIT):
        pass


def test_counts_follow_the_decisions(view, services, qtbot, photo_folder):
    assert "0 groups where you kept one photo" in view.counts_label.text()
    _scan(qtbot, services, photo_folder)
    group = services.library.duplicates("near")[0]
    with qtbot.waitSignal(services.dismiss(group, "similar-not-near").finished, timeout=WAIT):
        pass
    view.refresh()
    assert "1 marked similar but not a copy" in view.counts_label.text()


def test_too_few_decisions_are_explained_not_crashed(view, qtbot):
    view.improve()
    qtbot.waitUntil(lambda: "not enough decisions" in view.status_label.text(), timeout=WAIT)
    assert view.improve_button.isEnabled()
    view.learn_keeper()
    qtbot.waitUntil(lambda: "Not enough decisions yet" in view.keeper_label.text(), timeout=WAIT)


def test_an_activated_model_fills_the_table_and_is_announced(view, qtbot, monkeypatch):
    import training.feedback_train as ft

    side = {"heldout_ap": 0.61, "heldout_false_positives": 5, "benchmark_micro_ap": 0.9,
            "benchmark_recall@1": 0.97, "recall_at_threshold": 0.8}
    result = ft.FeedbackResult("lite0-personal-1", None, True, "activated: better", side,
                               {**side, "heldout_ap": 0.74, "heldout_false_positives": 2}, {})
    steps = []
    monkeypatch.setattr(ft, "train_from_feedback", lambda lib, cfg, progress: steps.append(cfg.steps) or result)
    view.steps_spin.setValue(60)
    with qtbot.waitSignal(view.modelActivated, timeout=WAIT) as activated:
        view.improve()
    assert activated.args == ["lite0-personal-1"] and steps == [60]
    assert view.table.item(0, 0).text() == "0.610" and view.table.item(0, 1).text() == "0.740"
    assert view.table.item(1, 1).text() == "2" and view.status_label.text() == "Activated: better"


def test_cancel_stops_and_changes_nothing(view, qtbot, monkeypatch):
    import training.feedback_train as ft
    from engine.errors import Cancelled

    def slow(lib, cfg, progress):
        while progress(1, 10, "learning from your decisions") is not False:
            pass
        raise Cancelled("stopped")

    monkeypatch.setattr(ft, "train_from_feedback", slow)
    assert not view.cancel_button.isEnabled()
    view.improve()
    assert view.cancel_button.isEnabled() and not view.improve_button.isEnabled()
    view.cancel()
    qtbot.waitUntil(lambda: view.status_label.text() == "Stopped; the model in use is unchanged.", timeout=WAIT)
    assert view.improve_button.isEnabled() and not view.cancel_button.isEnabled() and view.result is None
