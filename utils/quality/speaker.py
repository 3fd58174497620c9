"""Speaker similarity: cosine similarity of resemblyzer's speaker embeddings (a GE2E speaker encoder trained
apart from XTTS, so a model being trained cannot learn to please it)."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
from collections.abc import Iterator

import numpy as np

from utils.quality.errors import ModelUnavailable

MIN_SPEECH_S = 0.3  # less voiced audio than this left after resemblyzer's silence trimming: no embedding


class SpeakerEncoder:
    """resemblyzer's `VoiceEncoder` (weights shipped in the package), loaded once by `load()`. `threads`: torch's
    CPU threads for an embedding, set on the calling thread for the call (torch's OpenMP keeps the count per
    thread): the dataset gate embeds on one thread beside Whisper, where two threads that wait for each other
    on a busy CPU cost several times the CPU time. None: torch's default."""

    def __init__(self, device: str = "cpu", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads
        self._encoder = None

    def load(self):
        """Load the encoder now; raises `ModelUnavailable` when resemblyzer (or webrtcvad) is missing."""
        if self._encoder is None:
            if importlib.util.find_spec("resemblyzer") is None or importlib.util.find_spec("webrtcvad") is None:
                raise ModelUnavailable("The speaker encoder resemblyzer (with webrtcvad) is not installed: run make "
                                       "setup.")
            with warnings.catch_warnings():  # resemblyzer imports scipy.ndimage.morphology, deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder

            self._encoder = VoiceEncoder(device=self.device, verbose=False)
        return self._encoder

    def embed(self, audio: np.ndarray) -> np.ndarray | None:
        """The L2-normed embedding of `audio` (mono float32, 16 kHz), or None when too little speech is left
        once resemblyzer has trimmed its silences."""
        encoder = self.load()
        from resemblyzer import preprocess_wav

        if not len(audio) or not np.any(audio):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            wav = preprocess_wav(audio.astype(np.float32), source_sr=None)
        if len(wav) < MIN_SPEECH_S * 16000 or not np.all(np.isfinite(wav)):
            return None
        with _torch_threads(self.threads):
            return np.asarray(encoder.embed_utterance(wav.astype(np.float32)), dtype=np.float32)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count `threads` on this thread while inside (None: unchanged)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity of two embeddings, in [-1, 1] (resemblyzer's embeddings are non-negative: [0, 1]);
    None when either is all zeros."""
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norms if norms > 0 and math.isfinite(norms) else None
