"""Speech to timed text, behind a small interface.

`utils/data/clips.py` cuts recordings into clips from a `Transcript`: segments of text with word timestamps.
Anything with a `transcribe(path, language, *, on_progress=None) -> Transcript` method can produce one; the
real one is `FasterWhisperTranscriber` (faster-whisper, CTranslate2 Whisper models). Its model is loaded on the
first call, from a folder or from the Hugging Face cache, and downloaded only where that is possible; when it
is not there, `TranscriberUnavailable` says which model is missing and how to bring it.

Importing this module imports neither faster-whisper nor torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from utils.data.errors import short_reason
from utils.errors import UserInputError

DEFAULT_WHISPER_MODEL = "large-v3"
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)


@dataclass(frozen=True)
class Word:
    """One word with its time span in seconds from the start of the file. `text` keeps Whisper's own spacing
    (a leading space before most words), so joining words with "" gives the sentence back."""

    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its text and, where the transcriber gives them, its words."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """What a transcriber heard in one file: the language (ISO 639-1, as Whisper names it) and the segments."""

    language: str
    segments: list[Segment] = field(default_factory=list)
    duration: float | None = None


ProgressFn = Callable[[float], None]
"""Called with the number of seconds of the file transcribed so far."""


@runtime_checkable
class Transcriber(Protocol):
    """Turns one audio file into a `Transcript`. `language` None means: detect it."""

    def transcribe(self, path: str | Path, language: str | None = None, *, on_progress: ProgressFn | None = None
                   ) -> Transcript: ...


class TranscriberUnavailable(UserInputError, RuntimeError):
    """The transcriber cannot run here (model not available offline, device missing); the message says why."""


def whisper_language(language: str | None) -> str | None:
    """The Whisper code for an XTTS language code: XTTS writes Chinese as 'zh-cn', Whisper as 'zh'."""
    if language is None or not language.strip():
        return None
    return language.strip().lower().split("-")[0]


def xtts_language(whisper_code: str | None) -> str:
    """XTTS's code for a language Whisper detected (Whisper's 'zh' is XTTS's 'zh-cn'); '' for none."""
    code = (whisper_code or "").strip().lower()
    return "zh-cn" if code == "zh" else code


def whisper_model_names() -> list[str]:
    """The model sizes faster-whisper can fetch by name (tiny ... large-v3, turbo)."""
    from faster_whisper import available_models

    return list(available_models())


def convert_segments(segments: Iterable[Any], *, on_progress: ProgressFn | None = None) -> list[Segment]:
    """Our `Segment`s from faster-whisper's `Segment` objects (consumed lazily: faster-whisper decodes while
    the caller iterates, so `on_progress` gets each segment's end time as it arrives)."""
    out = []
    for seg in segments:
        words = tuple(
            Word(start=float(w.start), end=float(w.end), text=str(w.word),
                 probability=None if w.probability is None else float(w.probability))
            for w in (seg.words or ())
        )
        out.append(Segment(start=float(seg.start), end=float(seg.end), text=str(seg.text).strip(), words=words))
        if on_progress is not None:
            on_progress(float(seg.end))
    return out


