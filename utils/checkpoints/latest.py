"""`--custom_model latest`: the checkpoint a restart continues from, found under the output folder, so that one
command line serves a run's first launch and every restart (a shell retry loop, a cluster's requeue, torchrun's
--max_restarts)."""

from __future__ import annotations

import logging
from pathlib import Path

from utils.checkpoints.classify import classify_checkpoint
from utils.checkpoints.keys import CheckpointError, run_checkpoints

logger = logging.getLogger(__name__)


def latest_checkpoint(output_path: str | Path) -> Path | None:
    """Among the complete checkpoint_<N>.pth files under `output_path` (never best_model.pth, whose RNG state is
    the one after an evaluation; never a partial `.tmp` file): in the run folder whose newest checkpoint was
    written last, the one holding the most optimizer updates. None when there is none yet."""
    runs: dict[Path, list[tuple[float, Path]]] = {}
    root = Path(output_path)
    if not root.is_dir():
        return None
    for folder in {p.parent for p in root.rglob("checkpoint_*.pth")}:
        for path in run_checkpoints(folder):
            try:
                runs.setdefault(folder, []).append((path.stat().st_mtime, path))
            except FileNotFoundError:  # pruned by a running training since it was listed
                continue
    by_recency = sorted(runs.values(), key=lambda files: max(mtime for mtime, _ in files), reverse=True)
    for files in by_recency:
        found = most_updates([path for _, path in files])
        if found is not None:
            return found
    return None


def most_updates(paths: list[Path]) -> Path | None:
    """The readable checkpoint among `paths` holding the most optimizer updates (read from its content); an
    unreadable one is passed over with a warning."""
    best: tuple[int, Path] | None = None
    for path in paths:
        try:
            step = classify_checkpoint(path).step
        except (CheckpointError, OSError) as e:
            logger.warning("Skipping %s for --custom_model latest: %s", path, e)
            continue
        if best is None or step > best[0]:
            best = (step, path)
    return None if best is None else best[1]
