"""Progress reporting and cancellation as a plain callback (dupeGuru's ``Job`` idea).

Long engine calls take ``progress(done, total, what) -> bool | None``. Returning ``False``
asks the work to stop at the next safe point; anything else (``True``/``None``) goes on.
The GUI turns the callback into a throttled Qt signal, the CLI into a tqdm bar.
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[int, int, str], Optional[bool]]


def null_progress(done: int, total: int, what: str) -> bool:
    """The callback for callers that don't care: never cancels."""
    return True


def wants_stop(progress: ProgressCallback, done: int, total: int, what: str) -> bool:
    """Call ``progress`` and say whether it asked to stop (it returned exactly ``False``)."""
    return progress(done, total, what) is False
