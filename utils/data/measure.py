"""Per-clip measurements of the quality gate, and the sidecar file that keeps them beside the dataset.

A clip's measurements depend on its audio alone (what Whisper hears, levels, silence, clipping, DNSMOS, the
speaker embedding), so they are stored under the sha256 of the audio file's bytes, with the Whisper model and
language that made the transcript. Whatever depends on the CSV's text (CER, speaking rate) or on the other clips
(distance from the speaker's average, rate against the median) is computed from them when flagging
(`utils/data/gate.py`): editing a line's text or dropping other lines re-measures nothing, and a changed clip is
measured again because its hash changes. The coqui CSVs are never touched here.

Clips our transcription tool cut (`utils/data/prepare.py`) also get, at cutting time, Whisper's own confidence
in the segments they were cut from (`MeasurementStore.put_cut`), under the same key: it is shown among the
measurements (`whisper_avg_logprob`, `whisper_no_speech_prob`, `whisper_compression_ratio`; the worst over the
clip's segments), not flagged: the fresh transcript's CER against the CSV text is what flags a wrong text.
Each rewrite by a measuring run leaves out the clips no CSV of the dataset names any more (train, eval,
dropped, and the backup of the first filter)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.data.errors import DatasetError, short_reason
from utils.data.progress import ProgressCallback, ProgressTracker
from utils.data.transcribe import Confidence
from utils.fsio import write_json_atomic

MEASUREMENTS_FILE = "quality_measurements.json"
FORMAT_VERSION = 1
CLIPPING_LEVEL = 0.99  # a sample at or above this share of full scale counts as clipped
SILENT_DB = -100.0  # the level given to digital silence (no sample above zero)
SAVE_EVERY_S = 30.0  # a long measuring run saves what it has this often, so an interrupted one keeps its work
CUT_KEY = "whisper_at_cut"  # an entry's record of Whisper's confidence when the clip was cut
CUT_FIELDS = {"whisper_avg_logprob": "avg_logprob", "whisper_no_speech_prob": "no_speech_prob",
              "whisper_compression_ratio": "compression_ratio"}  # the measurement's name: the Confidence field


@dataclass(frozen=True)
class ClipMeasurements:
    """What one clip's audio measures. Levels are dBFS; times seconds. `speech_*`: the stretches Silero VAD
    calls speech (None where it finds none); `dnsmos_*`: DNSMOS P.835 background and overall scores (1-5),
    None for silence; `embedding`: resemblyzer's speaker embedding, None when too little speech is left;
    `whisper_*`: Whisper's confidence when our transcription tool cut the clip (None for other clips)."""

    duration_s: float
    transcript: str
    speech_s: float
    speech_span_s: float | None  # first speech to last, pauses included: what a speaking rate is measured over
    leading_silence_s: float
    trailing_silence_s: float
    silence_share: float
    rms_db: float
    speech_rms_db: float | None
    clipping_ratio: float
    dnsmos_background: float | None
    dnsmos_overall: float | None
    embedding: tuple[float, ...] | None = None
    whisper_avg_logprob: float | None = None
    whisper_no_speech_prob: float | None = None
    whisper_compression_ratio: float | None = None

    def to_dict(self) -> dict:
        """What the file stores as the clip's measurements (the confidence at cutting is stored apart)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in CUT_FIELDS}
        data["embedding"] = None if self.embedding is None else [round(v, 6) for v in self.embedding]
        return data

    def with_cut(self, cut: dict | None) -> ClipMeasurements:
        """These measurements with the confidence recorded at cutting (`cut`, an entry's record, or None; one
        without the three numbers shows none)."""
        values = {name: cut.get(key) for name, key in CUT_FIELDS.items()} if isinstance(cut, dict) else {}
        if not values or not all(isinstance(v, int | float) for v in values.values()):
            return self
        return dataclasses.replace(self, **{name: float(v) for name, v in values.items()})

    @classmethod
    def from_dict(cls, data: dict) -> ClipMeasurements:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("embedding") is not None:
            values["embedding"] = tuple(float(v) for v in values["embedding"])
        return cls(**values)

    def summary(self) -> dict:
        """The measurements a report shows (everything but the embedding), rounded."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "embedding"}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}


def _db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20 * math.log10(rms) if rms > 0 else SILENT_DB


def _decode(data: bytes, where: Path) -> tuple[np.ndarray, int]:
    """The file's samples (frames x channels, float32) and rate."""
    import soundfile

    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise DatasetError(f"Audio file {where} cannot be read ({short_reason(e, 120)}): convert it to WAV or remove "
                           "its line.") from e
    return samples, int(rate)


