"""Launcher of `python utils/vocab.py`: extend an XTTS vocab.json for a new language (utils/vocabulary/cli.py)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository root, not utils/
    from utils.vocabulary.cli import main

    sys.exit(main())
