"""One object that loads each scoring model once and scores many clips: `Scorer.score(audio, text, reference)`
gives a `ClipScores`. A training loop keeps one Scorer for all its evaluations."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from utils.quality import audio as audio_io
from utils.quality import duration
from utils.quality.asr import WhisperAsr
from utils.quality.mos import Dnsmos
from utils.quality.speaker import SpeakerEncoder, cosine
from utils.quality.text import cer

REFERENCE_CACHE_SIZE = 64


@dataclass(frozen=True)
class ClipScores:
    """The scores of one clip. `cer` is 1.0 when nothing is heard; a score that cannot be measured (no
    reference, no speech) is None."""

    cer: float
    transcript: str
    speaker_similarity: float | None
    mos: float | None
    duration_ratio: float | None

    def to_dict(self) -> dict:
        """Exactly the five keys, as printed by `--json`."""
        return asdict(self)

    def describe(self) -> str:
        """One human line: `cer 0.04 · transcript "..." · speaker similarity 0.91 · MOS 3.1 · duration ratio 1.02`."""
        def num(value: float | None, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        return (f'cer {num(self.cer, 2)} · transcript "{self.transcript}" · speaker similarity '
                f"{num(self.speaker_similarity, 2)} · MOS {num(self.mos, 1)} · duration ratio "
                f"{num(self.duration_ratio, 2)}")


@dataclass(frozen=True)
class _Reference:
    """What a reference clip contributes: its speaker embedding and its speaking rate (either may be None)."""

    embedding: np.ndarray | None
    rate: float | None


class Scorer:
    """faster-whisper, resemblyzer, DNSMOS and Silero VAD, each loaded once (by `load()` or on first use).

    `whisper_model`: a faster-whisper model folder or size; None takes `asr.default_whisper_model()` (the
    packaged tiny.en when installed, else large-v3). `language`: the default language of the clips (XTTS code).
    Reference clips given as paths are analysed once and remembered (their path, size and time as the key)."""

    def __init__(self, whisper_model: str | None = None, *, language: str = "en", device: str = "cpu") -> None:
        self.language = language
        self.asr = WhisperAsr(whisper_model, device=device)
        self.speaker = SpeakerEncoder(device=device)
        self.mos = Dnsmos()
        self._references: OrderedDict[tuple, _Reference] = OrderedDict()

    def load(self) -> Scorer:
        """Load every model now (raises `ModelUnavailable` naming the missing one) and check that the Whisper
        model can transcribe the default language."""
        self.asr.load()
        self.asr.check_language(self.language)
        self.speaker.load()
        self.mos.load()
        return self

    def score(self, audio: audio_io.AudioInput, text: str, reference: audio_io.AudioInput | None = None, *,
              reference_text: str | None = None, language: str | None = None) -> ClipScores:
        """Scores of `audio` (a path, or (samples, rate)) meant to say `text`, against the speaker of
        `reference` when given. `reference_text`: what the reference says, for its speaking rate; without it
        the reference's transcript is used. Raises `AudioUnreadable` for a file that cannot be read; a clip
        without speech scores cer 1.0 and None where nothing can be measured."""
        language = language or self.language
        samples = audio_io.load(audio)
        ref = None if reference is None else self._reference(reference, reference_text, language)
        span = duration.speech_span(samples)
        if span is None:
            return ClipScores(cer=1.0, transcript="", speaker_similarity=None, mos=None, duration_ratio=None)
        transcript = self.asr.transcribe(samples, language)
        similarity = None
        if ref is not None and ref.embedding is not None:
            embedding = self.speaker.embed(samples)
            similarity = None if embedding is None else cosine(embedding, ref.embedding)
        rate = ref.rate if ref is not None and ref.rate is not None else duration.default_rate(language)
        return ClipScores(
            cer=cer(text, transcript), transcript=transcript, speaker_similarity=similarity,
            mos=self.mos.score(samples), duration_ratio=duration.duration_ratio(span[1] - span[0], text, rate))

    def reference_rate(self, reference: audio_io.AudioInput, language: str | None = None) -> float | None:
        """The reference's speaking rate in characters per second (from its transcript), None without speech."""
        return self._reference(reference, None, language or self.language).rate

    def _reference(self, reference: audio_io.AudioInput, text: str | None, language: str) -> _Reference:
        """The reference's embedding and rate, from the cache when it is a file analysed before."""
        key = _cache_key(reference, text, language)
        if key is not None and key in self._references:
            self._references.move_to_end(key)
            return self._references[key]
        samples = audio_io.load(reference)
        span = duration.speech_span(samples)
        if span is None:
            found = _Reference(embedding=None, rate=None)
        else:
            said = text if text is not None and text.strip() else self.asr.transcribe(samples, language)
            found = _Reference(embedding=self.speaker.embed(samples),
                               rate=duration.speaking_rate(span[1] - span[0], said))
        if key is not None:
            self._references[key] = found
            while len(self._references) > REFERENCE_CACHE_SIZE:
                self._references.popitem(last=False)
        return found


def _cache_key(reference: audio_io.AudioInput, text: str | None, language: str) -> tuple | None:
    """A key that changes when the reference file does; None (no caching) for audio in memory."""
    if not isinstance(reference, str | Path):
        return None
    path = Path(reference)
    try:
        stat = path.stat()
    except OSError:
        return None  # load() reports it
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, text, language)
