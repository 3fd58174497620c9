"""Launcher of `python utils/gpt_train.py`: fine-tune XTTS-v2 (the CLI is utils/training/cli.py).

Given any checkpoint, what it contains decides how training starts (`classify_checkpoint`): optimizer state
-> resume everything from exactly that file; weights only -> fine-tune from them with a fresh optimizer;
weights whose text rows don't fit the vocabulary -> expand them by token string once, then fine-tune.
`train_gpt(options)` is the same start as a Python call.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository root, not utils/

from utils.checkpoints.classify import CheckpointInfo, classify_checkpoint
from utils.training.run import TrainResult, train_gpt

__all__ = ["CheckpointInfo", "TrainResult", "classify_checkpoint", "train_gpt"]

if __name__ == "__main__":
    from utils.training.cli import main

    sys.exit(main())
