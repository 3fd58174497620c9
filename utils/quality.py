"""Score generated speech: `python utils/quality.py --audio A.wav --text "..." [--reference R.wav] [--json]`.

A launcher only (the code is the package utils/quality/): run as a script, it puts the repository root first
on the import path, then runs `utils.quality.cli.main`."""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from utils.quality.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
