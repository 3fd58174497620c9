"""A per-rank record of what each update trained, for checking multi-rank training from outside: with
XTTS_FT_TRACE_DIR set, every rank appends one JSON line per update to rank_<r>.jsonl there (never into the run
folder): the epoch, the update, the data positions this rank trained for it, a digest of the trained weights."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

TRACE_ENV = "XTTS_FT_TRACE_DIR"


class RankTrace:
    """Collects the positions of each update's batches; writes nothing unless XTTS_FT_TRACE_DIR is set."""

    def __init__(self, rank: int, folder: str | None = None) -> None:
        folder = os.environ.get(TRACE_ENV) if folder is None else folder
        self.file = Path(folder) / f"rank_{rank}.jsonl" if folder else None
        self.positions: list[int] = []

    def batch(self, positions: Iterable[int]) -> None:
        if self.file is not None:
            self.positions.extend(positions)

    def update(self, epoch: int, step: int, params: Iterable[torch.Tensor]) -> None:
        """After update `step`: its positions and the weights it left."""
        if self.file is None:
            return
        digest = hashlib.sha256()
        for p in params:
            digest.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("a") as f:
            f.write(json.dumps({"epoch": epoch, "step": step, "positions": self.positions,
                                "weights": digest.hexdigest()}) + "\n")
        self.positions = []
