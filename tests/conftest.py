"""Session fixtures: a tiny XTTS-v2 base folder and a small dataset, built offline once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from utils import testbed  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A base model folder in XTTS-v2's layout (model.pth in the released format); treat it as read-only."""
    return testbed.build_base(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> testbed.TinyDataset:
    """About 10 clips of 3-5 s with train/eval CSVs in coqui's format; treat it as read-only."""
    return testbed.build_dataset(tmp_path_factory.mktemp("tiny_dataset"))
