"""Read checkpoints safely (weights_only: no code from the file runs) and load their weights into a model,
refusing anything that does not fit instead of loading part of it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from utils.checkpoints.keys import KEY_MODEL, CheckpointError, text_embedding_key
from utils.checkpoints.meta import (
    RefusedGlobal,
    RefusedStructure,
    TensorMeta,
    can_read_meta,
    check_legacy_structure,
    read_meta,
)


def _coqui_config_classes() -> list:
    """Config classes a released XTTS-v2 model.pth pickles; allowed, and nothing else, when reading one."""
    from TTS.config.shared_configs import BaseAudioConfig, BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    return [XttsConfig, XttsArgs, XttsAudioConfig, BaseDatasetConfig, BaseAudioConfig]


def _released_xtts_v2_globals() -> list:
    """Compatibility shim for the released XTTS-v2 model.pth (coqui-tts < 0.22 layout): it pickles XttsArgs and
    XttsAudioConfig under their old module, TTS.tts.models.xtts. Map those names to today's classes."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig

    legacy = [(cls, f"TTS.tts.models.xtts.{cls.__qualname__}") for cls in (XttsArgs, XttsAudioConfig)]
    return _coqui_config_classes() + legacy


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist: check the path.")
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder: pass a .pth file inside it.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes): it was never written completely; pick another.")


def _refused(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} was refused: it holds objects other than tensors and coqui configs "
        f"(loading it could run code). Use a checkpoint written by XTTS training. ({str(e).splitlines()[0]})"
    )


def _not_a_checkpoint(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} was refused: its structure is not a checkpoint's ({str(e).splitlines()[0]}). Use a "
        f"checkpoint written by XTTS training."
    )


def unreadable_error(path: Path, e: Exception) -> CheckpointError:
    """The error for a file torch or zipfile cannot read (truncated or corrupt), naming it."""
    return CheckpointError(
        f"Checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {str(e).splitlines()[0]}"
    )


def _check_xtts(path: Path, data: Any) -> dict[str, Any]:
    if isinstance(data, torch.Tensor | TensorMeta):
        raise CheckpointError(f"Checkpoint {path} holds a bare tensor, not an XTTS checkpoint.")
    if not isinstance(data, dict) or not isinstance(data.get(KEY_MODEL), dict):
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: it has no 'model' state dict.")
    key = text_embedding_key(data[KEY_MODEL])
    if key is None:
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: it has no GPT text embedding.")
    embedding = data[KEY_MODEL][key]
    if not isinstance(embedding, torch.Tensor | TensorMeta) or len(embedding.shape) != 2:
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: its text embedding {key} is not a "
                              f"2-D tensor ({type(embedding).__name__}).")
    return data


def _read_structure(path: Path) -> Any:
    """The capped metadata read (utils/checkpoints/meta.py), as CheckpointError for anything it refuses: what
    every load does first, so that a hostile file is refused before torch allocates anything for it."""
    try:
        if can_read_meta(path):
            return read_meta(path)
        check_legacy_structure(path)
        return None
    except RefusedGlobal as e:
        raise _refused(path, e) from e
    except RefusedStructure as e:
        raise _not_a_checkpoint(path, e) from e
    except Exception as e:  # zipfile and pickle raise many types for corrupt files
        raise unreadable_error(path, e) from e


def read_checkpoint(path: str | Path, *, mmap: bool = True) -> dict[str, Any]:
    """Load a checkpoint with weights_only (no code from the file runs), after the capped metadata read has
    accepted its structure; memory-mapped by default, so that tensor data is read only when touched. Raises
    CheckpointError naming the file for anything that is not an XTTS checkpoint."""
    path = Path(path)
    _check_file(path)
    meta = _read_structure(path)
    if meta is not None:
        _check_xtts(path, meta)
    try:
        with torch.serialization.safe_globals(_released_xtts_v2_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise _refused(path, e) from e
    except Exception as e:  # torch raises many types for corrupt files (RuntimeError, EOFError, IndexError...)
        raise unreadable_error(path, e) from e
    return _check_xtts(path, data)


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's keys, scalars and tensor shapes (TensorMeta in place of tensors), without building any
    tensor: milliseconds even for a 5.6 GB file. Refuses exactly what read_checkpoint refuses."""
    path = Path(path)
    _check_file(path)
    if not can_read_meta(path):
        return read_checkpoint(path)  # a legacy (pre-zip) file: checked by the capped reader, then loaded in full
    return _check_xtts(path, _read_structure(path))


TRAINER_ONLY_PREFIXES = ("dvae.", "torch_mel_spectrogram_style_encoder.", "torch_mel_spectrogram_dvae.")


def xtts_weights(model_state: dict[str, Any]) -> dict[str, Any]:
    """The Xtts part of any checkpoint's weights: `xtts.` prefix stripped, trainer-only modules (DVAE, mel
    extractors) dropped. Works for trainer checkpoints, exports and the released model.pth alike."""
    out = {}
    for key, value in model_state.items():
        key = key.removeprefix("xtts.")
        if not key.startswith(TRAINER_ONLY_PREFIXES):
            out[key] = value
    return out


def load_xtts_weights(xtts: torch.nn.Module, model_state: dict[str, Any], source: Path) -> None:
    """Load a checkpoint's weights into an Xtts model, refusing any missing, unexpected or mis-shaped key."""
    weights = xtts_weights(model_state)
    target = xtts.state_dict()
    missing = sorted(set(target) - set(weights))
    unexpected = sorted(set(weights) - set(target))
    wrong = [k for k in target if k in weights and tuple(weights[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensors of another shape (e.g. {k}: {tuple(weights[k].shape)} here, "
                         f"{tuple(target[k].shape)} expected)")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"Checkpoint {source} does not fit the model its config describes: {'; '.join(parts)}. "
                              f"Use a checkpoint of the same XTTS size, or the matching --base_model_dir.")
    xtts.load_state_dict(weights, strict=True)
