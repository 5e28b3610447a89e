"""The one bridge between the Qt window and the engine/training code.

Widgets never import torch, faiss or sqlite3: they ask a ``Services`` object to start a
job, and each job is a ``Job`` (QObject) with a fixed set of signals — ``started``,
``progress(done, total, what)`` (throttled by a QTimer on the GUI thread, dupeGuru-style),
``finished(result)`` and ``failed(message)``. The engine's progress callback only stores
the latest numbers and says whether to go on, so cancelling is one flag.

Library jobs run one at a time on their own thread pool (the catalog and index are shared);
thumbnails load on a separate pool with several threads, as ``QImage`` (never ``QPixmap``
off the GUI thread).
"""
from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal, Slot
from PySide6.QtGui import QImage

from engine.errors import Cancelled, LookalikeError
from engine.library import Library
from engine.personal_thresholds import PersonalThresholds, calibrate_personal, load_personal, save_personal
from engine.thumbnails import ThumbnailCache
from engine.review import check_removal
from engine.trash import Trash, TrashError, is_inside

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_MS = 100


class Job(QObject):
    """One piece of background work. Create on the GUI thread, start with ``Services.run``."""

    started = Signal()
    progress = Signal(int, int, str)
    events = Signal(list)          # structured updates (e.g. training loss), batched per tick
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, work: Callable[["Job"], Any], name: str = "job"):
        super().__init__()
        self.name = name
        self._work = work
        self._cancel = threading.Event()
        self._latest: tuple[int, int, str] | None = None
        self._events: list = []
        self._events_lock = threading.Lock()
        self._sent: tuple[int, int, str] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(PROGRESS_INTERVAL_MS)
        self._timer.timeout.connect(self._flush_progress)
        self.finished.connect(self._stop_timer)
        self.failed.connect(self._stop_timer)
        self.done = False

    # called from the worker thread -------------------------------------------------------
    def report(self, done: int, total: int, what: str) -> bool:
        """The engine's progress callback: remember the numbers, say whether to go on."""
        self._latest = (int(done), int(total), str(what))
        return not self._cancel.is_set()

    def post_event(self, item) -> None:
        """Queue a structured update for the GUI (delivered on the next timer tick)."""
        with self._events_lock:
            self._events.append(item)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def execute(self) -> None:
        try:
            result = self._work(self)
        except Cancelled:
            result = None
        except LookalikeError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # a bug: show it, keep the app alive, log the traceback
            log.error("%s failed:\n%s", self.name, traceback.format_exc())
            self.failed.emit(f"{self.name} failed unexpectedly: {exc!r}")
            return
        self.finished.emit(result)

    # GUI thread --------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def _start_timer(self) -> None:
        self._timer.start()
        self.started.emit()

    @Slot()
    def _flush_progress(self) -> None:
        latest = self._latest
        if latest is not None and latest != self._sent:
            self._sent = latest
            self.progress.emit(*latest)
        with self._events_lock:
            events, self._events = self._events, []
        if events:
            self.events.emit(events)

    def _stop_timer(self, *_) -> None:
        self.done = True
        self._timer.stop()
        self._flush_progress()


class _Runner(QRunnable):
    def __init__(self, job: Job):
        super().__init__()
        self.job = job
        self.setAutoDelete(True)

    def run(self) -> None:
        self.job.execute()


class ThumbnailLoader(QObject):
    """Loads thumbnails off the GUI thread; ``loaded(key, QImage)`` or ``missing(key, reason)``."""

    loaded = Signal(object, QImage)
    missing = Signal(object, str)

    def __init__(self, cache: ThumbnailCache, threads: int = 3):
        super().__init__()
        self.cache = cache
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)
        self._pending: set = set()
        self._generation = 0
        self._lock = threading.Lock()

    def request(self, key, path: str, content_hash: str | None, max_side: int | None = None) -> None:
        """Load a thumbnail; with ``max_side`` it is also scaled down to fit, in the worker
        thread, so the GUI thread only wraps it in a QPixmap."""
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        generation = self._generation
        self.pool.start(_Call(lambda: self._load(key, path, content_hash, generation, max_side)))

    def cancel_pending(self) -> None:
        """Drop queued loads (e.g. when the model is reset); running ones finish unseen."""
        self.pool.clear()
        with self._lock:
            self._pending.clear()
            self._generation += 1

    def _load(self, key, path: str, content_hash: str | None, generation: int,
              max_side: int | None = None) -> None:
        try:
            image = to_qimage(self.cache.get(path, content_hash))
            if max_side and (image.width() > max_side or image.height() > max_side):
                image = image.scaled(max_side, max_side, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
        except LookalikeError as exc:
            self._done(key, generation, None, str(exc))
            return
        self._done(key, generation, image, "")

    def _done(self, key, generation: int, image: QImage | None, reason: str) -> None:
        with self._lock:
            self._pending.discard(key)
            if generation != self._generation:
                return
        if image is None:
            self.missing.emit(key, reason)
        else:
            self.loaded.emit(key, image)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], None]):
        super().__init__()
        self.fn = fn
        self.setAutoDelete(True)

    def run(self) -> None:
        self.fn()


