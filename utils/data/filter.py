"""Dropping flagged lines from a dataset, and giving them back: `filter_dataset` (the command's drop by kind),
`rewrite_csvs` (what it and the WebUI's review both save through: drops and text edits as one change of the
CSVs), `restore_dataset` (the CSVs as before the first filter, byte for byte).

Nothing is deleted: dropped lines go to metadata_dropped.csv with their reasons, the CSVs as they were before
the first filter stay in metadata_backup/, and kept lines keep their exact bytes (only an edited line is
written anew). The CSVs change together (`utils/data/csvset.py`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from utils.data.csvset import BACKUP_DIR, DROPPED_CSV, changing, ensure_backup, recover, replace_files, restore_backup
from utils.data.errors import DatasetError
from utils.data.gate import KINDS, ClipLine, GateThresholds, QualityReport, assess
from utils.data.metadata import read_language, read_metadata
from utils.data.progress import ProgressCallback
from utils.xtts import CSV_COLUMNS, CSV_DELIMITER, EVAL_CSV, TRAIN_CSV

DROPPED_COLUMNS = (*CSV_COLUMNS, "source_csv", "source_line", "reasons")


@dataclass(frozen=True)
class LineChange:
    """What to do with one line: drop it (with its reasons) or give it a new text. `audio_file` is what the line
    named when it was reviewed: a line that names another file now (the CSV changed since) is refused."""

    csv: str
    line: int
    audio_file: str
    drop: bool = False
    text: str | None = None
    reasons: str = ""


@dataclass
class RewriteResult:
    """What `rewrite_csvs` changed."""

    dropped: list[LineChange] = field(default_factory=list)
    edited: list[LineChange] = field(default_factory=list)
    backup_made: bool = False
    lines_left: dict[str, int] = field(default_factory=dict)


def dataset_lines(folder: Path) -> list[ClipLine]:
    """The train and eval lines of a dataset folder (after finishing an interrupted change)."""
    folder = Path(folder)
    recover(folder)
    return [ClipLine(folder / name, row) for name in (TRAIN_CSV, EVAL_CSV) for row in read_metadata(folder / name)]


def _split(data: bytes) -> tuple[bytes, list[bytes]]:
    """(BOM, lines) of a CSV's bytes, split on b"\\n" so that line i (1-based) is the one parse_csv numbers i."""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    return bom, data[len(bom):].split(b"\n")


def _edited_line(raw: bytes, text: str, path: Path, number: int) -> bytes:
    """`raw` (one CSV line) with its text column replaced, its other columns and line ending kept."""
    header = [h.strip() for h in _split(path.read_bytes())[1][0].decode("utf-8").rstrip("\r").split(CSV_DELIMITER)]
    ending = b"\r" if raw.endswith(b"\r") else b""
    fields = next(csv.reader([raw.decode("utf-8").rstrip("\r")], delimiter=CSV_DELIMITER))
    clean = " ".join(text.split())
    if not clean:
        raise DatasetError(f"The new text of {path.name} line {number} is empty: write what the clip says, or drop "
                           "the line.")
    if CSV_DELIMITER in clean:
        raise DatasetError(f"The new text of {path.name} line {number} holds '{CSV_DELIMITER}', which separates the "
                           "CSV's columns: write it another way.")
    fields[header.index("text")] = clean
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=CSV_DELIMITER, lineterminator="").writerow(fields)
    return buffer.getvalue().encode("utf-8") + ending


def _dropped_bytes(folder: Path, rows: Iterable[Sequence[str]]) -> bytes:
    """metadata_dropped.csv as it is (or its header) with `rows` appended."""
    path = folder / DROPPED_CSV
    old = path.read_bytes() if path.is_file() else b""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=CSV_DELIMITER, lineterminator="\n")
    if not old.strip():
        old = b""
        writer.writerow(DROPPED_COLUMNS)
    elif not old.endswith(b"\n"):
        old += b"\n"
    writer.writerows(rows)
    return old + buffer.getvalue().encode("utf-8")


def rewrite_csvs(folder: Path, changes: Sequence[LineChange]) -> RewriteResult:
    """Apply drops and text edits to the train and eval CSVs as one change (the backup made first, once).
    Refuses (DatasetError, nothing changed) a change naming a line that is not there or names other audio
    now, and one that would leave a CSV without lines."""
    folder = Path(folder)
    with changing(folder):
        return _rewrite(folder, changes)


