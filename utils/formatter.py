"""Launcher of `python utils/formatter.py transcribe|import|validate ...`: datasets for XTTS fine-tuning
(the code is in utils/data/; the command line in utils/data/cli.py)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository root, not utils/
    from utils.data.cli import main

    sys.exit(main())
