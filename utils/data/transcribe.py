"""Speech to timed text, behind a small interface.

`utils/data/clips.py` cuts recordings into clips from a `Transcript`: segments of text with word timestamps.
Anything with a `transcribe(path, language, *, on_progress=None) -> Transcript` method can produce one; the
real one is `FasterWhisperTranscriber` (faster-whisper, CTranslate2 Whisper models). Its model is loaded on the
first call through `utils/whisper.py` (a folder, or the Hugging Face cache, downloaded only where that is
possible); when it is not there, `TranscriberUnavailable` says which model is missing and how to bring it.

Importing this module imports neither faster-whisper nor torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from utils.errors import InvalidValue
from utils.whisper import (
    DEFAULT_WHISPER_MODEL,
    WhisperSource,
    WhisperUnavailable,
    torch_threads_kept,
    whisper_language,
)
from utils.whisper import DEVICES as DEVICES  # re-exported: the dataset options and the WebUI read them here
from utils.whisper import whisper_model_names as whisper_model_names

TranscriberUnavailable = WhisperUnavailable
"""The transcriber cannot run here (model not available offline, device missing); the message says why."""


@dataclass(frozen=True)
class Word:
    """One word with its time span in seconds from the start of the file. `text` keeps Whisper's own spacing
    (a leading space before most words), so joining words with "" gives the sentence back."""

    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass(frozen=True)
class Confidence:
    """How sure Whisper was of a segment: the average log-probability of its tokens, the probability that it
    holds no speech, and the compression ratio of its text (repeated text compresses well: above 2.4 is
    Whisper's sign of a loop)."""

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float

    @classmethod
    def worst(cls, values: Iterable[Confidence | None]) -> Confidence | None:
        """The worst of each value (lowest log-probability, highest no-speech probability and compression
        ratio) over the given ones; None when none is known."""
        known = [v for v in values if v is not None]
        if not known:
            return None
        return cls(min(v.avg_logprob for v in known), max(v.no_speech_prob for v in known),
                   max(v.compression_ratio for v in known))


@dataclass(frozen=True)
class Segment:
    """A stretch of speech with its text and, where the transcriber gives them, its words and Whisper's
    confidence (not part of equality: the same words at the same times are the same segment)."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    confidence: Confidence | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Transcript:
    """What a transcriber heard in one file: the language (ISO 639-1, as Whisper names it) and the segments."""

    language: str
    segments: list[Segment] = field(default_factory=list)
    duration: float | None = None


ProgressFn = Callable[[float], None]
"""Called with the number of seconds of the file transcribed so far."""


class Transcriber(Protocol):
    """Turns one audio file into a `Transcript`. `language` None means: detect it."""

    def transcribe(self, path: str | Path, language: str | None = None, *, on_progress: ProgressFn | None = None
                   ) -> Transcript: ...


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
        out.append(Segment(start=float(seg.start), end=float(seg.end), text=str(seg.text).strip(), words=words,
                           confidence=_confidence(seg)))
        if on_progress is not None:
            on_progress(float(seg.end))
    return out


def _confidence(seg: Any) -> Confidence | None:
    """faster-whisper's segment confidence; None when the segment lacks one (another transcriber's)."""
    values = [getattr(seg, name, None) for name in ("avg_logprob", "no_speech_prob", "compression_ratio")]
    if any(v is None for v in values):
        return None
    return Confidence(*(float(v) for v in values))


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
        if int(beam_size) < 1:
            raise InvalidValue(f"beam_size must be at least 1, not {beam_size}.")
        self.source = WhisperSource(model, device=device, compute_type=compute_type, cpu_threads=int(cpu_threads),
                                    download_root=None if download_root is None else str(download_root),
                                    allow_download=allow_download)
        self.beam_size = int(beam_size)
        self.vad_filter = bool(vad_filter)
        self._model = None

    def __repr__(self) -> str:
        return f"FasterWhisperTranscriber(model={self.model_name!r}, device={self.source.device!r})"

    @property
    def model_name(self) -> str:
        return self.source.name

    @property
    def downloads_allowed(self) -> bool:
        return self.source.downloads_allowed

    def model_path(self) -> str:
        """The folder of the converted model (see `WhisperSource.folder`); raises `TranscriberUnavailable`."""
        return self.source.folder()

    def load(self):
        """Load the model now (otherwise the first `transcribe` does); returns the faster-whisper model."""
        if self._model is None:
            self._model = self.source.load()
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
        with torch_threads_kept():  # the segments are decoded as they are read
            segments, info = model.transcribe(str(path), **options)
            converted = convert_segments(segments, on_progress=on_progress)
        return Transcript(language=info.language, segments=converted, duration=float(info.duration))
