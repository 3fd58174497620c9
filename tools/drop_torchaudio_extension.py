"""Remove torchaudio's compiled extension from the environment, and from pip's record of it.

torchaudio 2.11 is the last release; its compiled extension is built against torch 2.11 and fails to
load beside torch 2.13. Without the extension files torchaudio runs in pure Python, which is all XTTS
needs (resampling and mel spectrograms). Idempotent: a second run finds nothing to remove.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path


def main() -> int:
    dist = importlib.metadata.distribution("torchaudio")
    site = Path(dist.locate_file(""))
    record_file = next(f for f in dist.files if f.name == "RECORD")
    record_path = Path(dist.locate_file(record_file))
    kept, removed = [], []
    for line in record_path.read_text().splitlines():
        rel = line.split(",", 1)[0]
        if rel.startswith("torchaudio/lib/") and rel.endswith(".so"):
            (site / rel).unlink(missing_ok=True)
            removed.append(rel)
        else:
            kept.append(line)
    if removed:
        record_path.write_text("\n".join(kept) + "\n")
        print(f"Removed torchaudio's compiled extension ({len(removed)} files): it does not load beside this torch.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
