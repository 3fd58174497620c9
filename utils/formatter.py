"""Datasets for XTTS fine-tuning: recordings -> transcribed clips -> coqui CSVs; import and validate datasets.

A dataset is a folder (usually `<output>/dataset/`) holding:

    wavs/                 clips, 22.05 kHz mono 16-bit WAV
    metadata_train.csv    audio_file|text|speaker_name   (header; paths relative to the CSV)
    metadata_eval.csv     same format
    lang.txt              the dataset's language code (en, de, am, ...)
    sources.json          which recordings made which clips, so that adding recordings redoes no old ones

Three entry points, called by the CLI below and by the WebUI alike:

    prepare_from_audio(inputs, dataset_dir, transcriber, options, progress)   recordings -> dataset
    import_dataset(source, dataset_dir, options, progress)                    LJSpeech or coqui CSVs -> dataset
    validate_dataset(train_csv, eval_csv, ...) -> ValidationReport             a report a person reads

and `load_samples(csv_path, language)` gives the trainer its sample list. Anticipated faults raise
`DatasetError` (a ValueError) with one sentence naming the file, the line and what to do.

CLI:  python utils/formatter.py transcribe|import|validate ...   (see --help)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `utils` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from utils.transcribe import DEFAULT_WHISPER_MODEL, Transcriber, TranscriberUnavailable, Transcript, Word

SAMPLE_RATE = 22050
"""XTTS's input sample rate: every clip this module writes is stored at it."""

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus", ".aac", ".wma", ".webm", ".mp4")
CSV_COLUMNS = ("audio_file", "text", "speaker_name")
DELIMITER = "|"
TRAIN_CSV = "metadata_train.csv"
EVAL_CSV = "metadata_eval.csv"
LANG_FILE = "lang.txt"
CLIPS_DIR = "wavs"
MANIFEST = "sources.json"
DEFAULT_SPEAKER = "coqui"
XTTS_MIN_AUDIO_SECONDS = 0.5  # XTTS's dataset refuses shorter clips (tts/layers/xtts/trainer/dataset.py)
XTTS_MAX_TEXT_TOKENS = 200  # GPTArgs.max_text_length: longer lines are skipped by the trainer
XTTS_CHAR_LIMITS = {  # VoiceBpeTokenizer.char_limits: XTTS warns (and may truncate audio) above these
    "en": 250, "de": 253, "fr": 273, "es": 239, "it": 213, "pt": 203, "pl": 224, "zh": 82, "ar": 166, "cs": 186,
    "ru": 182, "nl": 251, "tr": 226, "ja": 71, "hu": 224, "ko": 95, "hi": 150,
}
EXTEND_VOCAB_HINT = (
    "extend the vocabulary with this dataset's text (utils/vocab.py: the extended-vocabulary path of training, "
    "which adds the new script's tokens and expands the base model's text rows once) and validate against "
    "the extended vocab.json"
)
_CLOSING = r"[\"'\u201d\u2019\u00bb)\]]*$"  # quotes and brackets that may follow the mark
SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f\u1362\u1367\u061f\u06d4\u0964\u0965]+" + _CLOSING)
CLAUSE_END = re.compile(r"[,;:\u060c\u3001\uff0c\uff1b\uff1a\u1363\u1364\u1365\u2014\u2013-]+" + _CLOSING)
MAX_MERGE_GAP_SECONDS = 1.5  # two sentences further apart than this are not joined into one clip


class DatasetError(ValueError):
    """A dataset (or a file given for one) that cannot be used as it is; the message says where and what to do."""


# ----------------------------------------------------------------------------------------------- options


def _opt(default: Any, help: str, *, aliases: Sequence[str] = (), choices: Sequence[str] | None = None,
         type: Callable | None = None) -> Any:
    """A dataclass field that also describes its command-line flag (help, aliases) for `add_option_arguments`."""
    return field(default=default, metadata={"help": help, "aliases": tuple(aliases), "choices": choices,
                                            "type": type})


@dataclass
class PrepareOptions:
    """How recordings become a dataset. Every default lives here; the CLI and the WebUI read them from here."""

    language: str | None = _opt(None, "language of the speech (en, de, am, ...); empty: detect it (the dataset's "
                                "lang.txt wins once it exists)", type=str)
    whisper_model: str = _opt(DEFAULT_WHISPER_MODEL, "faster-whisper model size (tiny ... large-v3, turbo) or a "
                              "folder holding a converted model")
    device: str = _opt("auto", "device for Whisper", choices=("auto", "cpu", "cuda"))
    compute_type: str = _opt("default", "CTranslate2 compute type for Whisper (default, int8, float16, ...)")
    min_clip_seconds: float = _opt(3.0, "shortest clip kept (XTTS conditions on 3 s or more of each clip)")
    max_clip_seconds: float = _opt(11.0, "longest clip written, padding included", aliases=("--max_audio_length",))
    padding_seconds: float = _opt(0.2, "silence kept before and after each clip's words where there is room")
    eval_fraction: float = _opt(0.15, "share of the clips that goes to metadata_eval.csv")
    seed: int = _opt(1234, "seed of the train/eval split (same seed and files: same split)")
    speaker_name: str = _opt(DEFAULT_SPEAKER, "speaker name written in the CSVs")

    def check(self) -> None:
        """Raise ValueError naming the option for a bad value, before any audio is touched."""
        _check_bounds(self.min_clip_seconds, self.max_clip_seconds, self.eval_fraction, self.speaker_name)
        if not 0 <= self.padding_seconds <= 2:
            raise ValueError(f"padding_seconds must be between 0 and 2, not {self.padding_seconds}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not '{self.device}'.")
        _check_language(self.language)


@dataclass
class ImportOptions:
    """How an existing dataset (LJSpeech or coqui CSVs) becomes ours."""

    language: str | None = _opt(None, "language of the dataset; empty: the source's lang.txt", type=str)
    copy_audio: bool = _opt(True, "copy the audio into the dataset (as 22.05 kHz mono WAV); --no-copy_audio "
                            "refers to the files where they are")
    min_clip_seconds: float = _opt(3.0, "lines whose audio is shorter are left out (XTTS conditions on >= 3 s)")
    max_clip_seconds: float = _opt(11.0, "lines whose audio is longer are left out", aliases=("--max_audio_length",))
    eval_fraction: float = _opt(0.15, "share of the lines that goes to metadata_eval.csv, when the source has no "
                                "eval file")
    seed: int = _opt(1234, "seed of the train/eval split")
    speaker_name: str | None = _opt(None, "speaker name for every line; empty: keep the source's (LJSpeech: coqui)",
                                    type=str)
    ljspeech_text: str = _opt("normalized", "LJSpeech column to use as text", choices=("normalized", "raw"))

    def check(self) -> None:
        _check_bounds(self.min_clip_seconds, self.max_clip_seconds, self.eval_fraction, self.speaker_name or "x")
        if self.ljspeech_text not in ("normalized", "raw"):
            raise ValueError(f"ljspeech_text must be 'normalized' or 'raw', not '{self.ljspeech_text}'.")
        _check_language(self.language)


