"""Export a checkpoint as a `ready/` folder: the model for inference, without optimizer, scheduler or DVAE.

The folder holds model.pth (weights-only, config as a plain dict, so coqui's loader never rewrites it),
config.json, vocab.json and a reference speaker clip; it classifies as `base`, so it can also seed a new
fine-tune.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils import checkpoints as ck


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
    from utils.vocab import vocab_sha256

    recorded = data.get(ck.KEY_VOCAB_SHA)
    for path in (checkpoint.parent / "vocab.json", fallback):
        if path is not None and path.is_file() and (not recorded or vocab_sha256(path) == recorded):
            return path
    raise ck.CheckpointError(
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
    data = ck.read_checkpoint(checkpoint)
    vocab_path = find_vocab(checkpoint, data, Path(vocab) if vocab else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = xtts_config_dict(data.get(ck.KEY_CONFIG) or {})
    config["model_args"]["tokenizer_file"] = "vocab.json"
    state = {
        ck.KEY_CONFIG: config,
        ck.KEY_MODEL: ck.xtts_weights(data[ck.KEY_MODEL]),
        ck.KEY_FORMAT: ck.FORMAT_VERSION,
        ck.KEY_VOCAB_SHA: data.get(ck.KEY_VOCAB_SHA),
        ck.KEY_STEP: data.get(ck.KEY_STEP),
        "exported_from": str(checkpoint.resolve()),
    }
    if state[ck.KEY_VOCAB_SHA] is None:
        from utils.vocab import vocab_sha256

        state[ck.KEY_VOCAB_SHA] = vocab_sha256(vocab_path)
    model_path = ck.save_atomic(state, out_dir / "model.pth")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    if vocab_path.resolve() != (out_dir / "vocab.json").resolve():
        shutil.copyfile(vocab_path, out_dir / "vocab.json")
    reference = None
    if reference_wav is not None:
        reference = out_dir / "reference.wav"
        shutil.copyfile(reference_wav, reference)
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    return ExportResult(out_dir, model_path, out_dir / "config.json", out_dir / "vocab.json", reference, size)


def zip_export(folder: str | Path, zip_path: str | Path | None = None) -> Path:
    """Pack an export folder into one zip for download (model.pth is already compressed poorly; store it)."""
    folder = Path(folder)
    zip_path = Path(zip_path) if zip_path else folder.with_suffix(".zip")
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                zf.write(path, arcname=f"{folder.name}/{path.name}")
    tmp.replace(zip_path)
    return zip_path
