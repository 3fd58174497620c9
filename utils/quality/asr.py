"""Transcribing a clip with faster-whisper, for the character error rate. The model loads through the one
faster-whisper loader (`utils/whisper.py`, shared with the dataset transcriber): a model folder, or a size
name found in the Hugging Face cache (or downloaded where that is allowed)."""

from __future__ import annotations

import numpy as np

from utils.errors import InvalidValue
from utils.quality.errors import ModelUnavailable
from utils.whisper import WhisperSource, WhisperUnavailable, packaged_tiny_en, torch_threads_kept, whisper_language

FALLBACK_WHISPER_MODEL = "large-v3"


def default_whisper_model() -> str:
    """The packaged tiny.en folder when installed (offline, English only), else 'large-v3'."""
    return packaged_tiny_en() or FALLBACK_WHISPER_MODEL


class WhisperAsr:
    """faster-whisper on one model, loaded once by `load()` (or the first `transcribe`)."""

    def __init__(self, model: str | None = None, *, device: str = "cpu", compute_type: str | None = None,
                 beam_size: int = 5) -> None:
        self.model_name = str(model).strip() if model else default_whisper_model()
        self.device = device
        self.compute_type = compute_type or ("int8" if device == "cpu" else "default")
        self.beam_size = beam_size
        self._model = None

    def source(self) -> WhisperSource:
        """Where the model comes from; raises `ModelUnavailable` for a name that is no size, id or folder."""
        try:
            return WhisperSource(self.model_name, device=self.device, compute_type=self.compute_type)
        except InvalidValue as e:
            raise ModelUnavailable(str(e)) from e

    def model_path(self) -> str:
        """The model folder (from the Hugging Face cache for a size); raises `ModelUnavailable` saying why not."""
        try:
            return self.source().folder()
        except WhisperUnavailable as e:
            raise ModelUnavailable(str(e)) from e

    def load(self):
        """Load the model now; returns faster-whisper's `WhisperModel`."""
        if self._model is None:
            try:
                self._model = self.source().load()
            except WhisperUnavailable as e:
                raise ModelUnavailable(str(e)) from e
        return self._model

    @property
    def multilingual(self) -> bool:
        """Whether the model transcribes other languages than English (tiny.en does not)."""
        return bool(self.load().model.is_multilingual)

    def check_language(self, language: str | None) -> None:
        """Raise `ModelUnavailable` when the model cannot transcribe `language` (an English-only model asked
        for another language would give a meaningless CER)."""
        code = whisper_language(language)
        if code not in (None, "en") and not self.multilingual:
            raise ModelUnavailable(
                f"Whisper model {self.model_name} transcribes English only, not '{language}': pass a multilingual "
                "model as --whisper_model (e.g. large-v3, or a folder holding one).")

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> str:
        """What the model hears in `audio` (mono float32 at 16 kHz), segments joined by spaces; '' for none."""
        self.check_language(language)
        with torch_threads_kept():  # the segments are decoded as they are read
            segments, _info = self.load().transcribe(
                audio, language=whisper_language(language), task="transcribe", beam_size=self.beam_size,
                vad_filter=True, condition_on_previous_text=False)
            return " ".join(s.text.strip() for s in segments if s.text.strip())