def _check_bounds(min_s: float, max_s: float, eval_fraction: float, speaker: str) -> None:
    if min_s < 0:
        raise ValueError(f"min_clip_seconds must be 0 or more, not {min_s}.")
    if not max_s > max(min_s, XTTS_MIN_AUDIO_SECONDS):
        raise ValueError(f"max_clip_seconds ({max_s}) must be above min_clip_seconds ({min_s}) and "
                         f"{XTTS_MIN_AUDIO_SECONDS} s.")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1 (the trainer needs an eval line), "
                         f"not {eval_fraction}.")
    if DELIMITER in speaker or "\n" in speaker or not speaker.strip():
        raise ValueError(f"speaker_name '{speaker}' must be a non-empty name without '{DELIMITER}'.")


def _check_language(language: str | None) -> None:
    if language is not None and language.strip() and not re.fullmatch(r"[a-z]{2,3}(-[a-z]{2,4})?", language.strip()):
        raise ValueError(f"language '{language}' is not a language code such as en, de, zh-cn or am.")


def add_option_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one --flag per field of the options dataclass `cls` (with its help, default, choices and aliases)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        flags = [f"--{f.name}", *meta.get("aliases", ())]
        if "_" in f.name:
            flags.insert(1, f"--{f.name.replace('_', '-')}")
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": f"{meta.get('help', '')} "
                                  f"(default: {f.default})"}
        if isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = meta.get("type") or type(f.default)
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
        parser.add_argument(*flags, **kwargs)


def options_from_args(cls: type, args: argparse.Namespace):
    """Build the options dataclass `cls` from parsed arguments (empty strings mean None for optional text)."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name)
        if isinstance(value, str) and not value.strip() and f.default is None:
            value = None
        values[f.name] = value
    return cls(**values)


# ----------------------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    """A progress event for the console and the WebUI. `remaining_s` is None until it can be estimated."""

    stage: str
    files_done: int
    files_total: int
    clips: int
    elapsed_s: float
    remaining_s: float | None
    current: str = ""

    def __str__(self) -> str:
        remaining = "?" if self.remaining_s is None else _clock(self.remaining_s)
        current = f" - {self.current}" if self.current else ""
        return (f"[{self.stage}] files {self.files_done}/{self.files_total}, clips {self.clips}, "
                f"elapsed {_clock(self.elapsed_s)}, remaining {remaining}{current}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ProgressCallback = Callable[[Progress], None]


class _ProgressTracker:
    """Turns work done (seconds of audio, or lines) into Progress events with a remaining-time estimate."""

    def __init__(self, stage: str, files_total: int, work_total: float, callback: ProgressCallback | None) -> None:
        self.stage, self.files_total, self.work_total, self.callback = stage, files_total, work_total, callback
        self.started = time.monotonic()
        self.last_report = -math.inf
        self.files_done = 0
        self.clips = 0
        self.work_done = 0.0

    def report(self, current: str = "", work_in_file: float = 0.0, *, force: bool = True) -> None:
        """Send an event; unforced ones (within a file) at most twice a second."""
        now = time.monotonic()
        if self.callback is None or (not force and now - self.last_report < 0.5):
            return
        self.last_report = now
        elapsed = now - self.started
        done = self.work_done + work_in_file
        remaining = None
        if done > 0 and self.work_total > 0:
            remaining = max(0.0, elapsed * (self.work_total - done) / done)
        if self.files_done >= self.files_total:
            remaining = 0.0
        self.callback(Progress(self.stage, self.files_done, self.files_total, self.clips, elapsed, remaining, current))


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    seconds: float


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 (frames, channels) and its sample rate: libsndfile first (wav, flac, ogg,
    mp3), then FFmpeg through torchcodec (m4a, and anything libsndfile refuses)."""
    import soundfile as sf

    if not path.is_file():
        raise DatasetError(f"Audio file {path} does not exist.")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if data.size:
            return data, int(rate)
    except (RuntimeError, ValueError, TypeError):
        pass  # not a format libsndfile reads: FFmpeg below
    try:
        from torchcodec.decoders import AudioDecoder

        samples = AudioDecoder(str(path)).get_all_samples()
        data = samples.data.numpy().T.astype(np.float32, copy=False)
        rate = int(samples.sample_rate)
    except Exception as e:  # torchcodec raises RuntimeError/ValueError/IndexError for broken or foreign files
        reason = _short(re.sub(r"^.*?\.cpp:\d+,\s*", "", str(e)).replace(str(path), "the file"), 120)
        raise DatasetError(f"Audio file {path} cannot be read ({reason}): it is not audio in a format FFmpeg "
                           "decodes, or it is damaged; re-export it as WAV or FLAC.") from e
    if data.size == 0:
        raise DatasetError(f"Audio file {path} holds no samples: re-export it.")
    return data, rate


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A file as mono float32 at `sample_rate` (channels averaged, resampled with soxr); raises DatasetError."""
    data, rate = _decode(Path(path))
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return _resample(mono, rate, sample_rate)


def _resample(mono: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and duration, from the header where possible; raises DatasetError."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Audio file {path} does not exist.")
    try:
        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return AudioInfo(int(info.samplerate), int(info.channels), info.frames / info.samplerate)
    except (RuntimeError, ValueError, TypeError):
        pass
    try:
        from torchcodec.decoders import AudioDecoder

        meta = AudioDecoder(str(path)).metadata
        if meta.duration_seconds and meta.sample_rate and meta.num_channels:
            return AudioInfo(int(meta.sample_rate), int(meta.num_channels), float(meta.duration_seconds))
    except Exception:  # any failure here: the full decode below says what is wrong
        pass
    data, rate = _decode(path)
    return AudioInfo(rate, data.shape[1], data.shape[0] / rate)


def write_clip(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically (a temporary file renamed into place)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def find_audio_files(inputs: Iterable[str | Path]) -> list[Path]:
    """The audio files among `inputs` (files, or folders searched recursively), in a stable order."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS))
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetError(f"Audio input {path} does not exist: pass audio files or folders that hold them.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DatasetError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) found in "
                           f"{', '.join(str(i) for i in inputs)}.")
    return unique


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- clip planning


