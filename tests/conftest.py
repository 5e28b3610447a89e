"""Shared test set-up: Qt runs headless; tiny photos are made by the tests themselves."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/imagegen.py


@pytest.fixture(scope="session")
def embedder():
    """The built-in default model on the CPU, loaded once for the whole run."""
    from engine.embedding import Embedder

    return Embedder.load(device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def pretrained_embedder():
    """The pretrained bundle (``lite0-imagenet-gem``: both heads the same pooled feature)."""
    from engine.embedding import Embedder
    from engine.model_bundle import load_bundle

    return Embedder(load_bundle("lite0-imagenet-gem"), device="cpu", batch_size=16)
