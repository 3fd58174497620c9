"""Export a checkpoint as a `ready/` folder: the model for inference, without optimizer, scheduler or DVAE.

The folder holds model.pth (weights-only, config as a plain dict, so coqui's loader never rewrites it),
config.json, vocab.json and a reference speaker clip; it classifies as `base`, so it can also seed a new
fine-tune. It is built in `<folder>.tmp` and renamed into place once complete, so a failed export leaves the
previous folder as it was, never half old and half new.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import (
    FORMAT_VERSION,
    KEY_CONFIG,
    KEY_FORMAT,
    KEY_MODEL,
    KEY_STEP,
    KEY_VOCAB_SHA,
    CheckpointError,
)
from utils.checkpoints.read import read_checkpoint, xtts_weights
from utils.checkpoints.write import save_atomic
from utils.fsio import PARTIAL_SUFFIX, fsync_file, fsync_folder, write_atomic_with, write_json_atomic
from utils.vocabulary.tokenizer import matching_vocab, vocab_sha256
from utils.xtts import CONFIG_FILE, MODEL_FILE, VOCAB_FILE


@dataclass
class ExportResult:
    """What an export wrote."""

    folder: Path
    model: Path
    config: Path
    vocab: Path
    reference: Path | None
    size_bytes: int


def xtts_config_dict(config: Any) -> dict[str, Any]:
    """An inference config (XttsConfig's fields only, as a dict) from a checkpoint's training config."""
    from TTS.tts.configs.xtts_config import XttsConfig

    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    defaults = XttsConfig().to_dict()
    out = {key: raw.get(key, value) for key, value in defaults.items()}
    for section in ("model_args", "audio"):
        given = raw.get(section) or {}
        out[section] = {key: given.get(key, value) for key, value in defaults[section].items()}
    out["model"] = "xtts"
    return out


def find_vocab(checkpoint: Path, data: dict[str, Any], fallback: Path | None) -> Path:
    """The vocab.json a checkpoint was trained with: beside it (our run folders keep one), else `fallback`."""
    recorded = data.get(KEY_VOCAB_SHA)
    found = matching_vocab(recorded, [checkpoint.parent / VOCAB_FILE, fallback])
    if found is not None:
        return found
    raise CheckpointError(
        f"No vocabulary for {checkpoint}: expected vocab.json beside it"
        + (" with the fingerprint the checkpoint records" if recorded else "")
        + "; pass the vocabulary it was trained with."
    )


def export_model(
    checkpoint: str | Path, out_dir: str | Path, *, reference_wav: str | Path | None = None,
    vocab: str | Path | None = None,
) -> ExportResult:
    """Write `out_dir` (usually <output>/ready/) from a training checkpoint or any XTTS checkpoint."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    data = read_checkpoint(checkpoint)
    vocab_path = find_vocab(checkpoint, data, Path(vocab) if vocab else None)
    building = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)
    shutil.rmtree(building, ignore_errors=True)  # left by an export that failed or was killed
    building.mkdir(parents=True)
    try:
        _write_export(building, checkpoint, data, vocab_path, reference_wav)
        _replace_folder(building, out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    reference = out_dir / "reference.wav" if reference_wav is not None else None
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    return ExportResult(out_dir, out_dir / MODEL_FILE, out_dir / CONFIG_FILE, out_dir / VOCAB_FILE, reference, size)


def _write_export(out_dir: Path, checkpoint: Path, data: dict[str, Any], vocab_path: Path,
                  reference_wav: str | Path | None) -> None:
    """The export's files, each durable, into the (temporary) folder `out_dir`."""
    config = xtts_config_dict(data.get(KEY_CONFIG) or {})
    config["model_args"]["tokenizer_file"] = VOCAB_FILE
    state = {
        KEY_CONFIG: config,
        KEY_MODEL: xtts_weights(data[KEY_MODEL]),
        KEY_FORMAT: FORMAT_VERSION,
        KEY_VOCAB_SHA: data.get(KEY_VOCAB_SHA),
        KEY_STEP: data.get(KEY_STEP),
        "exported_from": str(checkpoint.resolve()),
    }
    if state[KEY_VOCAB_SHA] is None:
        state[KEY_VOCAB_SHA] = vocab_sha256(vocab_path)
    save_atomic(state, out_dir / MODEL_FILE)
    write_json_atomic(out_dir / CONFIG_FILE, config)
    copies = [(vocab_path, out_dir / VOCAB_FILE)]
    if reference_wav is not None:
        copies.append((Path(reference_wav), out_dir / "reference.wav"))
    for source, target in copies:
        shutil.copyfile(source, target)
        fsync_file(target)
    fsync_folder(out_dir)


def _replace_folder(new: Path, folder: Path) -> None:
    """Put the complete folder `new` where `folder` is: the old one is moved aside, then removed. A crash in
    between leaves `<folder>.old` (the previous export, whole) and no half-written `folder`."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    fsync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def zip_export(folder: str | Path, zip_path: str | Path | None = None) -> Path:
    """Pack an export folder into one zip for download (model.pth is already compressed poorly; store it)."""
    folder = Path(folder)
    zip_path = Path(zip_path) if zip_path else folder.with_suffix(".zip")

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    zf.write(path, arcname=f"{folder.name}/{path.name}")

    write_atomic_with(zip_path, write)
    return zip_path