@dataclass(frozen=True)
class ClipPlan:
    """Where to cut one clip from a recording, and what is said in it."""

    start: float
    end: float
    text: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _words_of(transcript: Transcript) -> list[Word]:
    """All words in time order; a segment without word timestamps counts as one word."""
    words: list[Word] = []
    for seg in transcript.segments:
        items = seg.words or (Word(seg.start, seg.end, " " + seg.text.strip()),)
        for w in items:
            if w.text.strip() and w.end >= w.start:
                words.append(w)
    words.sort(key=lambda w: (w.start, w.end))
    return words


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
               padding_seconds: float = 0.2, duration: float | None = None) -> tuple[list[ClipPlan], list[str]]:
    """Sentence-level clips between `min_seconds` and `max_seconds` (padding included) from a transcript's
    words: sentences longer than the maximum are split at pauses and commas, shorter ones joined with a
    neighbour. A clip's edges never reach into the neighbouring words. Returns (clips, reasons for text left out).
    """
    words = _words_of(transcript)
    if duration is None:
        duration = transcript.duration if transcript.duration is not None else (words[-1].end if words else 0.0)
    pieces = [p for s in _split_sentences(words) for p in _split_long(s, max_seconds, min_seconds)]
    pieces = _merge_short(pieces, min_seconds, max_seconds)
    index = {id(w): i for i, w in enumerate(words)}
    clips, left_out = [], []
    for piece in pieces:
        text = _text_of(piece)
        first, last = index[id(piece[0])], index[id(piece[-1])]
        lo = 0.0 if first == 0 else max(0.0, (words[first - 1].end + piece[0].start) / 2)
        hi = duration if last == len(words) - 1 else (piece[-1].end + words[last + 1].start) / 2
        lo, hi = min(lo, piece[0].start), max(hi, min(piece[-1].end, duration))
        start, end = _padded(piece[0].start, min(piece[-1].end, duration), lo, hi, padding_seconds,
                             min_seconds, max_seconds)
        if not text:
            continue
        if end - start > max_seconds + 1e-6:
            left_out.append(f"{_clock_ms(piece[0].start)}-{_clock_ms(piece[-1].end)} is longer than "
                            f"{max_seconds:g} s even without padding: \"{_ellipsis(text)}\"")
        elif end - start < max(min_seconds, XTTS_MIN_AUDIO_SECONDS) - 1e-6:
            left_out.append(f"{_clock_ms(piece[0].start)}-{_clock_ms(piece[-1].end)} is shorter than "
                            f"{min_seconds:g} s: \"{_ellipsis(text)}\"")
        else:
            clips.append(ClipPlan(start, end, text))
    return clips, left_out


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


