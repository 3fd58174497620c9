"""Where to cut a recording into clips: sentence-level spans from a transcript's word timestamps, between a
shortest and a longest length, their edges between words, padded where there is silence to spare."""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from utils.data.errors import ellipsis
from utils.data.transcribe import Confidence, Segment, Transcript, Word
from utils.xtts import MIN_AUDIO_SECONDS

_CLOSING = r"[\"'\u201d\u2019\u00bb)\]]*$"  # quotes and brackets that may follow the mark
SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u1362\u1367\u061f\u06d4\u0964\u0965]+" + _CLOSING)
CLAUSE_END = re.compile(r"[,;:\u060c\u3001\uff0c\uff1b\uff1a\u1363\u1364\u1365\u2014\u2013-]+" + _CLOSING)
MAX_MERGE_GAP_SECONDS = 1.5  # two sentences further apart than this are not joined into one clip
# Whisper's times are approximate: a word may end this much past the end of the audio (its end is then clamped
# to it) or start this much before the word before it ends. Beyond that its segment's times cannot be true.
TIMING_TOLERANCE_SECONDS = 0.5


@dataclass(frozen=True)
class ClipPlan:
    """Where to cut one clip from a recording, and what is said in it."""

    start: float
    end: float
    text: str
    confidence: Confidence | None = None  # the worst of Whisper's confidence over the segments it takes words from

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class TimingCheck:
    """What clip planning did with segments whose times cannot be true: dropped because they lie (partly)
    outside the audio, go back in time or hold no text; kept with their last words' ends clamped to the end of
    the audio (within `TIMING_TOLERANCE_SECONDS`)."""

    outside: int = 0
    out_of_order: int = 0
    empty: int = 0
    clamped: int = 0

    @property
    def dropped(self) -> int:
        return self.outside + self.out_of_order + self.empty

    def describe(self, duration: float) -> str | None:
        """One sentence saying how many segments were dropped or clamped, and why; None when none was."""
        parts = [f"{n} {why}" for n, why in ((self.outside, f"outside the audio (0-{duration:.2f} s)"),
                                              (self.out_of_order, "out of order or overlapping the one before"),
                                              (self.empty, "without text")) if n]
        said = [f"{self.dropped} segment(s) left out, their times or text cannot be true: {', '.join(parts)}"
                ] if parts else []
        if self.clamped:
            said.append(f"{self.clamped} segment(s) ending up to {TIMING_TOLERANCE_SECONDS:g} s past the end of the "
                        "audio cut at its end")
        return "; ".join(said) + "." if said else None


@dataclass
class ClipPlanning:
    """Clips to cut, the stretches of text left out (one reason each) and what the timing check dropped."""

    clips: list[ClipPlan] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    timing: TimingCheck = field(default_factory=TimingCheck)


def _cleaned(words: Sequence[Word]) -> list[Word]:
    """The words that hold a letter or a digit, without control characters and U+FFFD (a broken byte sequence);
    punctuation given as a word of its own joins the word before it."""
    out = []
    for w in words:
        text = "".join(ch for ch in w.text if ch != "\ufffd" and unicodedata.category(ch) != "Cc")
        if any(unicodedata.category(ch)[0] in "LN" for ch in text):
            out.append(Word(w.start, w.end, text, w.probability))
        elif text.strip() and out:  # punctuation Whisper gave as a word of its own: it belongs to the one before
            out[-1] = Word(out[-1].start, out[-1].end, out[-1].text + text.strip(), out[-1].probability)
    return out


def _segment_words(seg: Segment) -> list[Word]:
    """A segment's words; a segment without word timestamps counts as one word."""
    return _cleaned(seg.words or (Word(seg.start, seg.end, " " + seg.text.strip()),))


def timed_words(transcript: Transcript, duration: float) -> tuple[list[Word], TimingCheck]:
    """The words of the segments whose times can be true, in order: every word inside [0, `duration`] (an end
    up to `TIMING_TOLERANCE_SECONDS` past it is clamped), each word after the one before it, the segment after
    the segments kept before it, and some text. Other segments are left out whole and counted."""
    segments, check = _timed_segments(transcript, duration)
    return [w for _, words in segments for w in words], check


def _timed_segments(transcript: Transcript, duration: float
                    ) -> tuple[list[tuple[Segment, list[Word]]], TimingCheck]:
    """`timed_words`, each segment kept with its words."""
    check, kept, segments = TimingCheck(), [], []
    tol = TIMING_TOLERANCE_SECONDS
    for seg in transcript.segments:
        words = _segment_words(seg)
        if not words:
            check.empty += 1
        elif (any(w.end < w.start for w in words) or any(b.start < a.end - tol for a, b in itertools.pairwise(words))
              or (kept and words[0].start < kept[-1].end - tol)):
            check.out_of_order += 1
        elif words[0].start < 0 or words[-1].start >= duration or words[-1].end > duration + tol:
            check.outside += 1
        else:
            if words[-1].end > duration:
                check.clamped += 1
                words = [Word(min(w.start, duration), min(w.end, duration), w.text, w.probability) for w in words]
            kept.extend(words)
            segments.append((seg, words))
    return segments, check


def _span(words: Sequence[Word]) -> float:
    return words[-1].end - words[0].start


