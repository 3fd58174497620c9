"""Scoring on the Test tab: one Scorer (utils/quality) per WebUI process, loaded on the first request, and the
synthesised speech as the scorer takes it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class ScorerCache:
    """The Scorer of the last Whisper model asked for, loaded once (Whisper, the speaker encoder, DNSMOS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._scorer: Any = None
        self.loads = 0  # how many times the models were loaded (once per process, unless the model changes)

    def get(self, whisper_model: str | None = None):
        """The loaded Scorer for `whisper_model` (None or blank: the default); raises `ModelUnavailable`."""
        from utils.quality.scorer import Scorer

        key = (whisper_model or "").strip()
        with self._lock:
            if self._scorer is None or key != self._key:
                self._scorer, self._key = None, None  # free the old models before loading others
                self._scorer, self._key = Scorer(key or None).load(), key
                self.loads += 1
            return self._scorer


def as_samples(audio: Any) -> tuple[np.ndarray, int]:
    """Gradio's numpy audio, (rate, samples) with integer or float samples, as (float32 samples in [-1, 1],
    rate) for the scorer; ValueError for anything else."""
    if not isinstance(audio, tuple | list) or len(audio) != 2:
        raise ValueError("No speech to score: synthesise a sentence first.")
    rate, samples = audio
    samples = np.asarray(samples)
    if not isinstance(rate, int | np.integer) or rate <= 0 or samples.size == 0:
        raise ValueError("No speech to score: synthesise a sentence first.")
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    return samples.astype(np.float32, copy=False), int(rate)
