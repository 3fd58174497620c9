"""The dataset folder being written: its two CSVs, its language file and its record of sources
(`sources.json`), added to without moving old lines; and what a command added, as a `DatasetSummary`."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from utils.data.errors import DatasetError, short_reason
from utils.data.metadata import read_language, read_metadata
from utils.fsio import write_json_atomic, write_text_atomic
from utils.xtts import CSV_COLUMNS, CSV_DELIMITER, EVAL_CSV, LANG_FILE, TRAIN_CSV

MANIFEST = "sources.json"
CsvRow = tuple[str, str, str]  # audio_file, text, speaker_name


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


def write_csv(path: Path, rows: Iterable[CsvRow]) -> None:
    """A coqui CSV (header, then one line per row), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=CSV_DELIMITER, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


class DatasetFolder:
    """An output dataset folder being added to: its rows, its language and its record of sources."""

    def __init__(self, folder: Path, language: str | None) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DatasetError(f"Dataset folder {self.folder} is a file: pass a folder (it is created if missing).")
        self.train: list[CsvRow] = []
        self.eval: list[CsvRow] = []
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
                raise DatasetError(f"{manifest} is damaged ({short_reason(e)}): move it away to rebuild the record "
                                   "of sources (recordings already done would then be done again).") from e
        self.language = self._language(language)

    def _language(self, language: str | None) -> str | None:
        existing = read_language(self.folder)
        language = language.strip() if language and language.strip() else None
        if existing and language and existing != language:
            raise DatasetError(f"Dataset {self.folder} is in '{existing}' ({self.folder / LANG_FILE}), not "
                               f"'{language}': a dataset holds one language; use another output folder for this one.")
        return existing or language

    def set_language(self, language: str) -> None:
        """Fix the dataset's language (the first one given or detected) and record it in lang.txt."""
        if self.language is None:
            self.language = language
        if not (self.folder / LANG_FILE).exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.folder / LANG_FILE, self.language + "\n")

    @property
    def audio_files(self) -> set[str]:
        return {r[0] for r in self.train} | {r[0] for r in self.eval}

    def add(self, rows: list[CsvRow], eval_fraction: float, seed: int) -> tuple[int, int]:
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
        write_csv(self.folder / TRAIN_CSV, self.train)
        write_csv(self.folder / EVAL_CSV, self.eval)
        write_json_atomic(self.folder / MANIFEST, {"version": 1, "sources": self.manifest}, indent=1,
                          ensure_ascii=False)


def safe_stem(name: str, limit: int = 40) -> str:
    """`name` as a portable file-name stem: runs of other characters as '_', at most `limit` characters."""
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFKC", name), flags=re.UNICODE).strip("._")
    return stem[:limit] or "audio"