class Measurer:
    """The models of the gate, each loaded once: faster-whisper (the transcript), Silero VAD (speech and
    silence), DNSMOS (noise, overall quality) and resemblyzer (the speaker embedding). DNSMOS and the embedding
    run on one thread each, beside Whisper (`measure`'s pool): Whisper keeps the cores, and no thread spins
    waiting for a core the other scorer holds."""

    def __init__(self, whisper_model: str | None = None, *, device: str = "cpu") -> None:
        from utils.quality.asr import WhisperAsr
        from utils.quality.mos import Dnsmos
        from utils.quality.speaker import SpeakerEncoder

        self.asr = WhisperAsr(whisper_model, device=device)
        self.mos = Dnsmos(threads=1)
        self.speaker = SpeakerEncoder(device=device, threads=1)

    @property
    def whisper_model(self) -> str:
        return self.asr.model_name

    def load(self, language: str | None) -> Measurer:
        """Load every model now (raises `ModelUnavailable` naming a missing one); check the Whisper model can
        transcribe `language`."""
        self.asr.load()
        self.asr.check_language(language)
        self.mos.load()
        self.speaker.load()
        return self

    def measure(self, data: bytes, where: Path, language: str | None,
                pool: ThreadPoolExecutor | None = None) -> ClipMeasurements:
        """Measure one clip given its file's bytes. With `pool` (one worker), DNSMOS and the speaker embedding
        run there while Whisper transcribes (each releases the GIL): the CPU's cores are used by both."""
        from utils.quality import audio as audio_io
        from utils.quality.duration import speech_chunks

        raw, rate = _decode(data, where)
        clipping = float(np.mean(np.abs(raw) >= CLIPPING_LEVEL)) if raw.size else 0.0
        audio = audio_io.load((raw, rate))
        duration = len(audio) / audio_io.SAMPLE_RATE
        chunks = speech_chunks(audio)
        speech = sum(end - start for start, end in chunks)
        voiced = np.concatenate([audio[int(s * audio_io.SAMPLE_RATE): int(e * audio_io.SAMPLE_RATE)]
                                 for s, e in chunks]) if chunks else None
        side = pool.submit(self._signal, audio, bool(chunks)) if pool is not None else None
        transcript = self.asr.transcribe(audio, language) if chunks else ""
        dnsmos, embedding = side.result() if side is not None else self._signal(audio, bool(chunks))
        return ClipMeasurements(
            duration_s=duration,
            transcript=transcript,
            speech_s=speech,
            speech_span_s=chunks[-1][1] - chunks[0][0] if chunks else None,
            leading_silence_s=chunks[0][0] if chunks else duration,
            trailing_silence_s=max(0.0, duration - chunks[-1][1]) if chunks else duration,
            silence_share=1.0 - min(1.0, speech / duration) if duration > 0 else 1.0,
            rms_db=_db(audio),
            speech_rms_db=None if voiced is None else _db(voiced),
            clipping_ratio=clipping,
            dnsmos_background=None if dnsmos is None else dnsmos[0],
            dnsmos_overall=None if dnsmos is None else dnsmos[1],
            embedding=None if embedding is None else tuple(float(v) for v in embedding),
        )

    def _signal(self, audio: np.ndarray, speech: bool) -> tuple[tuple[float, float] | None, np.ndarray | None]:
        """DNSMOS (background, overall) and the speaker embedding (None without speech)."""
        return self.mos.window_scores(audio), self.speaker.embed(audio) if speech else None