def _rewrite(folder: Path, changes: Sequence[LineChange]) -> RewriteResult:
    by_key = {(c.csv, c.line): c for c in changes}
    result, new, dropped_rows = RewriteResult(), {}, []
    for name in (TRAIN_CSV, EVAL_CSV):
        path = folder / name
        rows = {r.line: r for r in read_metadata(path)}
        mine = {line: c for (csv_name, line), c in by_key.items() if csv_name == name}
        for line, change in mine.items():
            if line not in rows or rows[line].audio_file != change.audio_file:
                raise DatasetError(f"{path} line {line} no longer names {change.audio_file}: the CSV changed since "
                                   "it was reviewed; check the dataset again and review anew.")
        bom, lines = _split(path.read_bytes())
        kept = []
        for number, raw in enumerate(lines, start=1):
            change = mine.get(number)
            if change is not None and change.drop:
                row = rows[number]
                dropped_rows.append((row.audio_file, row.text, row.speaker_name, name, str(number), change.reasons))
                result.dropped.append(change)
            elif change is not None and change.text is not None and change.text != rows[number].text:
                kept.append(_edited_line(raw, change.text, path, number))
                result.edited.append(change)
            else:
                kept.append(raw)
        result.lines_left[name] = len(rows) - sum(c.drop for c in mine.values())
        if result.lines_left[name] == 0:
            raise DatasetError(f"Dropping these lines would leave {path} without lines, and the trainer needs at "
                               "least one: keep some of its clips.")
        new[name] = bom + b"\n".join(kept)
    if not result.dropped and not result.edited:
        return result
    if dropped_rows:
        new[DROPPED_CSV] = _dropped_bytes(folder, dropped_rows)
    result.backup_made = ensure_backup(folder)
    replace_files(folder, new)
    return result


@dataclass
class FilterResult:
    """What `filter_dataset` did: the report it judged by, the lines it dropped and the change it made."""

    folder: Path
    kinds: tuple[str, ...]
    report: QualityReport
    rewrite: RewriteResult

    def format(self) -> str:
        dropped = self.rewrite.dropped
        if not dropped:
            return (f"No line of {self.folder} is flagged {' or '.join(self.kinds)}: the CSVs are unchanged "
                    f"({len(self.report.verdicts)} clips measured).")
        minutes = sum(v.seconds for v in self.report.verdicts if any(k in self.kinds for k in v.flags)) / 60
        left = ", ".join(f"{n} in {name}" for name, n in self.rewrite.lines_left.items())
        return (f"Dropped {len(dropped)} line(s) ({minutes:.1f} min) flagged {' or '.join(self.kinds)}; {left} left. "
                f"The dropped lines are in {self.folder / DROPPED_CSV} with their reasons; the CSVs as they were "
                f"before the first filter are in {self.folder / BACKUP_DIR}/ (give them back with python "
                f"utils/formatter.py filter {self.folder} --restore).")

    def to_dict(self) -> dict:
        return {"dataset": str(self.folder), "kinds": list(self.kinds), "backup_made": self.rewrite.backup_made,
                "dropped": [{"csv": c.csv, "line": c.line, "file": c.audio_file, "reasons": c.reasons}
                            for c in self.rewrite.dropped], "lines_left": self.rewrite.lines_left}


def check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    """The kinds to drop (all when none are given); ValueError naming an unknown one."""
    chosen = tuple(dict.fromkeys(kinds or KINDS))
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise ValueError(f"--drop {' '.join(unknown)}: not a kind of flag; the kinds are {', '.join(KINDS)}.")
    return chosen


def reasons_text(verdict_flags: Iterable[str], measurements: Mapping) -> str:
    """'transcript_mismatch (asr_cer 0.78); noisy (dnsmos_background 1.1)': the flags with their numbers."""
    key = {"transcript_mismatch": "asr_cer", "noisy": "dnsmos_background", "clipped": "clipping_ratio",
           "silence": "silence_share", "speaking_rate": "rate_ratio", "other_speaker": "speaker_distance"}
    parts = []
    for flag in verdict_flags:
        value = measurements.get(key[flag])
        parts.append(f"{flag} ({key[flag]} {value:.3g})" if isinstance(value, int | float) else flag)
    return "; ".join(parts)


def filter_dataset(folder: Path, kinds: Iterable[str] | None = None, thresholds: GateThresholds | None = None, *,
                   whisper_model: str | None = None, language: str | None = None,
                   progress: ProgressCallback | None = None, measurer=None) -> FilterResult:
    """Drop the lines flagged with any of `kinds` (default: every kind), judged from the stored measurements
    (clips that lack them are measured now)."""
    folder = Path(folder)
    chosen = check_kinds(kinds)
    lines = dataset_lines(folder)
    report = assess(lines, folder, thresholds, whisper_model=whisper_model,
                    language=language or read_language(folder), progress=progress, measurer=measurer)
    changes = []
    for v in report.verdicts:
        hit = [k for k in v.flags if k in chosen]
        if hit:
            changes.append(LineChange(v.line.csv, v.line.row.line, v.line.row.audio_file, drop=True,
                                      reasons=reasons_text(hit, v.measurements)))
    return FilterResult(folder, chosen, report, rewrite_csvs(folder, changes))


def restore_dataset(folder: Path) -> str:
    """The CSVs as they were before the first filter, byte for byte; returns a sentence saying so."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"Dataset folder {folder} does not exist: pass the folder holding {TRAIN_CSV}.")
    names = restore_backup(folder)
    return (f"Restored {', '.join(names)} in {folder} as they were before the first filter (the backup "
            f"{BACKUP_DIR}/ is removed; the next filter makes a new one).")

