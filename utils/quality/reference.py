"""Pick the reference clip a voice is judged against, from the training clips: 6-12 s long, sounding clean
(high DNSMOS) and typical of the speaker (embedding close to the speaker's average)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from utils.quality import audio as audio_io
from utils.quality.errors import AudioUnreadable
from utils.quality.scorer import Scorer
from utils.quality.speaker import cosine

REFERENCE_SECONDS = (6.0, 12.0)  # long enough for XTTS's conditioning, short enough to be one utterance
MAX_CANDIDATES = 24  # clips analysed at most: a choice in seconds even for datasets of thousands of clips


@dataclass(frozen=True)
class ReferenceChoice:
    """The chosen clip and why: its DNSMOS and its similarity to the speaker's average embedding."""

    path: Path
    seconds: float
    mos: float | None
    similarity: float | None
    candidates: int

    def describe(self) -> str:
        mos = "n/a" if self.mos is None else f"{self.mos:.2f}"
        sim = "n/a" if self.similarity is None else f"{self.similarity:.2f}"
        return (f"Reference clip {self.path} ({self.seconds:.1f} s, MOS {mos}, similarity to the speaker's average "
                f"{sim}; best of {self.candidates} candidates)")


def candidate_clips(paths: list[Path]) -> list[tuple[Path, float]]:
    """Clips of 6-12 s (else those closest to 9 s), at most MAX_CANDIDATES, spread evenly over the list."""
    timed = []
    for path in paths:
        try:
            timed.append((path, sf.info(str(path)).duration))
        except (RuntimeError, OSError) as e:
            raise AudioUnreadable(f"Training clip {path} cannot be read ({e}): fix or remove it.") from e
    low, high = REFERENCE_SECONDS
    fitting = [(p, s) for p, s in timed if low <= s <= high]
    if not fitting:
        middle = (low + high) / 2
        fitting = sorted(timed, key=lambda ps: abs(ps[1] - middle))[:MAX_CANDIDATES]
    if len(fitting) > MAX_CANDIDATES:
        picks = np.linspace(0, len(fitting) - 1, MAX_CANDIDATES).round().astype(int)
        fitting = [fitting[i] for i in picks]
    return fitting


def pick_reference(paths: list[Path], scorer: Scorer) -> ReferenceChoice:
    """The rule: among the candidates whose similarity to their average embedding is at least the median, the
    one with the highest DNSMOS (ties and unmeasurable scores fall back to list order)."""
    if not paths:
        raise AudioUnreadable("There are no training clips to pick a reference from: give --reference_wav.")
    candidates = candidate_clips(paths)
    measured = []
    for path, seconds in candidates:
        samples = audio_io.load(path)
        measured.append((path, seconds, scorer.mos.score(samples), scorer.speaker.embed(samples)))
    embeddings = [m[3] for m in measured if m[3] is not None]
    average = np.mean(embeddings, axis=0) if embeddings else None
    similarity = [None if average is None or m[3] is None else cosine(m[3], average) for m in measured]
    known = [s for s in similarity if s is not None]
    floor = float(np.median(known)) if known else None
    best, best_key = 0, None
    for i, (_, _, mos, _) in enumerate(measured):
        if floor is not None and (similarity[i] is None or similarity[i] < floor):
            continue
        key = -1.0 if mos is None else mos
        if best_key is None or key > best_key:
            best, best_key = i, key
    path, seconds, mos, _ = measured[best]
    return ReferenceChoice(path=path, seconds=seconds, mos=mos, similarity=similarity[best],
                           candidates=len(measured))
