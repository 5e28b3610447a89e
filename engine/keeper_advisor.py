"""The library's keeper choice: the preference learned from this person's decisions when one
is fitted and saved, the rules of ``engine.keeper`` otherwise.

The rules also decide when the learned preference cannot tell the best copies apart (exact
copies in one folder, say); a file that cannot be read now counts with the group's mean
quality and sharpness. Features are measured once per (path, size, mtime) and kept in
memory, so regrouping at another threshold stays fast; sharpness (which decodes the photo)
is measured only when the learned weights use it.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from engine.errors import LookalikeError
from engine.keeper import Candidate, choose_keeper
from engine.keeper_features import photo_features
from engine.keeper_model import KeeperPreference

log = logging.getLogger(__name__)


class KeeperAdvisor:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._preference: KeeperPreference | None = None
        self._loaded = False
        self._features: dict[tuple, dict] = {}   # (path, size, mtime_ns) → keeper features
        self._lock = threading.Lock()

    @property
    def preference(self) -> KeeperPreference | None:
        """The saved preference when fitted (read once), else None."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                try:
                    self._preference = KeeperPreference.load(self.path)
                except LookalikeError as exc:
                    log.warning("choosing keepers by the rules: %s", exc)
            pref = self._preference
        return pref if pref is not None and pref.fitted else None

    def learn(self, reviews) -> KeeperPreference:
        """Fit from same-photo ``reviews``, save it and use it from now on (when fitted)."""
        pref = KeeperPreference.fit(reviews)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pref.save(self.path)
        with self._lock:
            self._preference, self._loaded = pref, True
            self._features = {}   # sharpness may be needed now
        return pref

    def choose(self, files: Sequence, candidates: Sequence[Candidate]) -> tuple[int, str]:
        """(id of the file to keep, why) among ``files`` (``FileRecord``s; ``candidates`` are
        the same files for the rules)."""
        pref = self.preference
        if pref is not None and len(files) > 1:
            # unreadable pixels leave quality and sharpness None: the group's mean stands in
            picked = pref.suggest([self._measure(f, pref.uses("sharpness")) for f in files])
            if picked is not None:
                return files[picked[0]].id, picked[1]
        return choose_keeper(candidates)

    def _measure(self, record, sharpness: bool) -> dict:
        key = (record.path, record.size, record.mtime_ns)
        features = self._features.get(key)
        if features is None:
            features = photo_features(record, measure_sharpness=sharpness)
            self._features[key] = features
        return features
