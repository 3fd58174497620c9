"""The dataset quality gate: from each clip's measurements (`utils/data/measure.py`) and its CSV line, the
flags a person should look at, with the thresholds that raise them, and the report of the flagged clips,
worst first. Flags are warnings: a flagged clip trains unless it is dropped (`utils/data/filter.py`).

The kinds of flag and what raises each (defaults in `GateThresholds`, each overridable):

    transcript_mismatch  Whisper's transcript against the CSV text: CER above max_cer
    noisy                DNSMOS background score below min_background, or overall score below min_mos
    clipped              more than max_clipping of the samples at full scale
    silence              speech level below min_speech_db, more than max_silence_share of the clip silent,
                         or leading or trailing silence longer than max_edge_silence seconds
    speaking_rate        characters per second outside min_rate_ratio..max_rate_ratio times the dataset's median
    other_speaker        speaker embedding further than max_speaker_distance (1 - cosine) from the median of
                         its speaker's clips (speakers with at least min_speaker_clips measured clips)

Whisper's confidence when our transcription tool cut a clip (`whisper_avg_logprob`, `whisper_no_speech_prob`,
`whisper_compression_ratio`) is shown beside the measurements and raises no flag: Whisper already decodes a
segment again past its own limits (log-probability -1, compression ratio 2.4), and a text it still got wrong
shows as transcript_mismatch against the fresh transcript.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from utils.data.measure import ClipMeasurements
from utils.data.metadata import Row
from utils.options import opt

KINDS = ("transcript_mismatch", "noisy", "clipped", "silence", "speaking_rate", "other_speaker")


@dataclass
class GateThresholds:
    """When a clip is flagged; `python utils/formatter.py validate --quality` and `filter` take each as a flag."""

    max_cer: float = field(default=0.25, metadata=opt("transcript_mismatch: highest CER of Whisper's transcript "
                                                      "against the CSV text", low=0, high=1))
    min_background: float = field(default=2.5, metadata=opt("noisy: lowest DNSMOS background score (1-5)", low=1,
                                                            high=5))
    min_mos: float = field(default=1.5, metadata=opt("noisy: lowest DNSMOS overall score (1-5)", low=1, high=5))
    max_clipping: float = field(default=0.002, metadata=opt("clipped: highest share of samples at full scale",
                                                            low=0, high=1))
    min_speech_db: float = field(default=-40.0, metadata=opt("silence: lowest level of the speech, dBFS",
                                                             low=-100, high=0))
    max_silence_share: float = field(default=0.5, metadata=opt("silence: highest share of the clip without speech",
                                                               low=0, high=1))
    max_edge_silence: float = field(default=2.0, metadata=opt("silence: longest leading or trailing silence, seconds",
                                                              low=0))
    min_rate_ratio: float = field(default=0.6, metadata=opt("speaking_rate: lowest characters per second against "
                                                            "the dataset's median", low=0))
    max_rate_ratio: float = field(default=1.6, metadata=opt("speaking_rate: highest characters per second against "
                                                            "the dataset's median", low=1))
    max_speaker_distance: float = field(default=0.2, metadata=opt("other_speaker: largest distance (1 - cosine) of "
                                                                  "a clip's voice from its speaker's median", low=0,
                                                                  high=2))
    min_speaker_clips: int = field(default=3, metadata=opt("other_speaker: fewest measured clips a speaker needs "
                                                           "before its clips are compared", low=2))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ClipLine:
    """A dataset line: which CSV and line, and what it says."""

    path: Path
    row: Row

    @property
    def csv(self) -> str:
        """The CSV's file name (metadata_train.csv)."""
        return self.path.name


@dataclass
class Verdict:
    """One line's measurements (the clip's, plus those that depend on its text and on the other clips) and its
    flags. `badness` orders the report: each flag counts 1 plus how far past its threshold the value is."""

    line: ClipLine
    measurements: dict
    flags: list[str] = field(default_factory=list)
    badness: float = 0.0

    @property
    def seconds(self) -> float:
        return float(self.measurements.get("duration_s") or 0.0)

    def to_dict(self) -> dict:
        """Exactly the keys of the report's `clips` entries."""
        return {"line": self.line.row.line, "file": self.line.row.audio_file, "flags": list(self.flags),
                "measurements": {"csv": self.line.csv, **self.measurements}}


def _excess(value: float, limit: float, above: bool) -> float:
    """How far `value` lies past `limit`, relative to it, capped at 1."""
    scale = abs(limit) or 1.0
    return min(1.0, max(0.0, (value - limit if above else limit - value) / scale))


def _speaker_medians(clips: Sequence[tuple[ClipLine, ClipMeasurements | None]], least: int) -> dict[str, np.ndarray]:
    """Each speaker's median embedding (coordinate-wise, robust to a minority of odd clips), for speakers with
    at least `least` embeddings."""
    by_speaker: dict[str, list[tuple[float, ...]]] = {}
    for line, m in clips:
        if m is not None and m.embedding is not None:
            by_speaker.setdefault(line.row.speaker_name, []).append(m.embedding)
    return {s: np.median(np.asarray(e, dtype=np.float32), axis=0) for s, e in by_speaker.items() if len(e) >= least}