@dataclass
class MeasurementStore:
    """The sidecar file `<dataset>/quality_measurements.json`: measurements by the sha256 of a clip's audio,
    each with the Whisper model and language of its transcript."""

    path: Path
    entries: dict[str, dict]

    @classmethod
    def open(cls, dataset_dir: Path) -> MeasurementStore:
        """The dataset's store (empty when there is none yet); a damaged file raises DatasetError saying so."""
        path = Path(dataset_dir) / MEASUREMENTS_FILE
        if not path.is_file():
            return cls(path, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {data.get('version')!r}, not {FORMAT_VERSION}")
            entries = dict(data["clips"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DatasetError(f"{path} is damaged ({short_reason(e, 100)}): delete it, and validate --quality "
                               "measures the clips again.") from e
        return cls(path, entries)

    def get(self, sha256: str, whisper_model: str | None, language: str | None) -> ClipMeasurements | None:
        """The stored measurements of audio with this hash; with `whisper_model`, only those made with it."""
        entry = self.entries.get(sha256)
        if entry is None or entry.get("language") != language:
            return None
        if whisper_model is not None and entry.get("whisper_model") != whisper_model:
            return None
        try:
            return ClipMeasurements.from_dict(entry["measurements"]).with_cut(entry.get(CUT_KEY))
        except (KeyError, TypeError, ValueError):
            return None  # an entry of another layout (or only a record of the cutting): measured again

    def put(self, sha256: str, measured: ClipMeasurements, whisper_model: str, language: str | None) -> None:
        """Store a clip's measurements (a record of its cutting stays)."""
        cut = self.entries.get(sha256, {}).get(CUT_KEY)
        self.entries[sha256] = {"whisper_model": whisper_model, "language": language,
                                "measured_at": round(time.time()), "measurements": measured.to_dict(),
                                **({CUT_KEY: cut} if cut else {})}

    def put_cut(self, sha256: str, confidence: Confidence, whisper_model: str) -> None:
        """Record Whisper's confidence in the segments a clip was cut from (its measurements, if any, stay)."""
        entry = self.entries.setdefault(sha256, {})
        entry[CUT_KEY] = {"whisper_model": whisper_model,
                          **{key: round(getattr(confidence, key), 6) for key in CUT_FIELDS.values()}}

    def save(self, keep: set[str] | None = None) -> None:
        """Write the file atomically (a crash leaves the previous one); with `keep`, only those clips' entries."""
        if keep is not None:
            self.entries = {k: v for k, v in self.entries.items() if k in keep}
        write_json_atomic(self.path, {"version": FORMAT_VERSION, "clips": self.entries}, indent=None,
                          ensure_ascii=False)


def audio_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_cut_confidence(dataset_dir: Path, clips: Iterable[tuple[Path, Confidence | None]],
                          whisper_model: str) -> None:
    """Store Whisper's confidence in the segments each new clip (its written file) was cut from, under the key
    the gate measures the clip by; clips without one are left out, and no file is written for none."""
    known = [(path, confidence) for path, confidence in clips if confidence is not None]
    if not known:
        return
    store = MeasurementStore.open(dataset_dir)
    for path, confidence in known:
        store.put_cut(audio_sha256(Path(path).read_bytes()), confidence, whisper_model)
    store.save()


@dataclass(frozen=True)
class ClipRef:
    """A CSV line's clip: where the line is and which audio file it names (absolute)."""

    csv: Path
    line: int
    audio_file: str
    audio: Path


def measure_clips(clips: Iterable[ClipRef], dataset_dir: Path, *, whisper_model: str | None = None,
                  language: str | None = None, measurer: Measurer | None = None, remeasure_with_model: bool = False,
                  progress: ProgressCallback | None = None) -> dict[Path, ClipMeasurements | None]:
    """The measurements of each clip's audio file (None for a missing or unreadable file), from the store where
    the audio is unchanged, else measured now (models loaded only when something needs measuring) and stored.
    `remeasure_with_model`: reuse only measurements made with `whisper_model`. A file rewritten here keeps only
    the clips some CSV of the dataset still names."""
    clips = list(dict.fromkeys(clips))
    store = MeasurementStore.open(dataset_dir)
    wanted = whisper_model if remeasure_with_model else None
    found: dict[Path, ClipMeasurements | None] = {}
    digests: dict[Path, str] = {}
    todo: list[tuple[Path, bytes, str]] = []
    for clip in clips:
        if clip.audio in found or clip.audio in digests:
            continue
        try:
            data = clip.audio.read_bytes()
        except OSError:
            found[clip.audio] = None  # validate reports missing and unreadable audio itself
            continue
        digest = digests[clip.audio] = audio_sha256(data)
        cached = store.get(digest, wanted, language)
        if cached is not None:
            found[clip.audio] = cached
        else:
            todo.append((clip.audio, data, digest))
    keep = set(digests.values()) | named_clip_digests(Path(dataset_dir), skip=set(digests))
    if todo:
        _measure_missing(todo, store, found, measurer or Measurer(whisper_model), language, progress, keep)
    elif set(store.entries) - keep:
        store.save(keep)
    return found


def named_clip_digests(dataset_dir: Path, skip: Iterable[Path] = ()) -> set[str]:
    """The sha256 of each audio file the dataset's CSVs name (train, eval, dropped lines, and the backup the
    first filter made), but those in `skip`: the clips whose measurements the sidecar keeps."""
    from utils.data.csvset import BACKUP_DIR, SET_FILES
    from utils.data.metadata import parse_csv, resolve_audio

    paths = {resolve_audio(dataset_dir, row.audio_file) for folder in (dataset_dir, dataset_dir / BACKUP_DIR)
             for name in SET_FILES if (folder / name).is_file() for row in parse_csv(folder / name).rows}
    out = set()
    for path in paths - set(skip):
        try:
            out.add(audio_sha256(path.read_bytes()))
        except OSError:
            continue  # a missing clip has no measurements to keep
    return out


def _measure_missing(todo: list[tuple[Path, bytes, str]], store: MeasurementStore,
                     found: dict[Path, ClipMeasurements | None], measurer: Measurer, language: str | None,
                     progress: ProgressCallback | None, keep: set[str]) -> None:
    measurer.load(language)
    tracker = ProgressTracker("measure", len(todo), float(len(todo)), progress)
    last_save = time.monotonic()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-signal") as pool:
        for path, data, digest in todo:
            _measure_one(measurer, pool, path, data, digest, store, found, language)
            tracker.files_done += 1
            tracker.work_done += 1
            tracker.report(path.name, force=False)
            if time.monotonic() - last_save > SAVE_EVERY_S:
                store.save(keep)
                last_save = time.monotonic()
    store.save(keep)
    tracker.report("done")


def _measure_one(measurer: Measurer, pool: ThreadPoolExecutor, path: Path, data: bytes, digest: str,
                 store: MeasurementStore, found: dict[Path, ClipMeasurements | None], language: str | None) -> None:
    try:
        measured = measurer.measure(data, path, language, pool)
    except DatasetError:
        found[path] = None  # unreadable audio: validate's own check names it
    else:
        store.put(digest, measured, measurer.whisper_model, language)
        found[path] = measured.with_cut(store.entries[digest].get(CUT_KEY))
