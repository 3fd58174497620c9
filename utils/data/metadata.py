"""Reading a coqui dataset CSV (`audio_file|text|speaker_name`, with a header): its rows, or every fault of it
as an `Issue` at its line; the trainer's sample list; the dataset's language file."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from utils.data.audio import AUDIO_EXTENSIONS
from utils.data.errors import DatasetError, ellipsis
from utils.xtts import CSV_COLUMNS, CSV_DELIMITER, DEFAULT_SPEAKER, EVAL_CSV, LANG_FILE, TRAIN_CSV


@dataclass(frozen=True)
class Row:
    """One line of a coqui CSV: `line` is its line number in the file (the header is line 1)."""

    line: int
    audio_file: str
    text: str
    speaker_name: str


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
class ParsedCsv:
    """A CSV's rows and what is wrong with it, read without raising."""

    path: Path
    rows: list[Row]
    issues: list[Issue]
    usable: bool  # False: the file as a whole cannot be read as a coqui CSV


def decoded_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, text) of a UTF-8 file; raises DatasetError for a missing or non-UTF-8 file."""
    parsed = parse_lines(path)
    if parsed[1]:
        raise DatasetError(f"{parsed[1][0]}")
    return parsed[0]


def parse_lines(path: Path) -> tuple[list[tuple[int, str]], list[Issue]]:
    """(line number, text) of a UTF-8 file, and an Issue for a missing file or each line that is not UTF-8."""
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


def parse_csv(path: str | Path) -> ParsedCsv:
    """Rows of a coqui CSV and what is wrong with it, without raising."""
    path = Path(path)
    lines, issues = parse_lines(path)
    if any(i.kind == "missing_csv" for i in issues):
        return ParsedCsv(path, [], issues, False)
    if not lines:
        if not issues:
            issues.append(Issue("error", "empty_csv", f"is empty: it needs the header "
                                f"{CSV_DELIMITER.join(CSV_COLUMNS)} and one line per clip.", str(path), 1))
        return ParsedCsv(path, [], issues, False)
    number, header_text = lines[0]
    header = [h.strip() for h in header_text.split(CSV_DELIMITER)]
    header_issue = _header_issue(path, header_text, header)
    if header_issue:
        return ParsedCsv(path, [], [*issues, header_issue], False)
    col = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    rows = []
    for number, text in lines[1:]:
        if not text.strip():
            continue
        fields = next(csv.reader([text], delimiter=CSV_DELIMITER))
        audio = fields[col["audio_file"]].strip() if len(fields) > col["audio_file"] else ""
        if len(fields) != len(header):
            issues.append(Issue("error", "columns", f"has {len(fields)} columns where the header has {len(header)}: "
                                f"each line is {CSV_DELIMITER.join(header)}, with no '{CSV_DELIMITER}' inside the "
                                "text.", str(path), number, audio or None))
            continue
        if not audio:
            issues.append(Issue("error", "missing_audio", "names no audio file.", str(path), number))
            continue
        speaker = fields[col["speaker_name"]].strip() if "speaker_name" in col else DEFAULT_SPEAKER
        rows.append(Row(number, audio, fields[col["text"]], speaker or DEFAULT_SPEAKER))
    return ParsedCsv(path, rows, issues, True)


def _header_issue(path: Path, header_text: str, header: list[str]) -> Issue | None:
    expected = CSV_DELIMITER.join(CSV_COLUMNS)
    if "audio_file" in header and "text" in header:
        return None
    for sep, name in ((",", "commas"), ("\t", "tabs"), (";", "semicolons")):
        if "audio_file" in [h.strip() for h in header_text.split(sep)]:
            return Issue("error", "delimiter", f"separates its columns with {name}; coqui's format uses "
                         f"'{CSV_DELIMITER}': the header must be {expected} and each line alike.", str(path), 1)
    first = header[0] if header else ""
    if first.lower().endswith(AUDIO_EXTENSIONS) or (len(header) in (2, 3) and "/" in first):
        return Issue("error", "header", f"has no header line: its first line must be {expected}.",
                     str(path), 1)
    if len(header) in (2, 3) and re.fullmatch(r"[\w.-]*\d[\w.-]*", first):
        return Issue("error", "header", "looks like LJSpeech's metadata.csv (id|text|normalized, no header):"
                     f" import it with `python utils/formatter.py import {path.parent}`.", str(path), 1)
    return Issue("error", "header", f"starts with '{ellipsis(header_text, 60)}', not the header {expected}.",
                 str(path), 1)


def read_metadata(csv_path: str | Path) -> list[Row]:
    """The rows of a coqui CSV; raises DatasetError naming the file and line for a file that cannot be read."""
    parsed = parse_csv(csv_path)
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
    language = (language or read_language(root) or "").strip()
    if not language:
        raise DatasetError(f"The language of {csv_path} is unknown: pass it, or write it into {root / LANG_FILE}.")
    if not rows:
        raise DatasetError(f"{csv_path} has no lines after its header: the trainer needs at least one clip.")
    samples = []
    for row in rows:
        audio = resolve_audio(root, row.audio_file)
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


def read_language(folder: Path) -> str | None:
    """The language code in the folder's lang.txt, None when there is none."""
    path = folder / LANG_FILE
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").strip() or None


def resolve_audio(root: Path, audio_file: str) -> Path:
    """The absolute path of a CSV's audio_file, relative to the CSV's folder `root` (or absolute already)."""
    return Path(os.path.abspath(os.path.join(root, audio_file)))