def _ellipsis(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------- dataset files


@dataclass(frozen=True)
class Row:
    """One line of a coqui CSV: `line` is its line number in the file (the header is line 1)."""

    line: int
    audio_file: str
    text: str
    speaker_name: str


@dataclass
class DatasetSummary:
    """What `prepare_from_audio` or `import_dataset` did."""

    dataset_dir: Path
    language: str
    files_added: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    clips_added: int = 0
    seconds_added: float = 0.0
    train_lines: int = 0
    eval_lines: int = 0
    left_out: list[str] = field(default_factory=list)

    @property
    def train_csv(self) -> Path:
        return self.dataset_dir / TRAIN_CSV

    @property
    def eval_csv(self) -> Path:
        return self.dataset_dir / EVAL_CSV

    def format(self, max_left_out: int = 20) -> str:
        lines = [
            f"Dataset {self.dataset_dir} ({self.language}): {self.clips_added} clips added "
            f"({self.seconds_added / 60:.1f} min) from {len(self.files_added)} file(s); now {self.train_lines} "
            f"train and {self.eval_lines} eval lines.",
        ]
        if self.eval_lines == 0:
            lines.append(f"{EVAL_CSV} has no lines yet: the trainer needs at least one; add more audio.")
        if self.files_skipped:
            lines.append(f"{len(self.files_skipped)} file(s) already in the dataset, not redone: "
                         + ", ".join(self.files_skipped[:5]) + (" ..." if len(self.files_skipped) > 5 else ""))
        if self.left_out:
            lines.append(f"{len(self.left_out)} stretch(es) left out:")
            lines += [f"  {r}" for r in self.left_out[:max_left_out]]
            if len(self.left_out) > max_left_out:
                lines.append(f"  ... and {len(self.left_out) - max_left_out} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dataset_dir"] = str(self.dataset_dir)
        return d


def dataset_dir_for(output: str | Path) -> Path:
    """The dataset folder inside an output folder: `<output>/dataset`."""
    return Path(output) / "dataset"


def _write_csv(path: Path, rows: Iterable[tuple[str, str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    _write_text_atomically(path, buffer.getvalue())


def _write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Dataset:
    """An output dataset folder being added to: its rows, its language and its record of sources."""

    def __init__(self, folder: Path, language: str | None) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DatasetError(f"Dataset folder {self.folder} is a file: pass a folder (it is created if missing).")
        self.train: list[tuple[str, str, str]] = []
        self.eval: list[tuple[str, str, str]] = []
        for name, rows in ((TRAIN_CSV, self.train), (EVAL_CSV, self.eval)):
            path = self.folder / name
            if path.exists():
                rows.extend((r.audio_file, r.text, r.speaker_name) for r in read_metadata(path))
        self.manifest: dict[str, dict] = {}
        manifest = self.folder / MANIFEST
        if manifest.exists():
            try:
                self.manifest = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
            except (ValueError, KeyError, TypeError) as e:
                raise DatasetError(f"{manifest} is damaged ({_short(e)}): move it away to rebuild the record of "
                                   "sources (recordings already done would then be done again).") from e
        self.language = self._language(language)

    def _language(self, language: str | None) -> str | None:
        lang_file = self.folder / LANG_FILE
        existing = lang_file.read_text(encoding="utf-8").strip() if lang_file.exists() else None
        language = language.strip() if language and language.strip() else None
        if existing and language and existing != language:
            raise DatasetError(f"Dataset {self.folder} is in '{existing}' ({lang_file}), not '{language}': a dataset "
                               "holds one language; use another output folder for this one.")
        return existing or language

    def set_language(self, language: str) -> None:
        """Fix the dataset's language (the first one given or detected) and record it in lang.txt."""
        if self.language is None:
            self.language = language
        if not (self.folder / LANG_FILE).exists():
            _write_text_atomically(self.folder / LANG_FILE, self.language + "\n")

    @property
    def audio_files(self) -> set[str]:
        return {r[0] for r in self.train} | {r[0] for r in self.eval}

    def add(self, rows: list[tuple[str, str, str]], eval_fraction: float, seed: int) -> tuple[int, int]:
        """Append rows, choosing which go to eval so that the whole dataset keeps about `eval_fraction` in eval
        (at least one line, and at least one left for training). Old lines never move. The choice depends only
        on the seed and the clip names, not on the order they were made in."""
        total = len(self.train) + len(self.eval) + len(rows)
        target = max(1, round(eval_fraction * total)) if total >= 2 else 0
        wanted = min(max(0, target - len(self.eval)), len(rows), max(0, total - 1 - len(self.eval)))
        ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r[0]}".encode()).hexdigest())
        to_eval = {r[0] for r in ranked[:wanted]}
        new_eval = [r for r in rows if r[0] in to_eval]
        new_train = [r for r in rows if r[0] not in to_eval]
        self.eval.extend(new_eval)
        self.train.extend(new_train)
        return len(new_train), len(new_eval)

    def save(self) -> None:
        """Write both CSVs and the record of sources, each atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_csv(self.folder / TRAIN_CSV, self.train)
        _write_csv(self.folder / EVAL_CSV, self.eval)
        _write_text_atomically(self.folder / MANIFEST, json.dumps({"version": 1, "sources": self.manifest},
                                                                  indent=1, ensure_ascii=False) + "\n")


def _safe_stem(name: str, limit: int = 40) -> str:
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFKC", name), flags=re.UNICODE).strip("._")
    return stem[:limit] or "audio"


# ----------------------------------------------------------------------------------------------- from recordings


def prepare_from_audio(
    inputs: Iterable[str | Path],
    dataset_dir: str | Path,
    transcriber: Transcriber,
    options: PrepareOptions | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetSummary:
    """Transcribe recordings, cut them into clips at 22.05 kHz mono and add them to the dataset in
    `dataset_dir` (created if missing). Recordings already in the dataset (same content) are skipped; the CSVs
    are rewritten after each recording, so a stop loses at most the recording in progress."""
    options = options or PrepareOptions()
    options.check()
    files = find_audio_files(list(inputs))
    dataset = _Dataset(Path(dataset_dir), options.language)
    summary = DatasetSummary(Path(dataset_dir), dataset.language or "")

    digests = {path: file_sha256(path) for path in files}
    # content order, not argument order: the same recordings and seed give the same split whatever their order
    first_of = {d: p for p, d in reversed(digests.items())}  # one file per content: copies are not done twice
    todo = sorted((p for p in first_of.values() if digests[p] not in dataset.manifest), key=lambda p: digests[p])
    summary.files_skipped = [str(p) for p in files if p not in todo]
    durations = {p: _duration_or_zero(p) for p in todo}
    tracker = _ProgressTracker("transcribe", len(todo), sum(durations.values()), progress)
    tracker.report("starting")
    for path in todo:
        tracker.report(path.name)
        audio = load_audio(path, SAMPLE_RATE)
        transcript = transcriber.transcribe(path, dataset.language, on_progress=lambda s, p=path: tracker.report(
            p.name, min(s, durations[p]), force=False))
        language = (dataset.language or _xtts_language(transcript.language)).strip()
        if not language:
            raise DatasetError(f"No language given, and the transcriber detected none for {path}: pass --language.")
        dataset.set_language(language)
        plans, left_out = plan_clips(transcript, min_seconds=options.min_clip_seconds,
                                     max_seconds=options.max_clip_seconds, padding_seconds=options.padding_seconds,
                                     duration=len(audio) / SAMPLE_RATE)
        stem = f"{_safe_stem(path.stem)}_{digests[path][:8]}"
        rows, max_frames = [], int(options.max_clip_seconds * SAMPLE_RATE)
        for i, plan in enumerate(plans):
            rel = f"{CLIPS_DIR}/{stem}_{i:04d}.wav"
            first = math.floor(plan.start * SAMPLE_RATE)
            write_clip(dataset.folder / rel, audio[first: min(math.ceil(plan.end * SAMPLE_RATE), first + max_frames)])
            rows.append((rel, plan.text, options.speaker_name))
            summary.seconds_added += plan.seconds
        summary.left_out += [f"{path.name} {r}" for r in left_out]
        if not plans:
            summary.left_out.append(f"{path.name}: no speech long enough for a clip was found")
        dataset.add(rows, options.eval_fraction, options.seed)
        dataset.manifest[digests[path]] = {"file": str(path), "clips": [r[0] for r in rows],
                                           "language": language, "added": time.strftime("%Y-%m-%d %H:%M:%S")}
        dataset.save()
        summary.files_added.append(str(path))
        summary.clips_added += len(rows)
        tracker.files_done += 1
        tracker.clips += len(rows)
        tracker.work_done += durations[path]
        tracker.report(path.name)
    if not todo and not (dataset.folder / TRAIN_CSV).exists():
        dataset.save()
    summary.language = dataset.language or ""
    summary.train_lines, summary.eval_lines = len(dataset.train), len(dataset.eval)
    return summary


def _xtts_language(whisper_code: str | None) -> str:
    """XTTS's code for a language Whisper detected (Whisper's 'zh' is XTTS's 'zh-cn')."""
    code = (whisper_code or "").strip().lower()
    return "zh-cn" if code == "zh" else code


def _duration_or_zero(path: Path) -> float:
    try:
        return audio_info(path).seconds
    except DatasetError:
        return 0.0  # the transcriber or the decoder will say what is wrong with it


# ----------------------------------------------------------------------------------------------- import


def detect_format(source: str | Path) -> str:
    """'ljspeech' for a folder (or metadata.csv) in LJSpeech's layout, 'coqui' for coqui CSVs."""
    source = Path(source)
    if source.is_dir():
        if (source / "metadata.csv").is_file():
            return "ljspeech"
        if (source / TRAIN_CSV).is_file():
            return "coqui"
        raise DatasetError(f"Folder {source} holds neither metadata.csv (LJSpeech) nor {TRAIN_CSV} (coqui): "
                           "pass the dataset's folder or its CSV file.")
    if not source.is_file():
        raise DatasetError(f"Dataset {source} does not exist: pass a dataset folder or its CSV file.")
    first = source.read_bytes()[:4096].decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    return "coqui" if first.strip().split(DELIMITER)[:1] == ["audio_file"] else "ljspeech"


def read_ljspeech(metadata_csv: str | Path, text: str = "normalized") -> list[Row]:
    """LJSpeech's metadata.csv (`id|text|normalized text`, no header, no quoting) as rows naming wavs/<id>.wav."""
    path = Path(metadata_csv)
    rows = []
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        cols = line.split(DELIMITER)
        if len(cols) < 2 or not cols[0].strip():
            raise DatasetError(f"{path} line {number} is not 'id|text|normalized text' as in LJSpeech: fix the line "
                               "or import the file as coqui CSV.")
        chosen = cols[2] if text == "normalized" and len(cols) > 2 and cols[2].strip() else cols[1]
        audio = cols[0].strip()
        audio = audio if audio.lower().endswith(AUDIO_EXTENSIONS) else f"wavs/{audio}.wav"
        rows.append(Row(number, audio, chosen.strip(), DEFAULT_SPEAKER))
    if not rows:
        raise DatasetError(f"{path} has no lines: LJSpeech's metadata.csv has one 'id|text|normalized' line per clip.")
    return rows


def import_dataset(
    source: str | Path,
    dataset_dir: str | Path,
    options: ImportOptions | None = None,
    progress: ProgressCallback | None = None,
    *,
    eval_csv: str | Path | None = None,
    source_format: str = "auto",
) -> DatasetSummary:
    """Add an existing dataset to the one in `dataset_dir`: LJSpeech (a folder with metadata.csv and wavs/, or
    the metadata.csv) or coqui CSVs (a folder with metadata_train.csv [+ metadata_eval.csv], or a CSV, plus
    `eval_csv`). Audio is copied as 22.05 kHz mono WAV (or referenced in place with `copy_audio=False`); lines
    whose audio is missing, unreadable or outside the clip bounds are left out and listed in the summary. Lines
    already imported (same audio content) are skipped. A source without an eval file is split by the seed."""
    options = options or ImportOptions()
    options.check()
    source = Path(source).expanduser()
    fmt = detect_format(source) if source_format == "auto" else source_format
    if fmt not in ("ljspeech", "coqui"):
        raise ValueError(f"source_format must be auto, ljspeech or coqui, not '{source_format}'.")
    parts = _source_parts(source, fmt, eval_csv, options)
    root = parts[0][0].parent
    language = options.language or _read_lang(root)
    if not language:
        raise DatasetError(f"The language of {source} is unknown (no {LANG_FILE} there): pass --language.")
    dataset = _Dataset(Path(dataset_dir), language)
    dataset.set_language(language)
    summary = DatasetSummary(Path(dataset_dir), dataset.language or language)

    total = sum(len(rows) for _, rows, _ in parts)
    tracker = _ProgressTracker("import", total, float(total), progress)
    tracker.report("starting")
    known = {v.get("file") for v in dataset.manifest.values()}
    taken = dataset.audio_files
    for csv_path, rows, is_eval in parts:
        added: list[tuple[str, str, str]] = []
        for row in rows:
            tracker.files_done += 1
            tracker.work_done += 1
            src = _resolve(csv_path.parent, row.audio_file)
            where = f"{csv_path.name} line {row.line} ({row.audio_file})"
            speaker = options.speaker_name or row.speaker_name or DEFAULT_SPEAKER
            if not row.text.strip():
                summary.left_out.append(f"{where}: empty text")
                continue
            if str(src) in known:
                summary.files_skipped.append(str(src))
                continue
            try:
                info = audio_info(src)
            except DatasetError as e:
                summary.left_out.append(f"{where}: {e}")
                continue
            if not options.min_clip_seconds <= info.seconds <= options.max_clip_seconds:
                summary.left_out.append(f"{where}: {info.seconds:.2f} s is outside {options.min_clip_seconds:g}-"
                                        f"{options.max_clip_seconds:g} s")
                continue
            digest = file_sha256(src)
            if digest in dataset.manifest:
                summary.files_skipped.append(str(src))
                continue
            rel = _place_audio(src, info, dataset.folder, taken, options.copy_audio)
            taken.add(rel)
            added.append((rel, " ".join(row.text.split()), speaker))
            dataset.manifest[digest] = {"file": str(src), "clips": [rel], "language": dataset.language}
            summary.files_added.append(str(src))
            summary.clips_added += 1
            summary.seconds_added += info.seconds
            tracker.clips += 1
            tracker.report(src.name, force=False)
        if is_eval is None:
            dataset.add(added, options.eval_fraction, options.seed)
        else:
            (dataset.eval if is_eval else dataset.train).extend(added)
        dataset.save()
    tracker.report("done")
    if not dataset.eval and len(dataset.train) > 1:  # the source's eval lines were all left out
        _rebalance_eval(dataset, options)
        dataset.save()
    summary.train_lines, summary.eval_lines = len(dataset.train), len(dataset.eval)
    if not dataset.train and not dataset.eval:
        reasons = "; ".join(summary.left_out[:3]) or "it has no lines"
        raise DatasetError(f"Nothing from {source} could be imported: {reasons}.")
    return summary


def _rebalance_eval(dataset: _Dataset, options: ImportOptions) -> None:
    """Move a seeded share of training lines to eval when the dataset has none (the trainer needs eval lines)."""
    rows = dataset.train
    dataset.train = []
    dataset.add(rows, options.eval_fraction, options.seed)


def _source_parts(source: Path, fmt: str, eval_csv: str | Path | None, options: ImportOptions
                  ) -> list[tuple[Path, list[Row], bool | None]]:
    """[(csv, rows, is_eval)] where is_eval None means: split these rows by the seed."""
    if fmt == "ljspeech":
        metadata = source / "metadata.csv" if source.is_dir() else source
        return [(metadata, read_ljspeech(metadata, options.ljspeech_text), None)]
    train = source / TRAIN_CSV if source.is_dir() else source
    if eval_csv is None and source.is_dir() and (source / EVAL_CSV).is_file():
        eval_csv = source / EVAL_CSV
    if eval_csv is None:
        return [(train, read_metadata(train), None)]
    return [(train, read_metadata(train), False), (Path(eval_csv), read_metadata(eval_csv), True)]


def _read_lang(folder: Path) -> str | None:
    path = folder / LANG_FILE
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def _resolve(root: Path, audio_file: str) -> Path:
    return Path(os.path.abspath(os.path.join(root, audio_file)))


def _place_audio(src: Path, info: AudioInfo, folder: Path, taken: set[str], copy_audio: bool) -> str:
    """Copy (converting to 22.05 kHz mono WAV where needed) or refer to `src`; returns the CSV's path for it."""
    if not copy_audio:
        try:
            return Path(os.path.relpath(src, folder)).as_posix()
        except ValueError:  # another drive on Windows
            return str(src)
    stem = _safe_stem(src.stem, limit=80)
    rel, n = f"{CLIPS_DIR}/{stem}.wav", 1
    while rel in taken or (folder / rel).exists():
        n += 1
        rel = f"{CLIPS_DIR}/{stem}_{n}.wav"
    dest = folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == ".wav" and info.sample_rate == SAMPLE_RATE and info.channels == 1:
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    else:
        write_clip(dest, load_audio(src, SAMPLE_RATE))
    return rel


# ----------------------------------------------------------------------------------------------- reading CSVs


@dataclass(frozen=True)
class Issue:
    """One finding of `validate_dataset`. `line` is the CSV's line number (header = 1), None for the dataset."""

    severity: str  # "error" | "warning"
    kind: str
    message: str
    csv: str | None = None
    line: int | None = None
    audio: str | None = None

    def where(self, full: bool = False) -> str:
        """'metadata_train.csv line 5 (wavs/a.wav)'; with `full`, the CSV's whole path."""
        parts = [(self.csv if full else Path(self.csv).name) if self.csv else "dataset"]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.audio:
            parts.append(f"({self.audio})")
        return " ".join(parts)

    def __str__(self) -> str:
        return f"{self.where(full=True)}: {self.message}"


@dataclass
class _ParsedCsv:
    path: Path
    rows: list[Row]
    issues: list[Issue]
    usable: bool  # False: the file as a whole cannot be read as a coqui CSV


def _decoded_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; raises DatasetError for a missing or non-UTF-8 file."""
    parsed = _parse_lines(path)
    if parsed[1]:
        raise DatasetError(f"{parsed[1][0]}")
    return parsed[0]


def _parse_lines(path: Path) -> tuple[list[tuple[int, str]], list[Issue]]:
    if not path.exists():
        hint = (f"; this folder holds LJSpeech's metadata.csv: import it with `python utils/formatter.py import "
                f"{path.parent}`" if (path.parent / "metadata.csv").is_file() else "")
        return [], [Issue("error", "missing_csv", f"does not exist: pass the dataset's CSV (or the folder holding "
                          f"{TRAIN_CSV} and {EVAL_CSV}){hint}.", str(path))]
    if not path.is_file():
        return [], [Issue("error", "missing_csv", "is not a file: pass the CSV itself.", str(path))]
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines, issues = [], []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = raw[e.start: e.start + 1].hex()
            issues.append(Issue("error", "encoding", f"is not UTF-8 text (byte 0x{bad} at column {e.start + 1}): "
                                "save the file as UTF-8.", str(path), number))
            continue
        lines.append((number, text.rstrip("\r")))
    while lines and not lines[-1][1].strip():
        lines.pop()
    return lines, issues


def _parse_csv(path: str | Path) -> _ParsedCsv:
    """Rows of a coqui CSV and what is wrong with it, without raising."""
    path = Path(path)
    lines, issues = _parse_lines(path)
    if any(i.kind == "missing_csv" for i in issues):
        return _ParsedCsv(path, [], issues, False)
    if not lines:
        if not issues:
            issues.append(Issue("error", "empty_csv", f"is empty: it needs the header {DELIMITER.join(CSV_COLUMNS)} "
                                "and one line per clip.", str(path), 1))
        return _ParsedCsv(path, [], issues, False)
    number, header_text = lines[0]
    header = [h.strip() for h in header_text.split(DELIMITER)]
    header_issue = _header_issue(path, header_text, header)
    if header_issue:
        return _ParsedCsv(path, [], [*issues, header_issue], False)
    col = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    rows = []
    for number, text in lines[1:]:
        if not text.strip():
            continue
        fields = next(csv.reader([text], delimiter=DELIMITER))
        audio = fields[col["audio_file"]].strip() if len(fields) > col["audio_file"] else ""
        if len(fields) != len(header):
            issues.append(Issue("error", "columns", f"has {len(fields)} columns where the header has {len(header)}: "
                                f"each line is {DELIMITER.join(header)}, with no '{DELIMITER}' inside the text.",
                                str(path), number, audio or None))
            continue
        if not audio:
            issues.append(Issue("error", "missing_audio", "names no audio file.", str(path), number))
            continue
        speaker = fields[col["speaker_name"]].strip() if "speaker_name" in col else DEFAULT_SPEAKER
        rows.append(Row(number, audio, fields[col["text"]], speaker or DEFAULT_SPEAKER))
    return _ParsedCsv(path, rows, issues, True)


def _header_issue(path: Path, header_text: str, header: list[str]) -> Issue | None:
    expected = DELIMITER.join(CSV_COLUMNS)
    if "audio_file" in header and "text" in header:
        return None
    for sep, name in ((",", "commas"), ("\t", "tabs"), (";", "semicolons")):
        if "audio_file" in [h.strip() for h in header_text.split(sep)]:
            return Issue("error", "delimiter", f"separates its columns with {name}; coqui's format uses "
                         f"'{DELIMITER}': the header must be {expected} and each line alike.", str(path), 1)
    first = header[0] if header else ""
    if first.lower().endswith(AUDIO_EXTENSIONS) or (len(header) in (2, 3) and "/" in first):
        return Issue("error", "header", f"has no header line: its first line must be {expected}.",
                     str(path), 1)
    if len(header) in (2, 3) and re.fullmatch(r"[\w.-]*\d[\w.-]*", first):
        return Issue("error", "header", "looks like LJSpeech's metadata.csv (id|text|normalized, no header):"
                     f" import it with `python utils/formatter.py import {path.parent}`.", str(path), 1)
    return Issue("error", "header", f"starts with '{_ellipsis(header_text, 60)}', not the header {expected}.",
                 str(path), 1)


def read_metadata(csv_path: str | Path) -> list[Row]:
    """The rows of a coqui CSV; raises DatasetError naming the file and line for a file that cannot be read."""
    parsed = _parse_csv(csv_path)
    errors = [i for i in parsed.issues if i.severity == "error"]
    if errors:
        more = f" ({len(errors) - 1} more fault(s) in this file)" if len(errors) > 1 else ""
        raise DatasetError(f"{errors[0]}{more}")
    return parsed.rows


def load_samples(csv_path: str | Path, language: str | None = None) -> list[dict]:
    """The samples coqui's XTTS trainer takes: dicts with text, audio_file (absolute), speaker_name, language,
    root_path and audio_unique_name. `language` None reads lang.txt beside the CSV. Raises DatasetError for a
    missing or malformed CSV, a line naming missing audio or having empty text."""
    csv_path = Path(csv_path)
    rows = read_metadata(csv_path)
    root = csv_path.parent.resolve()
    language = (language or _read_lang(root) or "").strip()
    if not language:
        raise DatasetError(f"The language of {csv_path} is unknown: pass it, or write it into {root / LANG_FILE}.")
    if not rows:
        raise DatasetError(f"{csv_path} has no lines after its header: the trainer needs at least one clip.")
    samples = []
    for row in rows:
        audio = _resolve(root, row.audio_file)
        if not audio.is_file():
            raise DatasetError(f"{csv_path.name} line {row.line} names {row.audio_file}, which does not exist "
                               f"({audio}): restore the file or remove the line.")
        if not row.text.strip():
            raise DatasetError(f"{csv_path.name} line {row.line} ({row.audio_file}) has empty text: write what is "
                               "said or remove the line.")
        unique = Path(os.path.relpath(audio, root)).with_suffix("").as_posix()
        samples.append({
            "text": row.text,
            "audio_file": str(audio),
            "speaker_name": row.speaker_name,
            "language": language,
            "root_path": str(root),
            "audio_unique_name": f"{root.name}#{unique}",
        })
    return samples


# ----------------------------------------------------------------------------------------------- validation


@dataclass
class ValidationReport:
    """What `validate_dataset` found. Errors block training; warnings don't."""

    train_csv: Path
    eval_csv: Path
    issues: list[Issue] = field(default_factory=list)
    train_lines: int = 0
    eval_lines: int = 0
    seconds: float = 0.0
    language: str | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_per_kind: int = 10) -> str:
        """The report as text a person reads: a summary line, then errors and warnings grouped by kind."""
        lines = [f"Dataset check of {self.train_csv} ({self.train_lines} lines) and {self.eval_csv} "
                 f"({self.eval_lines} lines): {self.seconds / 60:.1f} min of audio"
                 + (f", language {self.language}." if self.language else ".")]
        if self.ok and not self.warnings:
            lines.append("No problems found.")
            return "\n".join(lines)
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s). "
                     + ("Training refuses this dataset until the errors are fixed." if self.errors
                        else "Warnings do not stop training."))
        for severity, label in (("error", "ERROR"), ("warning", "warning")):
            by_kind: dict[str, list[Issue]] = {}
            for issue in self.issues:
                if issue.severity == severity:
                    by_kind.setdefault(issue.kind, []).append(issue)
            for issues in by_kind.values():
                lines += [f"{label} {i.where()}: {i.message}" for i in issues[:max_per_kind]]
                if len(issues) > max_per_kind:
                    lines.append(f"{label} ... and {len(issues) - max_per_kind} more line(s) like the above")
        return "\n".join(lines)

    def raise_if_errors(self, limit: int = 3) -> None:
        """Raise DatasetError naming the first `limit` faults when there are errors (for training to call)."""
        errors = self.errors
        if not errors:
            return
        shown = "; ".join(str(i) for i in errors[:limit])
        more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
        raise DatasetError(f"The dataset has {len(errors)} error(s), so training does not start: {shown}{more}. "
                           f"See the whole report with `python utils/formatter.py validate {self.train_csv.parent}`.")

    def to_dict(self) -> dict:
        return {"train_csv": str(self.train_csv), "eval_csv": str(self.eval_csv), "ok": self.ok,
                "train_lines": self.train_lines, "eval_lines": self.eval_lines, "seconds": self.seconds,
                "language": self.language, "issues": [dataclasses.asdict(i) for i in self.issues]}


