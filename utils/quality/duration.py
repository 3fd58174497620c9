"""Duration against the text: how long a clip's speech lasts (Silero VAD, leading and trailing silence left
out) compared with how long its text should take at a speaking rate in characters per second.

The rate is the reference speaker's when there is a usable reference clip (its speech duration against its
text, or against its transcript when no text is given), else a rough per-language default below. A ratio near
1 is on pace; a runaway ending (XTTS babbling on past the sentence) shows as > 1.5, a cut-off one as < 1."""

from __future__ import annotations

import numpy as np

from utils.quality.text import letters

SAMPLE_RATE = 16000
# Typical read-speech rates in characters per second, spaces and punctuation not counted (roughly 150 words a
# minute in English). Scripts with denser characters (Chinese, Japanese, Korean) have far fewer per second.
DEFAULT_CHARS_PER_SECOND: dict[str, float] = {
    "en": 14.0, "es": 15.0, "fr": 14.0, "de": 13.0, "it": 14.0, "pt": 14.0, "pl": 13.0, "tr": 13.0, "ru": 13.0,
    "nl": 13.0, "cs": 13.0, "ar": 12.0, "hu": 13.0, "hi": 12.0, "zh": 5.0, "ja": 7.0, "ko": 6.0,
}
FALLBACK_CHARS_PER_SECOND = 13.0


def default_rate(language: str | None) -> float:
    """The default speaking rate (characters per second) for an XTTS language code such as 'en' or 'zh-cn'."""
    code = (language or "").strip().lower().split("-")[0]
    return DEFAULT_CHARS_PER_SECOND.get(code, FALLBACK_CHARS_PER_SECOND)


def speech_span(audio: np.ndarray) -> tuple[float, float] | None:
    """(start, end) in seconds of the speech in `audio` (mono float32, 16 kHz), from the first detected speech
    to the last, pauses in between included; None when there is no speech (silence, noise)."""
    chunks = speech_chunks(audio)
    if not chunks:
        return None
    return chunks[0][0], chunks[-1][1]


def speech_chunks(audio: np.ndarray) -> list[tuple[float, float]]:
    """(start, end) in seconds of each stretch of speech Silero VAD finds in `audio` (mono float32, 16 kHz),
    in order; [] for none."""
    if len(audio) < 512:
        return []
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(audio, VadOptions(threshold=0.5, min_speech_duration_ms=100,
                                                     min_silence_duration_ms=100, speech_pad_ms=0))
    return [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]


def speaking_rate(speech_s: float | None, text: str) -> float | None:
    """Characters per second of `text` spoken in `speech_s` seconds; None when either is missing or empty."""
    n = letters(text)
    if not speech_s or speech_s <= 0 or n == 0:
        return None
    return n / speech_s


def duration_ratio(speech_s: float | None, text: str, rate: float) -> float | None:
    """`speech_s` against the time `text` takes at `rate` characters per second; None without speech or text."""
    n = letters(text)
    if speech_s is None or n == 0 or rate <= 0:
        return None
    return speech_s / (n / rate)
