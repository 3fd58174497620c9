"""An existing dataset -> ours: LJSpeech (metadata.csv + wavs/) or coqui CSVs, its audio copied as 22.05 kHz
mono WAV (or referred to where it is), lines that cannot be used left out and listed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from utils.data.audio import AUDIO_EXTENSIONS, AudioInfo, audio_info, load_audio, write_clip
from utils.data.errors import DatasetError
from utils.data.folder import CsvRow, DatasetFolder, DatasetSummary, safe_stem
from utils.data.metadata import Row, decoded_lines, read_language, read_metadata, resolve_audio
from utils.data.options import ImportOptions
from utils.data.progress import ProgressCallback, ProgressTracker
from utils.fsio import file_sha256, write_atomic_with
from utils.xtts import CLIPS_DIR, CSV_DELIMITER, DEFAULT_SPEAKER, EVAL_CSV, LANG_FILE, SAMPLE_RATE, TRAIN_CSV

FORMATS = ("ljspeech", "coqui")
SourcePart = tuple[Path, list[Row], bool | None]  # (csv, rows, is_eval); is_eval None: split by the seed
AudioCheck = Callable[[Path, str], object]  # (audio path, "x.csv line 3: audio") -> raises to refuse it


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
    return "coqui" if first.strip().split(CSV_DELIMITER)[:1] == ["audio_file"] else "ljspeech"


def read_ljspeech(metadata_csv: str | Path, text: str = "normalized") -> list[Row]:
    """LJSpeech's metadata.csv (`id|text|normalized text`, no header, no quoting) as rows naming wavs/<id>.wav."""
    path = Path(metadata_csv)
    rows = []
    for number, line in decoded_lines(path):
        if not line.strip():
            continue
        cols = line.split(CSV_DELIMITER)
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
    check_audio: AudioCheck | None = None,
) -> DatasetSummary:
    """Add an existing dataset to the one in `dataset_dir`: LJSpeech (a folder with metadata.csv and wavs/, or
    the metadata.csv) or coqui CSVs (a folder with metadata_train.csv [+ metadata_eval.csv], or a CSV, plus
    `eval_csv`). Audio is copied as 22.05 kHz mono WAV (or referenced in place with `copy_audio=False`); lines
    whose audio is missing, unreadable or outside the clip bounds are left out and listed in the summary. Lines
    already imported (same audio content) are skipped. A source without an eval file is split by the seed.
    `check_audio` sees every audio path the source names before anything is read or copied (the WebUI's path
    policy: one refused path refuses the import)."""
    options = options or ImportOptions()
    options.check()
    source = Path(source).expanduser()
    fmt = detect_format(source) if source_format == "auto" else source_format
    if fmt not in FORMATS:
        raise ValueError(f"source_format must be auto, ljspeech or coqui, not '{source_format}'.")
    parts = _source_parts(source, fmt, eval_csv, options)
    if check_audio is not None:
        for csv_path, rows, _ in parts:
            for row in rows:
                check_audio(resolve_audio(csv_path.parent, row.audio_file), f"{csv_path.name} line {row.line}: audio")
    language = options.language or read_language(parts[0][0].parent)
    if not language:
        raise DatasetError(f"The language of {source} is unknown (no {LANG_FILE} there): pass --language.")
    dataset = DatasetFolder(Path(dataset_dir), language)
    dataset.set_language(language)
    summary = DatasetSummary(Path(dataset_dir), dataset.language or language)

    total = sum(len(rows) for _, rows, _ in parts)
    importer = _Importer(dataset, options, summary, ProgressTracker("import", total, float(total), progress))
    importer.tracker.report("starting")
    for part in parts:
        importer.add_part(*part)
    importer.tracker.report("done")
    if not dataset.eval and len(dataset.train) > 1:  # the source's eval lines were all left out
        _rebalance_eval(dataset, options)
        dataset.save()
    summary.train_lines, summary.eval_lines = len(dataset.train), len(dataset.eval)
    if not dataset.train and not dataset.eval:
        reasons = "; ".join(summary.left_out[:3]) or "it has no lines"
        raise DatasetError(f"Nothing from {source} could be imported: {reasons}.")
    return summary


