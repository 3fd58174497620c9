"""A record of the training data a run used (files, sizes, hashes), to tell a resumed run its data changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from utils.fsio import file_sha256


def data_manifest(csv_paths: list[str | Path], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Every CSV and audio file of the run with its size and sha256, and one digest over all of them."""
    files = {}
    for path in [*map(Path, csv_paths), *sorted({Path(s["audio_file"]) for s in samples})]:
        files[str(path.resolve())] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": files}


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """None when both manifests list the same data; else a short account of what differs."""
    if old.get("digest") == new["digest"]:
        return None
    before, after = old.get("files", {}), new["files"]
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = [f"{len(v)} {what} (e.g. {Path(v[0]).name})" for what, v in
             (("added", added), ("removed", removed), ("changed", changed)) if v]
    return ", ".join(parts) or "the file list differs"
