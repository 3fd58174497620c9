"""Raw dataset CSVs for tests: written exactly as given (faulty rows included), read back as rows."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="|"))


def write_csv(path: Path, rows: list[tuple[str, str, str]], header: str = "audio_file|text|speaker_name") -> Path:
    path.write_text(header + "\n" + "".join("|".join(r) + "\n" for r in rows), encoding="utf-8")
    return path