@dataclass(frozen=True)
class _AudioCheck:
    info: AudioInfo | None
    error: str | None
    peak: float = 0.0


def _check_audio(path: Path) -> _AudioCheck:
    """Decode the whole file (as the trainer will) and note its rate, channels, length and loudness."""
    if not path.exists():
        return _AudioCheck(None, "missing")
    try:
        data, rate = _decode(path)
    except DatasetError as e:
        return _AudioCheck(None, str(e))
    return _AudioCheck(AudioInfo(rate, data.shape[1], data.shape[0] / rate), None, float(np.abs(data).max()))


class _TextChecker:
    """Which characters of a line the vocabulary cannot encode, and how many tokens the line takes."""

    def __init__(self, vocab_path: Path, language: str | None) -> None:
        from utils.vocab import load_vocab

        self.tokenizer = load_vocab(vocab_path)
        self.language = language
        self.vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        lang_tag = None if language is None else "zh-cn" if language.split("-")[0] == "zh" else language.split("-")[0]
        self.lang_token = None if lang_tag is None else f"[{lang_tag}]"
        self._unknown: dict[str, bool] = {}
        self._xtts = None

    def clean(self, text: str) -> str:
        """The text as XTTS's tokenizer sees it before encoding: its cleaners for the languages it knows,
        lowercase and single spaces otherwise."""
        lang = (self.language or "").split("-")[0]
        if lang in XTTS_CHAR_LIMITS and lang not in ("zh", "ja", "ko"):
            try:
                from TTS.tts.layers.xtts.tokenizer import multilingual_cleaners

                return multilingual_cleaners(text, lang)
            except Exception:  # a cleaner that fails on odd input: fall back to the plain form below
                pass
        return " ".join(text.lower().split())

    def unknown_chars(self, text: str) -> list[str]:
        out = []
        for ch in dict.fromkeys(self.clean(text)):
            if ch.isspace():
                continue
            if ch not in self._unknown:
                self._unknown[ch] = 1 in self.tokenizer.encode(ch).ids
            if self._unknown[ch]:
                out.append(ch)
        return out

    def token_count(self, text: str) -> int | None:
        if self.lang_token is None or self.lang_token not in self.vocab:
            return None
        return len(self.tokenizer.encode(f"{self.lang_token}{self.clean(text)}".replace(" ", "[SPACE]")).ids)