def judge(clips: Sequence[tuple[ClipLine, ClipMeasurements | None]], thresholds: GateThresholds) -> list[Verdict]:
    """A verdict for each measured line (unmeasured ones, audio missing or unreadable, are left out), in the
    given order."""
    from utils.quality.duration import speaking_rate
    from utils.quality.speaker import cosine
    from utils.quality.text import cer

    rates = {id(line): speaking_rate(m.speech_span_s, line.row.text) for line, m in clips if m is not None}
    known = [r for r in rates.values() if r]
    median_rate = statistics.median(known) if known else None
    medians = _speaker_medians(clips, thresholds.min_speaker_clips)
    verdicts = []
    for line, m in clips:
        if m is None:
            continue
        rate = rates[id(line)]
        centre = medians.get(line.row.speaker_name)
        similarity = None if centre is None or m.embedding is None else cosine(np.asarray(m.embedding), centre)
        derived = {
            "asr_cer": cer(line.row.text, m.transcript),
            "chars_per_second": rate,
            "rate_ratio": rate / median_rate if rate and median_rate else None,
            "speaker_distance": None if similarity is None else 1.0 - similarity,
        }
        verdicts.append(_verdict(line, m, derived, thresholds))
    return verdicts


def _verdict(line: ClipLine, m: ClipMeasurements, derived: dict, t: GateThresholds) -> Verdict:
    reasons: dict[str, float] = {}

    def check(kind: str, value: float | None, limit: float, above: bool) -> None:
        if value is not None and (value > limit if above else value < limit):
            reasons[kind] = max(reasons.get(kind, 0.0), _excess(value, limit, above))

    check("transcript_mismatch", derived["asr_cer"], t.max_cer, True)
    check("noisy", m.dnsmos_background, t.min_background, False)
    check("noisy", m.dnsmos_overall, t.min_mos, False)
    check("clipped", m.clipping_ratio, t.max_clipping, True)
    check("silence", m.speech_rms_db, t.min_speech_db, False)
    check("silence", m.silence_share, t.max_silence_share, True)
    check("silence", max(m.leading_silence_s, m.trailing_silence_s), t.max_edge_silence, True)
    check("speaking_rate", derived["rate_ratio"], t.min_rate_ratio, False)
    check("speaking_rate", derived["rate_ratio"], t.max_rate_ratio, True)
    check("other_speaker", derived["speaker_distance"], t.max_speaker_distance, True)
    measurements = {**m.summary(), **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in derived.items()}}
    flags = [k for k in KINDS if k in reasons]
    return Verdict(line, measurements, flags, sum(1.0 + reasons[k] for k in flags))


@dataclass
class QualityReport:
    """The gate's findings on a dataset: every measured line's verdict, and what was not measured."""

    verdicts: list[Verdict]
    thresholds: GateThresholds
    whisper_model: str | None = None
    unmeasured: int = 0

    @property
    def flagged(self) -> list[Verdict]:
        """The flagged lines, worst first (ties in dataset order)."""
        flagged = [v for v in self.verdicts if v.flags]
        return sorted(flagged, key=lambda v: -v.badness)

    def counts(self) -> dict[str, int]:
        return {k: sum(k in v.flags for v in self.verdicts) for k in KINDS}

    def summary(self) -> dict:
        """Clips, minutes, flagged per kind, minutes left once every flagged clip is dropped; per speaker."""
        speakers: dict[str, dict] = {}
        for v in self.verdicts:
            s = speakers.setdefault(v.line.row.speaker_name, {"clips": 0, "minutes": 0.0, "flagged": 0})
            s["clips"] += 1
            s["minutes"] += v.seconds / 60
            s["flagged"] += bool(v.flags)
        for s in speakers.values():
            s["minutes"] = round(s["minutes"], 2)
        total = sum(v.seconds for v in self.verdicts)
        kept = sum(v.seconds for v in self.verdicts if not v.flags)
        return {"clips": len(self.verdicts), "minutes": round(total / 60, 2), "flagged_clips": len(self.flagged),
                "flagged": self.counts(), "minutes_left": round(kept / 60, 2), "unmeasured": self.unmeasured,
                "speakers": speakers, "whisper_model": self.whisper_model, "thresholds": self.thresholds.to_dict()}

    def to_dict(self) -> dict:
        """What the report's JSON gains: `clips` (flagged, worst first) and `quality` (the summary)."""
        return {"clips": [v.to_dict() for v in self.flagged], "quality": self.summary()}

    def format(self, limit: int = 50) -> str:
        """The text report: the summary, then each flagged clip worst first (its line, file, flags, numbers)."""
        s = self.summary()
        per_kind = ", ".join(f"{n} {k}" for k, n in s["flagged"].items() if n) or "none"
        lines = [f"Quality: {s['clips']} clips, {s['minutes']:.1f} min; {s['flagged_clips']} flagged ({per_kind}); "
                 f"{s['minutes_left']:.1f} min left after dropping them."]
        if self.unmeasured:
            lines.append(f"{self.unmeasured} line(s) not measured (their audio is missing or unreadable).")
        if len(s["speakers"]) > 1:
            lines += [f"  speaker {name}: {d['clips']} clips, {d['minutes']:.1f} min, {d['flagged']} flagged"
                      for name, d in s["speakers"].items()]
        for v in self.flagged[:limit]:
            m = v.measurements
            lines.append(f"flagged {v.line.csv} line {v.line.row.line} ({v.line.row.audio_file}): "
                         f"{', '.join(v.flags)}; {_numbers(m)}")
        if len(self.flagged) > limit:
            lines.append(f"... and {len(self.flagged) - limit} more flagged clip(s) (--json lists them all)")
        if self.flagged:
            lines.append("Flags are warnings: flagged clips train unless dropped (python utils/formatter.py filter "
                         "DATASET, or the Data tab's review).")
        return "\n".join(lines)