def _text_of(words: Sequence[Word]) -> str:
    return " ".join("".join(w.text for w in words).split())


def _split_sentences(words: list[Word]) -> list[list[Word]]:
    sentences, current = [], []
    for w in words:
        current.append(w)
        if SENTENCE_END.search(w.text.strip()):
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _split_long(words: list[Word], max_s: float, min_s: float) -> list[list[Word]]:
    """Split a sentence longer than `max_s` where a pause, a comma and balance suggest, until every part fits."""
    if len(words) < 2 or _span(words) <= max_s:
        return [words]
    total = _span(words)

    def score(i: int) -> float:
        left, right = words[:i], words[i:]
        s = right[0].start - left[-1].end
        s += 0.5 if CLAUSE_END.search(left[-1].text.strip()) else 0.0
        s += 1.0 if min(_span(left), _span(right)) >= min_s else 0.0
        return s - 0.5 * abs(_span(left) - _span(right)) / max(total, 1e-9)

    best = max(range(1, len(words)), key=score)
    return _split_long(words[:best], max_s, min_s) + _split_long(words[best:], max_s, min_s)


def _merge_short(pieces: list[list[Word]], min_s: float, max_s: float) -> list[list[Word]]:
    """Join a piece shorter than `min_s` with its neighbour (next first, then previous) when the two fit."""

    def joinable(a: list[Word], b: list[Word]) -> bool:
        return b[0].start - a[-1].end <= MAX_MERGE_GAP_SECONDS and b[-1].end - a[0].start <= max_s

    merged: list[list[Word]] = []
    for piece in pieces:
        if merged and _span(merged[-1]) < min_s and joinable(merged[-1], piece):
            merged[-1] = merged[-1] + piece
        else:
            merged.append(piece)
    i = len(merged) - 1
    while i > 0:
        if _span(merged[i]) < min_s and joinable(merged[i - 1], merged[i]):
            merged[i - 1] = merged[i - 1] + merged.pop(i)
        i -= 1
    return merged


def plan_clips(transcript: Transcript, *, min_seconds: float = 3.0, max_seconds: float = 11.0,
               padding_seconds: float = 0.2, duration: float | None = None) -> ClipPlanning:
    """Sentence-level clips between `min_seconds` and `max_seconds` (padding included) from a transcript's
    words: sentences longer than the maximum are split at pauses and commas, shorter ones joined with a
    neighbour. A clip's edges never reach into the neighbouring words, nor past [0, `duration`] (default: the
    transcript's). Segments whose times cannot be true are left out first (`timed_words`).
    """
    if duration is None:
        duration = transcript.duration if transcript.duration is not None else math.inf
    segments, timing = _timed_segments(transcript, duration)
    words = [w for _, seg_words in segments for w in seg_words]
    confidence = {id(w): seg.confidence for seg, seg_words in segments for w in seg_words}
    if not math.isfinite(duration):
        duration = words[-1].end if words else 0.0
    pieces = [p for s in _split_sentences(words) for p in _split_long(s, max_seconds, min_seconds)]
    pieces = _merge_short(pieces, min_seconds, max_seconds)
    index = {id(w): i for i, w in enumerate(words)}
    planning = ClipPlanning(timing=timing)
    for piece in pieces:
        text = _text_of(piece)
        first, last = index[id(piece[0])], index[id(piece[-1])]
        lo = 0.0 if first == 0 else max(0.0, (words[first - 1].end + piece[0].start) / 2)
        hi = duration if last == len(words) - 1 else (piece[-1].end + words[last + 1].start) / 2
        lo, hi = min(lo, piece[0].start), max(hi, piece[-1].end)
        start, end = _padded(piece[0].start, piece[-1].end, lo, hi, padding_seconds, min_seconds, max_seconds)
        if end - start > max_seconds + 1e-6:
            planning.left_out.append(f"{_clock_ms(piece[0].start)}-{_clock_ms(piece[-1].end)} is longer than "
                                     f"{max_seconds:g} s even without padding: \"{ellipsis(text)}\"")
        elif end - start < max(min_seconds, MIN_AUDIO_SECONDS) - 1e-6:
            planning.left_out.append(f"{_clock_ms(piece[0].start)}-{_clock_ms(piece[-1].end)} is shorter than "
                                     f"{min_seconds:g} s: \"{ellipsis(text)}\"")
        else:
            planning.clips.append(ClipPlan(start, end, text, Confidence.worst(confidence[id(w)] for w in piece)))
    return planning


def _padded(start: float, end: float, lo: float, hi: float, pad: float, min_s: float, max_s: float
            ) -> tuple[float, float]:
    """Widen [start, end] by `pad` within [lo, hi]; up to `min_s` within [lo, hi]; never beyond `max_s`."""
    room = max(0.0, max_s - (end - start))
    before = min(pad, start - lo, room / 2)
    after = min(pad, hi - end, room - before)
    start, end = start - before, end + after
    short = min_s - (end - start)
    if short > 0:
        extra_before = min(short / 2, start - lo)
        extra_after = min(short - extra_before, hi - end)
        extra_before = min(short - extra_after, start - lo)
        start, end = start - extra_before, end + extra_after
    return start, end


def _clock_ms(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:05.2f}"