def _script(ch: str) -> str | None:
    """The script of a letter ('Ethiopic', 'Latin', 'Cjk', ...), None for punctuation, digits and symbols."""
    if not unicodedata.category(ch).startswith(("L", "M")):
        return None
    try:
        return unicodedata.name(ch).split()[0].title()
    except ValueError:
        return None


def validate_dataset(
    train_csv: str | Path,
    eval_csv: str | Path | None = None,
    *,
    vocab_path: str | Path | None = None,
    language: str | None = None,
    max_audio_seconds: float = 11.0,
    min_conditioning_seconds: float = 3.0,
    max_text_tokens: int = XTTS_MAX_TEXT_TOKENS,
    sample_rate: int = SAMPLE_RATE,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Check a dataset before training and report every fault with its CSV line and audio file.

    Errors (training refuses the dataset): a missing, empty, non-UTF-8 CSV or one with a wrong delimiter or
    header; a line with the wrong number of columns; missing or unreadable audio; audio shorter than
    `min_conditioning_seconds` or longer than `max_audio_seconds`; empty text; text longer than
    `max_text_tokens` tokens or with characters the vocabulary cannot encode (both need `vocab_path`);
    a CSV with no lines. Warnings: a sample rate other than `sample_rate`, several channels, silent or
    clipping audio, text over XTTS's character limit for the language, duplicate lines, audio in both train
    and eval, a language the vocabulary has no token for. `language` None reads lang.txt beside the train CSV.
    """
    train_csv = Path(train_csv)
    if train_csv.is_dir():
        train_csv = train_csv / TRAIN_CSV
    eval_csv = Path(eval_csv) if eval_csv is not None else train_csv.parent / EVAL_CSV
    if language is None:
        language = _read_lang(train_csv.parent) if train_csv.parent.is_dir() else None
    report = ValidationReport(train_csv, eval_csv, language=language)
    checker = None
    if vocab_path is not None:
        try:
            checker = _TextChecker(Path(vocab_path), language)
        except ValueError as e:  # VocabError
            report.issues.append(Issue("error", "vocab", str(e), None))
        else:
            if language is None:
                report.issues.append(Issue("warning", "language", f"no language given and no {LANG_FILE} beside "
                                           "the CSV: token counts are not checked; pass --language."))
            elif checker.lang_token not in checker.vocab:
                report.issues.append(Issue(
                    "warning", "language_token", f"the vocabulary {vocab_path} has no {checker.lang_token} token for "
                    f"language '{language}': {EXTEND_VOCAB_HINT}."))

    parsed = [_parse_csv(train_csv), _parse_csv(eval_csv)]
    audio_cache: dict[Path, _AudioCheck] = {}
    seen: dict[Path, tuple[str, int]] = {}
    unknown_scripts: dict[str, int] = {}
    total = sum(len(p.rows) for p in parsed)
    tracker = _ProgressTracker("validate", total, float(total), progress)
    for part in parsed:
        report.issues += part.issues
        if part.usable and not part.rows:
            report.issues.append(Issue("error", "empty_csv", "has no lines after its header: the trainer needs at "
                                       "least one clip in each of the train and eval files.", str(part.path)))
        for row in part.rows:
            tracker.files_done += 1
            tracker.work_done += 1
            tracker.report(row.audio_file, force=False)
            _check_row(row, part.path, report, audio_cache, seen, checker, unknown_scripts,
                       max_audio_seconds=max_audio_seconds, min_conditioning_seconds=min_conditioning_seconds,
                       max_text_tokens=max_text_tokens, sample_rate=sample_rate, language=language)
    report.train_lines, report.eval_lines = len(parsed[0].rows), len(parsed[1].rows)
    report.seconds = sum(c.info.seconds for c in audio_cache.values() if c.info)
    new_scripts = {s: n for s, n in unknown_scripts.items() if s != "Latin"}
    if new_scripts:
        names = ", ".join(f"{s} ({n} line{'s' if n > 1 else ''})" for s, n in new_scripts.items())
        # first in the report: the one fix that clears all those lines
        report.issues.insert(0, Issue("error", "new_script", f"the vocabulary has no tokens for the {names} "
                                      f"script: {EXTEND_VOCAB_HINT}."))
    tracker.report("done")
    return report


def _check_row(row: Row, csv_path: Path, report: ValidationReport, audio_cache: dict[Path, _AudioCheck],
               seen: dict[Path, tuple[str, int]], checker: _TextChecker | None, unknown_scripts: dict[str, int], *,
               max_audio_seconds: float, min_conditioning_seconds: float, max_text_tokens: int, sample_rate: int,
               language: str | None) -> None:
    def add(severity: str, kind: str, message: str) -> None:
        report.issues.append(Issue(severity, kind, message, str(csv_path), row.line, row.audio_file))

    audio = _resolve(csv_path.parent, row.audio_file)
    if audio in seen:
        other_csv, other_line = seen[audio]
        if other_csv == str(csv_path):
            add("warning", "duplicate", f"names the same audio as line {other_line}: remove one of the two lines.")
        else:
            add("warning", "train_eval_overlap", f"is also in {Path(other_csv).name} line {other_line}: eval losses "
                "would be measured on training audio; keep it in one file.")
    else:
        seen[audio] = (str(csv_path), row.line)

    text = row.text.strip()
    if not text:
        add("error", "empty_text", "has empty text: write what is said in the clip, or remove the line.")
    else:
        limit = XTTS_CHAR_LIMITS.get((language or "").split("-")[0], 250)
        if len(text) > limit:
            add("warning", "long_text", f"has {len(text)} characters, over XTTS's limit of {limit} for "
                f"'{language or 'en'}': split the clip, or XTTS may cut its speech short.")
        if checker is not None:
            unknown = checker.unknown_chars(text)
            if unknown:
                scripts = sorted({s for s in map(_script, unknown) if s})
                for s in scripts:
                    unknown_scripts[s] = unknown_scripts.get(s, 0) + 1
                shown = " ".join(f"'{c}' (U+{ord(c):04X})" for c in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
                hint = EXTEND_VOCAB_HINT if any(s != "Latin" for s in scripts) else \
                    "replace or remove them, or extend the vocabulary"
                add("error", "unknown_chars", f"has characters the vocabulary cannot encode ([UNK]): {shown}; "
                    f"XTTS would skip the line: {hint}.")
            else:
                tokens = checker.token_count(text)
                if tokens is not None and tokens > max_text_tokens:
                    add("error", "long_text", f"takes {tokens} tokens, over the trainer's max_text_length of "
                        f"{max_text_tokens}: the trainer would skip it; split the clip.")

    if audio not in audio_cache:
        audio_cache[audio] = _check_audio(audio)
    check = audio_cache[audio]
    if check.error == "missing":
        add("error", "missing_audio", f"names audio that does not exist ({audio}): restore the file or remove "
            "the line.")
        return
    if check.error:
        add("error", "unreadable_audio", f"{check.error}")
        return
    info = check.info
    assert info is not None
    if info.seconds < max(min_conditioning_seconds, XTTS_MIN_AUDIO_SECONDS) - 0.5 / info.sample_rate:
        add("error", "too_short", f"audio lasts {info.seconds:.2f} s, shorter than the {min_conditioning_seconds:g} s "
            "XTTS conditions on: join it with a neighbouring clip or remove the line.")
    elif info.seconds > max_audio_seconds + 0.5 / info.sample_rate:
        add("error", "too_long", f"audio lasts {info.seconds:.2f} s, longer than max_audio_length "
            f"{max_audio_seconds:g} s: the trainer would skip it; cut it, or raise --max_audio_length.")
    if info.sample_rate != sample_rate:
        add("warning", "sample_rate", f"audio is at {info.sample_rate} Hz, not {sample_rate} Hz: XTTS resamples it "
            "at every load; import the dataset with this tool to store it at the right rate.")
    if info.channels > 1:
        add("warning", "channels", f"audio has {info.channels} channels: XTTS mixes them to mono at every load.")
    if check.peak < 1e-4:
        add("warning", "silent", "audio is silent: check the recording.")
    elif check.peak >= 0.999:
        add("warning", "clipping", "audio reaches full scale (clipping): consider lowering its level.")


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------- CLI


def _console_progress(as_json: bool, stream=None) -> ProgressCallback:
    def report(p: Progress) -> None:
        print(json.dumps({"event": "progress", **p.to_dict()}) if as_json else str(p), file=stream or sys.stdout,
              flush=True)

    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python utils/formatter.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, output: bool = True) -> None:
        if output:
            where = p.add_mutually_exclusive_group(required=True)
            where.add_argument("--out_path", "--out-path", help="output folder: the dataset goes to <out_path>/dataset")
            where.add_argument("--dataset", help="the dataset folder itself")
        p.add_argument("--json", action="store_true", help="print progress and the result as JSON lines")
        p.add_argument("--debug", action="store_true", help="show Python tracebacks")

    t = sub.add_parser("transcribe", help="recordings -> transcribed clips -> dataset CSVs")
    t.add_argument("audio", nargs="+", help="audio files (wav, mp3, flac, ogg, m4a) or folders holding them")
    add_option_arguments(t, PrepareOptions)
    t.add_argument("--whisper_cache", "--whisper-cache", help="folder of the Hugging Face cache for Whisper models")
    common(t)

    i = sub.add_parser("import", help="LJSpeech or coqui CSVs -> dataset CSVs")
    i.add_argument("source", help="LJSpeech folder (metadata.csv, wavs/), coqui dataset folder or CSV")
    i.add_argument("--eval_csv", "--eval-csv", help="the source's eval CSV (coqui), if it has one elsewhere")
    i.add_argument("--format", default="auto", choices=("auto", "ljspeech", "coqui"), help="the source's format")
    add_option_arguments(i, ImportOptions)
    common(i)

    v = sub.add_parser("validate", help="check a dataset and print a report (exit 1 when it has errors)")
    v.add_argument("dataset", help="dataset folder, or its train CSV")
    v.add_argument("--eval_csv", "--eval-csv", help="eval CSV (default: metadata_eval.csv beside the train CSV)")
    v.add_argument("--vocab", help="vocab.json to check the text against (characters, token counts)")
    v.add_argument("--language", help="language code (default: lang.txt)")
    v.add_argument("--max_audio_length", "--max-audio-length", type=float, default=11.0,
                   help="longest clip in seconds (default: 11)")
    v.add_argument("--min_conditioning_seconds", "--min-conditioning-seconds", type=float, default=3.0,
                   help="shortest clip in seconds (default: 3)")
    v.add_argument("--max_text_tokens", "--max-text-tokens", type=int, default=XTTS_MAX_TEXT_TOKENS,
                   help=f"longest text in tokens (default: {XTTS_MAX_TEXT_TOKENS})")
    common(v, output=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (DatasetError, TranscriberUnavailable, ValueError, OSError) as e:
        if args.debug:
            raise
        message = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}."
        print(json.dumps({"event": "error", "message": message}) if args.json else f"Error: {message}",
              file=sys.stderr if not args.json else sys.stdout, flush=True)
        return 1
    except KeyboardInterrupt:
        print("Stopped. Recordings finished so far are saved in the dataset; run again to continue.", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        report = validate_dataset(args.dataset, args.eval_csv, vocab_path=args.vocab, language=args.language,
                                  max_audio_seconds=args.max_audio_length,
                                  min_conditioning_seconds=args.min_conditioning_seconds,
                                  max_text_tokens=args.max_text_tokens,
                                  progress=_console_progress(args.json, sys.stdout if args.json else sys.stderr))
        print(json.dumps({"event": "report", **report.to_dict()}) if args.json else report.format())
        return 0 if report.ok else 1
    dataset = Path(args.dataset) if args.dataset else dataset_dir_for(args.out_path)
    progress = _console_progress(args.json)
    if args.command == "transcribe":
        options = options_from_args(PrepareOptions, args)
        options.check()
        from utils.transcribe import FasterWhisperTranscriber

        transcriber = FasterWhisperTranscriber(options.whisper_model, device=options.device,
                                               compute_type=options.compute_type, download_root=args.whisper_cache)
        transcriber.model_path()  # a missing model is said now, before any recording is read
        summary = prepare_from_audio(args.audio, dataset, transcriber, options, progress)
    else:
        options = options_from_args(ImportOptions, args)
        summary = import_dataset(args.source, dataset, options, progress, eval_csv=args.eval_csv,
                                 source_format=args.format)
    print(json.dumps({"event": "done", **summary.to_dict()}) if args.json else summary.format(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