def _numbers(m: dict) -> str:
    def num(key: str, fmt: str) -> str:
        return "n/a" if m.get(key) is None else format(m[key], fmt)

    return (f'cer {num("asr_cer", ".2f")}, heard "{m.get("transcript", "")}", background '
            f'{num("dnsmos_background", ".1f")}, '
            f'mos {num("dnsmos_overall", ".1f")}, clipping {num("clipping_ratio", ".3f")}, silence '
            f'{num("silence_share", ".2f")} (lead {num("leading_silence_s", ".1f")} s, trail '
            f'{num("trailing_silence_s", ".1f")} s), speech {num("speech_rms_db", ".0f")} dBFS, rate x'
            f'{num("rate_ratio", ".2f")}, speaker distance {num("speaker_distance", ".2f")}'
            + ("" if m.get("whisper_avg_logprob") is None else
               f', at cutting Whisper logprob {num("whisper_avg_logprob", ".2f")}, no-speech '
               f'{num("whisper_no_speech_prob", ".2f")}, compression {num("whisper_compression_ratio", ".2f")}'))


def assess(lines: Sequence[ClipLine], dataset_dir: Path, thresholds: GateThresholds | None = None, *,
           whisper_model: str | None = None, language: str | None = None, remeasure_with_model: bool = False,
           progress=None, measurer=None) -> QualityReport:
    """Measure (or read from the sidecar) every line's clip and judge it."""
    from utils.data.measure import ClipRef, measure_clips
    from utils.data.metadata import resolve_audio

    thresholds = thresholds or GateThresholds()
    from utils.quality.asr import default_whisper_model

    refs = {id(line): ClipRef(line.path, line.row.line, line.row.audio_file,
                              resolve_audio(line.path.parent, line.row.audio_file)) for line in lines}
    measured = measure_clips(refs.values(), dataset_dir, whisper_model=whisper_model, language=language,
                             measurer=measurer, remeasure_with_model=remeasure_with_model, progress=progress)
    pairs = [(line, measured.get(refs[id(line)].audio)) for line in lines]
    return QualityReport(judge(pairs, thresholds), thresholds, whisper_model or default_whisper_model(),
                         unmeasured=sum(m is None for _, m in pairs))


def stored_flags_note(csv_paths: Sequence[Path], language: str | None = None,
                      thresholds: GateThresholds | None = None) -> str | None:
    """One sentence for the train command: how many clips the stored measurements flag (no model loads, so
    it costs a hash of each clip); None when the dataset has no measurements file."""
    from utils.data.errors import DatasetError
    from utils.data.measure import MEASUREMENTS_FILE, MeasurementStore, audio_sha256
    from utils.data.metadata import parse_csv, read_language, resolve_audio

    folder = Path(csv_paths[0]).parent
    if not (folder / MEASUREMENTS_FILE).is_file():
        return None
    try:
        store = MeasurementStore.open(folder)
    except DatasetError as e:
        return f"Quality gate: the stored measurements are not used ({e})"
    language = language or read_language(folder)
    pairs, unmeasured = [], 0
    for path in csv_paths:
        for row in parse_csv(path).rows:
            try:
                data = resolve_audio(Path(path).parent, row.audio_file).read_bytes()
            except OSError:
                continue  # validation reports missing audio
            measured = store.get(audio_sha256(data), None, language)
            unmeasured += measured is None
            pairs.append((ClipLine(Path(path), row), measured))
    report = QualityReport(judge(pairs, thresholds or GateThresholds()), thresholds or GateThresholds())
    per_kind = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
    note = (f"Quality gate: {len(report.flagged)} of {len(report.verdicts)} measured clips are flagged"
            + (f" ({per_kind})" if per_kind else "") + f"; flagged clips train unless dropped (python "
            f"utils/formatter.py filter {folder}, or the Data tab's review)")
    if unmeasured:
        note += f"; {unmeasured} clip(s) added or changed since they were measured (validate --quality measures them)"
    return note + "."