class FasterWhisperTranscriber:
    """Whisper through faster-whisper, with word timestamps.

    `model`: a size faster-whisper knows ('tiny', 'small', 'large-v3', ...), a Hugging Face model id
    ('Systran/faster-whisper-small'), or a folder holding a converted model (model.bin, config.json,
    tokenizer.json). `allow_download`: None downloads a missing model unless HF_HUB_OFFLINE is set.
    Arguments are checked here; the model loads on the first `transcribe` (or `load`).
    """

    def __init__(
        self,
        model: str = DEFAULT_WHISPER_MODEL,
        *,
        device: str = "auto",
        compute_type: str = "default",
        download_root: str | Path | None = None,
        allow_download: bool | None = None,
        beam_size: int = 5,
        vad_filter: bool = True,
        cpu_threads: int = 0,
    ) -> None:
        model = str(model).strip() if model is not None else ""
        if not model:
            raise ValueError("whisper_model is empty: pass a size such as 'large-v3' or a model folder.")
        if not os.path.isdir(model) and model not in whisper_model_names() and not _HUB_ID.fullmatch(model):
            raise ValueError(
                f"whisper_model '{model}' is neither a Whisper model size ({', '.join(whisper_model_names())}), "
                "a Hugging Face model id (owner/name) nor an existing folder: pass one of those.")
        if device not in DEVICES:
            raise ValueError(f"device '{device}' is not one of {', '.join(DEVICES)}.")
        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type '{compute_type}' is not one of {', '.join(COMPUTE_TYPES)}.")
        if int(beam_size) < 1:
            raise ValueError(f"beam_size must be at least 1, not {beam_size}.")
        if int(cpu_threads) < 0:
            raise ValueError(f"cpu_threads must be 0 (automatic) or more, not {cpu_threads}.")
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.download_root = None if download_root is None else str(download_root)
        self.allow_download = allow_download
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self.cpu_threads = int(cpu_threads)
        self._model = None

    def __repr__(self) -> str:
        return f"FasterWhisperTranscriber(model={self.model_name!r}, device={self.device!r})"

    @property
    def downloads_allowed(self) -> bool:
        if self.allow_download is not None:
            return self.allow_download
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in {"1", "true", "yes", "on"}

    def model_path(self) -> str:
        """The folder of the converted model: the one given, or the Hugging Face cache's copy (downloaded
        first when allowed). Raises `TranscriberUnavailable` naming the model and what to do."""
        if os.path.isdir(self.model_name):
            missing = [f for f in ("model.bin", "config.json") if not os.path.isfile(os.path.join(self.model_name, f))]
            if missing:
                raise TranscriberUnavailable(
                    f"Whisper model folder {self.model_name} lacks {', '.join(missing)}: pass a folder holding a "
                    "faster-whisper (CTranslate2) model, as downloaded from Systran/faster-whisper-<size>.")
            return self.model_name
        from faster_whisper.utils import download_model

        try:
            return download_model(self.model_name, local_files_only=True, cache_dir=self.download_root)
        except Exception as cached_error:  # huggingface_hub raises several types for "not in the cache"
            if not self.downloads_allowed:
                raise TranscriberUnavailable(self._unavailable_message("downloads are off (HF_HUB_OFFLINE is set "
                                             "or allow_download=False)")) from cached_error
        try:
            return download_model(self.model_name, cache_dir=self.download_root)
        except Exception as e:  # network, disk, authentication: all end in the same advice
            raise TranscriberUnavailable(self._unavailable_message(f"downloading it failed ({short_reason(e)})")) from e

    def _unavailable_message(self, why: str) -> str:
        from faster_whisper.utils import _MODELS

        repo = _MODELS.get(self.model_name, self.model_name)
        cache = self.download_root or os.environ.get("HF_HUB_CACHE") or "the Hugging Face cache (~/.cache/huggingface)"
        return (
            f"Whisper model '{self.model_name}' is not available offline: it is not in {cache}, and {why}. "
            f"On a machine with internet, download it (`huggingface-cli download {repo} --local-dir "
            f"whisper-{self.model_name.replace('/', '-')}`), copy that folder here and pass its path as the "
            "Whisper model (--whisper_model FOLDER), or choose a model size that is already downloaded."
        )

    def load(self):
        """Load the model now (otherwise the first `transcribe` does); returns the faster-whisper model."""
        if self._model is None:
            path = self.model_path()
            from faster_whisper import WhisperModel

            try:
                self._model = WhisperModel(path, device=self.device, compute_type=self.compute_type,
                                           cpu_threads=self.cpu_threads)
            except (RuntimeError, ValueError, OSError) as e:
                raise TranscriberUnavailable(
                    f"Whisper model '{self.model_name}' ({path}) could not be loaded on device '{self.device}' with "
                    f"compute_type '{self.compute_type}': {short_reason(e)}. Try --device cpu and --compute_type int8, "
                    "or check the model folder.") from e
        return self._model

    def transcribe_options(self, language: str | None) -> dict:
        """The keyword arguments given to faster-whisper's `WhisperModel.transcribe`."""
        return {
            "language": self._checked_language(language),
            "task": "transcribe",
            "beam_size": self.beam_size,
            "word_timestamps": True,
            "vad_filter": self.vad_filter,
        }

    @staticmethod
    def _checked_language(language: str | None) -> str | None:
        code = whisper_language(language)
        if code is None:
            return None
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if code not in _LANGUAGE_CODES:
            raise ValueError(f"language '{language}' is not one Whisper knows: pass an ISO 639-1 code such as en, "
                             "de, am, or leave it empty to detect the language.")
        return code

    def transcribe(self, path: str | Path, language: str | None = None, *, on_progress: ProgressFn | None = None
                   ) -> Transcript:
        options = self.transcribe_options(language)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Audio file {path} does not exist.")
        model = self.load()
        segments, info = model.transcribe(str(path), **options)
        converted = convert_segments(segments, on_progress=on_progress)
        return Transcript(language=info.language, segments=converted, duration=float(info.duration))
