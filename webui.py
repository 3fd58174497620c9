"""XTTS fine-tuning WebUI: data -> vocabulary -> train (with the resume picker) -> test -> export.

    python webui.py [--port N] [--host H] [--share] [--output_path DIR] [--base_model_dir DIR]

The app is built in utils/webui/app.py; this file only makes `utils` importable and starts it.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    try:
        from utils.webui.app import main

        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while still starting (importing, building the page): nothing to save
        print("Stopped while starting.", file=sys.stderr)
        sys.exit(130)