@dataclass
class _Importer:
    """Adds a source's lines to the dataset, noting in the summary what it added, skipped and left out."""

    dataset: DatasetFolder
    options: ImportOptions
    summary: DatasetSummary
    tracker: ProgressTracker

    def __post_init__(self) -> None:
        self.known = {v.get("file") for v in self.dataset.manifest.values()}  # source files imported before
        self.taken = self.dataset.audio_files  # clip names in use

    def add_part(self, csv_path: Path, rows: list[Row], is_eval: bool | None) -> None:
        """Import one CSV's rows, then save the dataset."""
        added = [r for r in (self._take(csv_path, row) for row in rows) if r is not None]
        if is_eval is None:
            self.dataset.add(added, self.options.eval_fraction, self.options.seed)
        else:
            (self.dataset.eval if is_eval else self.dataset.train).extend(added)
        self.dataset.save()

    def _take(self, csv_path: Path, row: Row) -> CsvRow | None:
        """The dataset's row for one source line with its audio in place, or None (noted in the summary)."""
        summary, options = self.summary, self.options
        self.tracker.files_done += 1
        self.tracker.work_done += 1
        src = resolve_audio(csv_path.parent, row.audio_file)
        where = f"{csv_path.name} line {row.line} ({row.audio_file})"
        if not row.text.strip():
            summary.left_out.append(f"{where}: empty text")
            return None
        if str(src) in self.known:
            summary.files_skipped.append(str(src))
            return None
        try:
            info = audio_info(src)
        except DatasetError as e:
            summary.left_out.append(f"{where}: {e}")
            return None
        if not options.min_clip_seconds <= info.seconds <= options.max_clip_seconds:
            summary.left_out.append(f"{where}: {info.seconds:.2f} s is outside {options.min_clip_seconds:g}-"
                                    f"{options.max_clip_seconds:g} s")
            return None
        digest = file_sha256(src)
        if digest in self.dataset.manifest:
            summary.files_skipped.append(str(src))
            return None
        rel = _place_audio(src, info, self.dataset.folder, self.taken, options.copy_audio)
        self.taken.add(rel)
        self.dataset.manifest[digest] = {"file": str(src), "clips": [rel], "language": self.dataset.language}
        summary.files_added.append(str(src))
        summary.clips_added += 1
        summary.seconds_added += info.seconds
        self.tracker.clips += 1
        self.tracker.report(src.name, force=False)
        speaker = options.speaker_name or row.speaker_name or DEFAULT_SPEAKER
        return rel, " ".join(row.text.split()), speaker


def _rebalance_eval(dataset: DatasetFolder, options: ImportOptions) -> None:
    """Move a seeded share of training lines to eval when the dataset has none (the trainer needs eval lines)."""
    rows = dataset.train
    dataset.train = []
    dataset.add(rows, options.eval_fraction, options.seed)


def _source_parts(source: Path, fmt: str, eval_csv: str | Path | None, options: ImportOptions) -> list[SourcePart]:
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


def _place_audio(src: Path, info: AudioInfo, folder: Path, taken: set[str], copy_audio: bool) -> str:
    """Copy (converting to 22.05 kHz mono WAV where needed) or refer to `src`; returns the CSV's path for it."""
    if not copy_audio:
        try:
            return Path(os.path.relpath(src, folder)).as_posix()
        except ValueError:  # another drive on Windows
            return str(src)
    stem = safe_stem(src.stem, limit=80)
    rel, n = f"{CLIPS_DIR}/{stem}.wav", 1
    while rel in taken or (folder / rel).exists():
        n += 1
        rel = f"{CLIPS_DIR}/{stem}_{n}.wav"
    dest = folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == ".wav" and info.sample_rate == SAMPLE_RATE and info.channels == 1:
        write_atomic_with(dest, lambda tmp: shutil.copyfile(src, tmp))
    else:
        write_clip(dest, load_audio(src, SAMPLE_RATE))
    return rel