def to_qimage(pil_image) -> QImage:
    """PIL RGB image → QImage that owns its pixels (safe to send across threads)."""
    rgb = pil_image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    image = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return image.copy()


def load_full_image(path: str, max_side: int = 4096) -> QImage:
    """A photo for the preview pane, EXIF-rotated (call from a job, not the GUI thread)."""
    from engine.decode import read_photo

    return to_qimage(read_photo(path, max_side // 2).image)


@dataclass
class Services:
    """Engine objects built once at start-up and handed to the window and its views."""

    library: Library
    thumbnails: ThumbnailCache
    trash: Trash
    threshold_overrides: dict = field(default_factory=dict)   # {"near": x, "similar": y} from Settings
    use_learned_thresholds: bool = False   # Settings: thresholds learned from the user's decisions

    def __post_init__(self):
        self.library_pool = QThreadPool()
        self.library_pool.setMaxThreadCount(1)   # one library job at a time
        self.side_pool = QThreadPool()            # previews, training: independent of the catalog
        self.side_pool.setMaxThreadCount(2)
        self.loader = ThumbnailLoader(self.thumbnails)
        self.jobs: list[Job] = []
        self._personal: tuple[str, PersonalThresholds | None] | None = None   # (model id, learned)

    @classmethod
    def open(cls, library_dir: str | Path | None = None, model: str | None = None,
             device: str = "auto", trash_dir: Path | None = None,
             thumbnail_bytes: int = 512 * 1024**2) -> "Services":
        library = Library(library_dir, model=model, device=device)
        thumbs = ThumbnailCache(library.folder / "thumbnails", max_bytes=thumbnail_bytes)
        trash = Trash(library.folder / "trash-journal.jsonl", trash_dir=trash_dir)
        return cls(library, thumbs, trash)

    def run(self, work: Callable[[Job], Any], name: str, *, library: bool = True) -> Job:
        """Start ``work(job)`` in the background; connect to the job's signals right away
        (they are delivered through the GUI thread's event loop, after this returns)."""
        job = Job(work, name)
        self.jobs = [j for j in self.jobs if not j.done] + [job]
        job._start_timer()
        pool = self.library_pool if library else self.side_pool
        # start from the event loop, so the caller has connected to the signals by then
        QTimer.singleShot(0, job, lambda: pool.start(_Runner(job)))
        return job

    def wait(self, msecs: int = 30000) -> bool:
        """Wait for background work (for shutdown and tests)."""
        return self.library_pool.waitForDone(msecs) and self.side_pool.waitForDone(msecs)

    def close(self) -> None:
        for job in self.jobs:
            job.cancel()
        self.loader.cancel_pending()
        self.wait()
        self.loader.pool.waitForDone(10000)
        self.library.close()

    # ---- jobs the views start (the views never touch engine objects themselves) ------------
    def scan(self, roots: list[str] | None = None) -> Job:
        """Scan ``roots`` (default: every folder of the library); result: ScanReport."""
        return self.run(lambda job: self.library.scan(roots or self.library.folders(), job.report), "scan")

    def folders(self) -> Job:
        return self.run(lambda job: self.library.folders(), "folders")

    def add_folder(self, path: str) -> Job:
        return self.run(lambda job: self.library.add_folder(path), "add folder")

    def remove_folder(self, path: str) -> Job:
        return self.run(lambda job: self.library.remove_folder(path), "remove folder")

    def files(self) -> Job:
        """All catalogued photos (FileRecord list, ordered by id)."""
        return self.run(lambda job: self.library.catalog.files(), "list photos")

    def info(self) -> Job:
        return self.run(lambda job: self.library.info(), "library info")

    def duplicates(self, level: str, threshold: float | None = None) -> Job:
        if threshold is None:
            threshold = self.thresholds().get(level)
        return self.run(lambda job: self.library.duplicates(level, threshold), f"{level} groups")

    def calibrated_thresholds(self) -> dict[str, float]:
        """The model card's calibrated thresholds (cheap: read from the loaded card)."""
        bundle = self.library.bundle
        return {"near": bundle.threshold("copy", "near"), "similar": bundle.threshold("semantic", "similar")}

    def thresholds(self) -> dict[str, float]:
        """Thresholds in use: the user's settings where given, else the ones learned from their
        decisions (when turned on and learned for the model in use), else the model card's."""
        learned = self.learned_thresholds() if self.use_learned_thresholds else {}
        return {**self.calibrated_thresholds(), **learned, **self.threshold_overrides}

    def personal_thresholds(self) -> PersonalThresholds | None:
        """What was learned from the decisions for the model in use, or None; read from the
        library folder once per model."""
        model_id = self.library.model_id
        if self._personal is None or self._personal[0] != model_id:
            self._personal = (model_id, load_personal(self.library.folder, model_id))
        return self._personal[1]

    def learned_thresholds(self) -> dict[str, float]:
        """{level: threshold} learned for the model in use (levels with too few decisions left out)."""
        personal = self.personal_thresholds()
        return personal.learned() if personal is not None else {}

    def recalibrate_thresholds(self, target_precision: float) -> Job:
        """Learn the thresholds from the decisions at ``target_precision`` and save them;
        result: PersonalThresholds."""
        def work(job: Job):
            result = calibrate_personal(self.library, target_precision, job.report)
            save_personal(self.library.folder, result)
            self._personal = (result.model_id, result)
            return result
        return self.run(work, "learn thresholds")

    def similar(self, path: str, k: int = 24) -> Job:
        return self.run(lambda job: self.library.similar(path, k), "find similar")

    def dismiss(self, group, kind: str = "not-duplicate", threshold: float | None = None) -> Job:
        """Dismiss ``group`` as "not-duplicate", or "similar-not-near" (hidden at the near
        level only); either is kept as a decision to learn from."""
        return self.run(lambda job: self.library.dismiss(group, kind, threshold), "not a duplicate")

    def feedback_counts(self) -> dict[str, int]:
        """Review decisions so far, by kind (cheap: one catalog query)."""
        return self.library.feedback.counts()

    def improve_from_feedback(self, steps: int = 200) -> Job:
        """Fine-tune the active model on the review decisions; if the new model is better on
        held-out decisions (and not worse on the built-in benchmark), the library switches
        to it and is re-embedded in the same job. Result: FeedbackResult."""
        from training.feedback_train import FeedbackConfig, train_from_feedback

        def work(job: Job):
            result = train_from_feedback(self.library, FeedbackConfig(steps=steps), job.report)
            if result.activated and self.library.folders():
                self.library.scan(self.library.folders(), job.report)
            return result
        return self.run(work, "improve from my decisions")

    def learn_keeper(self) -> Job:
        """Learn which copy the person keeps from their same-photo decisions and use it for the
        next groups' keepers; result: KeeperPreference (``fitted``, ``decisions``, ``accuracy``)."""
        return self.run(lambda job: self.library.learn_keeper(), "learn keeper preference")

    def move_to_trash(self, files: list, groups: list) -> Job:
        """Move catalogued files (FileRecords, as reviewed) to the trash or the removal folder
        and forget them; result: records.

        Refused before anything moves when a group of ``groups`` would lose its last copy
        (``LastCopyError``) or a file changed since it was reviewed (``TrashError``).
        """
        def work(job: Job):
            check_removal(groups, [f.path for f in files])
            self._check_removal_folder()
            # the person kept the rest of each group: a "same photo" decision to learn from
            self.library.record_removal(groups, [f.path for f in files], self.thresholds())
            try:
                records = self.trash.remove([f.path for f in files], reviewed=files)
            except TrashError as exc:
                # files moved before the one that failed are in the trash: forget those too
                self.library.forget([r.original for r in exc.moved])
                raise
            self.library.forget([r.original for r in records])
            return records
        return self.run(work, "move to trash")

    def set_removal_folder(self, folder: str | Path | None) -> None:
        """Send removals to ``folder`` instead of the system trash (None: the trash again).
        Earlier removals stay undoable either way (one journal)."""
        self._system_trash = getattr(self, "_system_trash", self.trash)
        if folder is None:
            self.trash = self._system_trash
        else:
            self.trash = Trash(self._system_trash.journal_path, trash_dir=Path(folder), backend="folder")

    def removal_folder(self) -> Path | None:
        return self.trash.home if self.trash.backend == "folder" else None

    def _check_removal_folder(self) -> None:
        folder = self.removal_folder()
        for root in self.library.folders() if folder is not None else []:
            if is_inside(folder, root):
                raise LookalikeError(f"{folder}: the removal folder is inside the photo folder {root}, "
                                     "so the next scan would find the removed photos again; "
                                     "choose a folder outside your photo folders")

    def undo_last_removal(self) -> Job:
        """Put the last removed batch back and re-add it to the library; result: paths."""
        def work(job: Job):
            restored = self.trash.undo_last()
            if restored:
                self.library.scan(restored, job.report)
            return restored
        return self.run(work, "undo removal")

    def trim_thumbnails(self) -> Job:
        """Keep the thumbnail cache within its size limit (oldest thumbnails go first)."""
        return self.run(lambda job: self.thumbnails.trim(), "trim thumbnails", library=False)

    def can_undo(self) -> bool:
        return bool(self.trash.last_batch())

    def preview(self, path: str) -> Job:
        """A full-size, EXIF-rotated QImage of a photo (runs beside library jobs)."""
        return self.run(lambda job: load_full_image(path), "preview", library=False)

    def explain(self, first: str, second: str) -> Job:
        """How ``second`` (B) differs from ``first`` (A); result: (sentence, heat map), the
        heat map an H×W uint8 numpy array of the aligned difference in A's frame, or None
        when the photos could not be aligned."""
        def work(job: Job):
            from engine.decode import read_photo
            from engine.explain import describe, explain_pair   # imports OpenCV: only when asked

            a, b = read_photo(first, 1024), read_photo(second, 1024)
            estimate = explain_pair(a.image, b.image)
            return describe(estimate, a, b), estimate.difference
        return self.run(work, "explain match", library=False)

    def inspect_labeled_folder(self, path: str) -> Job:
        """Classes and image counts of a labeled folder; result: LabeledFolder."""
        from training.datasets import load_labeled_folder

        return self.run(lambda job: load_labeled_folder(path), "read labeled folder", library=False)

    def train(self, settings: dict) -> Job:
        """Fine-tune with ``settings`` (TrainConfig fields: data, recipe, epochs, device, name,
        image_size, ...); events carry {"type": "step"|"validation", ...}; result:
        TrainResult (``.bundle`` is the exported bundle folder in the library's models/)."""
        models = self.library.folder / "models"
        name = settings.get("name", "my-model")
        run_dir = str(self.library.folder / "runs" / name)

        def work(job: Job):
            from training.config import TrainConfig   # imports torch: keep it off the GUI thread
            from training.loop import train

            config = TrainConfig.from_dict({"out": run_dir, **settings, "name": name})
            return train(config, job.report, export_to=models / config.name, events=job.post_event)
        return self.run(work, "fine-tune", library=False)

    def available_models(self) -> list[str]:
        from engine.model_bundle import BUILTIN_MODELS, CARD

        names = set()
        for folder in (BUILTIN_MODELS, self.library.folder / "models"):
            if folder.is_dir():
                names |= {p.name for p in folder.iterdir() if (p / CARD).is_file()}
        return sorted(names)

    def model_description(self, name: str) -> str:
        """The card's description of bundle ``name``, with what averaging over turns costs ('' when
        the bundle cannot be read)."""
        from engine.errors import ModelBundleError
        from engine.model_bundle import load_bundle

        try:
            bundle = load_bundle(name, (self.library.folder / "models",))
            turns = bundle.network_config.head_turns("copy")
        except (ModelBundleError, KeyError, TypeError, ValueError):
            return ""
        text = str(bundle.card.get("description") or "")
        if turns > 1:  # what choosing it costs, so v2 vs v3 is an informed choice
            text += (f" — {turns} passes of the network per photo for near-duplicates: finds turned "
                     f"copies, and a first scan on a CPU takes about {turns} times as long")
        return text

    def activate_model(self, name: str, device: str = "auto") -> Job:
        """Switch the library to another model and re-embed it in the background."""
        def work(job: Job):
            new = Library(self.library.folder, model=name, device=device)
            new.set_active_model(name)  # the command line and the next start use it too
            report = new.scan(new.folders(), job.report) if new.folders() else None
            old, self.library = self.library, new
            old.close()
            return report
        return self.run(work, "activate model")
