"""The XTTS-v2 base model folder: where it lives, and a check of every file in it (utils/base_model/download.py
fills it).

Training starts from a folder in the layout of `coqui/XTTS-v2` on the Hugging Face hub. The user names one with
`--base_model_dir DIR`; without it we use a per-user cache folder and fill it on first use. The model's
dimensions are read from that folder's config.json, never assumed. Checking a folder only reads it: model.pth
in the released format is read safely through `utils.checkpoints.read_checkpoint`, never rewritten.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import CheckpointError, gpt_layers, text_embedding_key
from utils.checkpoints.meta import RefusedStructure, can_read_meta, check_legacy_structure, read_meta
from utils.checkpoints.read import read_checkpoint
from utils.errors import UserInputError
from utils.vocabulary.tokenizer import VocabError, load_vocab, text_token_count
from utils.xtts import CONFIG_FILE, DVAE_FILE, MEL_CHANNELS, MEL_STATS_FILE, MODEL_FILE, SPEAKERS_FILE, VOCAB_FILE

FLAG = "--base_model_dir"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, VOCAB_FILE, DVAE_FILE, MEL_STATS_FILE)
OPTIONAL_FILES = (SPEAKERS_FILE,)

HUB_REPO = "coqui/XTTS-v2"
HUB_REVISION = "v2.0.3"  # the tag of the last XTTS-v2 release (a tag its owners could move: README says so)
HUB_URL_TEMPLATE = "https://huggingface.co/{repo}/resolve/{revision}/"
DEFAULT_BASE_URL = HUB_URL_TEMPLATE.format(repo=HUB_REPO, revision=HUB_REVISION)
ENV_BASE_DIR = "XTTS_BASE_DIR"
ENV_BASE_URL = "XTTS_BASE_URL"
CACHE_SUBDIR = Path("xtts-finetune") / "XTTS-v2"

# The DVAE XTTS-v2 trains with (gpt_trainer.py); its architecture is fixed whatever the GPT's size.
DVAE_KWARGS: dict[str, Any] = {
    "channels": 80,
    "normalization": None,
    "positional_dims": 1,
    "num_tokens": 1024,
    "codebook_dim": 512,
    "hidden_dim": 512,
    "num_resnet_blocks": 3,
    "kernel_size": 3,
    "num_layers": 2,
    "use_transposed_convs": False,
}
# model_args keys whose values fix the GPT's tensor shapes; all must be in config.json.
DIM_KEYS = (
    "gpt_layers",
    "gpt_n_model_channels",
    "gpt_n_heads",
    "gpt_num_audio_tokens",
    "gpt_max_audio_tokens",
    "gpt_max_text_tokens",
)
TEXT_TOKENS_KEY = "gpt_number_text_tokens"  # may be null: XTTS then takes it from the vocabulary

ProgressCallback = Callable[[str, int, int | None], None]  # (file name, bytes done, total bytes or None)


class BaseModelError(UserInputError, ValueError):
    """A base model folder that cannot be used, or a download that failed; the message names folder and files."""


@dataclass(frozen=True)
class BaseModel:
    """A checked base model folder: its files, its parsed config.json, and the GPT dimensions config.json sets."""

    folder: Path
    model_path: Path
    config_path: Path
    vocab_path: Path
    dvae_path: Path
    mel_stats_path: Path
    speakers_path: Path | None
    config: dict[str, Any]
    gpt_layers: int
    gpt_n_model_channels: int
    gpt_n_heads: int
    gpt_number_text_tokens: int
    gpt_num_audio_tokens: int
    gpt_max_audio_tokens: int
    gpt_max_text_tokens: int

    @property
    def model_args(self) -> dict[str, Any]:
        """config.json's model_args, the dict XTTS builds its GPT from."""
        return self.config["model_args"]


# ----------------------------------------------------------------------------------------------- where it lives


def default_base_dir() -> Path:
    """The folder used without --base_model_dir: $XTTS_BASE_DIR, else a per-user cache folder."""
    if os.environ.get(ENV_BASE_DIR):
        return Path(os.environ[ENV_BASE_DIR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / CACHE_SUBDIR


def default_base_url() -> str:
    """Where files are downloaded from: $XTTS_BASE_URL (a mirror, or a test server), else the pinned hub tag."""
    return os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL


def missing_files(folder: str | Path, names: tuple[str, ...] = REQUIRED_FILES) -> list[str]:
    """Which of `names` are not regular files in `folder` (all of them when the folder does not exist)."""
    folder = Path(folder)
    return [name for name in names if not (folder / name).is_file()]


# ------------------------------------------------------------------------------------------------ check a folder


def _fail(path: Path, problem: str, fix: str) -> BaseModelError:
    """One sentence: the path, what is wrong with it, and what to do (always mentioning the flag)."""
    return BaseModelError(
        f"Base model file {path} {problem}: {fix}, or pass {FLAG} DIR with a complete XTTS-v2 folder."
    )


def _redownload_fix(path: Path) -> str:
    """What to do about a bad file: replace it (in the download cache, deleting it is enough)."""
    return f"replace it with XTTS-v2's {path.name} (in the download cache: delete it, the next run downloads it)"


def check_base_folder(folder: str | Path) -> BaseModel:
    """Check that `folder` holds a usable XTTS-v2 base model and read its dimensions; reads, never writes."""
    folder = Path(folder)
    _check_folder_and_files(folder)
    config = _read_config(folder / CONFIG_FILE)
    _check_vocab(folder / VOCAB_FILE)
    dims = _dims_from_config(folder / CONFIG_FILE, config, folder / VOCAB_FILE)
    _check_dvae(folder / DVAE_FILE)
    _check_mel_stats(folder / MEL_STATS_FILE)
    _check_model(folder / MODEL_FILE, dims)
    speakers = folder / SPEAKERS_FILE
    return BaseModel(
        folder=folder,
        model_path=folder / MODEL_FILE,
        config_path=folder / CONFIG_FILE,
        vocab_path=folder / VOCAB_FILE,
        dvae_path=folder / DVAE_FILE,
        mel_stats_path=folder / MEL_STATS_FILE,
        speakers_path=speakers if speakers.is_file() else None,
        config=config,
        **dims,
    )


def _check_folder_and_files(folder: Path) -> None:
    """Refuse a missing folder, a file in its place, or any missing required file (all named at once)."""
    needed = ", ".join(REQUIRED_FILES)
    if not folder.exists():
        raise BaseModelError(
            f"Base model folder {folder} does not exist: pass {FLAG} DIR with a folder holding {needed} "
            f"(XTTS-v2 from https://huggingface.co/{HUB_REPO}), or leave {FLAG} out to download them."
        )
    if not folder.is_dir():
        raise BaseModelError(f"Base model folder {folder} is a file, not a folder: pass {FLAG} DIR holding {needed}.")
    missing = missing_files(folder)
    if missing:
        raise BaseModelError(
            f"Base model folder {folder} lacks {', '.join(missing)}: put the XTTS-v2 files there "
            f"(from https://huggingface.co/{HUB_REPO}) or pass {FLAG} DIR with a folder holding {needed}."
        )


def _read_config(path: Path) -> dict[str, Any]:
    """config.json parsed, refused unless it describes an XTTS model (`"model": "xtts"` and `model_args`)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f"is not JSON ({e})", "use the config.json released with XTTS-v2") from e
    if not isinstance(config, dict) or config.get("model") != "xtts" or not isinstance(config.get("model_args"), dict):
        model = config.get("model") if isinstance(config, dict) else type(config).__name__
        raise _fail(
            path,
            f'is not an XTTS config (model is {model!r}, it must be "xtts" with a model_args section)',
            "use the config.json released with XTTS-v2",
        )
    return config


def _check_vocab(path: Path) -> None:
    """vocab.json must be a BPE tokenizer file with the tokens XTTS needs (utils.vocab decides)."""
    try:
        load_vocab(path)
    except VocabError as e:
        raise BaseModelError(f"{str(e).rstrip('.')}, or pass {FLAG} DIR with a complete XTTS-v2 folder.") from e


def _dims_from_config(path: Path, config: dict[str, Any], vocab_path: Path) -> dict[str, int]:
    """The GPT dimensions config.json's model_args set; a null text-token count means the vocabulary's, as in XTTS."""
    args = config["model_args"]
    dims: dict[str, int] = {}
    for key in (*DIM_KEYS, TEXT_TOKENS_KEY):
        value = args.get(key)
        if key == TEXT_TOKENS_KEY and value is None:
            value = text_token_count(vocab_path)  # xtts.py: gpt_number_text_tokens = tokenizer.get_number_tokens()
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _fail(path, f"has model_args.{key} = {value!r}, not a positive integer", "fix or replace it")
        dims[key] = value
    return dims


@functools.lru_cache(maxsize=1)
def expected_dvae_shapes() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of XTTS-v2's DVAE state dict, built once on CPU without touching the global RNG."""
    import torch
    from TTS.tts.layers.xtts.dvae import DiscreteVAE

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        dvae = DiscreteVAE(**DVAE_KWARGS)
    return {k: tuple(v.shape) for k, v in dvae.state_dict().items()}


def _load_tensor_file(path: Path) -> Any:
    """torch.load with weights_only (no code runs) and memory-mapped when possible, after the capped metadata read
    (utils/checkpoints/meta.py) has accepted the file's structure, so a tiny hostile file cannot make torch
    allocate gigabytes; errors name the file."""
    import zipfile

    import torch

    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)", _redownload_fix(path))
    try:
        if can_read_meta(path):
            read_meta(path)  # builds no tensor; refuses a global or a structure no tensor file needs
        else:
            check_legacy_structure(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, IndexError...) for bad files
        raise _fail(path, f"is not a readable PyTorch file ({_load_error_reason(e)})", _redownload_fix(path)) from e


def _load_error_reason(e: Exception) -> str:
    """A short reason for a failed torch.load: torch's own first line, unless it is the long weights_only notice."""
    import pickle

    first = str(e).splitlines()[0] if str(e) else ""
    if isinstance(e, RefusedStructure) and first:
        return f"refused: {first[:200]}"
    if isinstance(e, pickle.UnpicklingError) or first.startswith("Weights only load failed"):
        return "corrupt, or holding objects other than tensors, whose loading could run code"
    if isinstance(e, RuntimeError | EOFError | OSError) and first:
        return first[:200]
    return "corrupt or truncated"


def _check_dvae(path: Path) -> None:
    """dvae.pth must hold exactly the DVAE's keys and shapes: XTTS loads it with strict=False and would go on
    silently with a random DVAE otherwise."""
    import torch

    state = _load_tensor_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, "is not a DVAE state dict", _redownload_fix(path))
    expected = expected_dvae_shapes()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    wrong = [f"{k} {shapes[k]} != {want}" for k, want in expected.items() if k in shapes and shapes[k] != want]
    if missing or extra or wrong:
        details = "; ".join(
            f"{label} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
            for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong))
            if items
        )
        raise _fail(path, f"does not match XTTS-v2's DVAE ({details})", _redownload_fix(path))


def _check_mel_stats(path: Path) -> None:
    """mel_stats.pth must be a tensor of 80 finite values (the per-channel mel normalisation)."""
    import torch

    stats = _load_tensor_file(path)
    if not isinstance(stats, torch.Tensor) or stats.numel() != MEL_CHANNELS or not torch.isfinite(stats).all():
        what = f"a tensor of shape {tuple(stats.shape)}" if isinstance(stats, torch.Tensor) else type(stats).__name__
        raise _fail(path, f"holds {what}, not {MEL_CHANNELS} finite mel statistics", _redownload_fix(path))


def _check_model(path: Path, dims: dict[str, int]) -> None:
    """model.pth must be a readable XTTS checkpoint whose GPT has the shapes config.json describes."""
    try:
        state = read_checkpoint(path)["model"]
    except CheckpointError as e:
        raise BaseModelError(f"{str(e).rstrip('.')}; {_redownload_fix(path)}, or pass {FLAG} DIR.") from e
    except Exception as e:  # garbage can make torch.load raise types read_checkpoint does not expect (IndexError)
        raise _fail(path, f"is not a readable PyTorch file ({_load_error_reason(e)})", _redownload_fix(path)) from e
    found = _gpt_shape(state)
    want = {
        "text rows": dims[TEXT_TOKENS_KEY],
        "width": dims["gpt_n_model_channels"],
        "layers": dims["gpt_layers"],
        "audio rows": dims["gpt_num_audio_tokens"],
    }
    differ = [f"{k} {found.get(k)} (config.json says {v})" for k, v in want.items() if found.get(k) != v]
    if differ:
        raise _fail(path, f"has a GPT of another size than config.json: {', '.join(differ)}", "use matching files")


def _gpt_shape(state: dict[str, Any]) -> dict[str, int | None]:
    """Text rows, width, layer count and audio rows of the GPT in a model state dict (either key prefix)."""
    text_key = text_embedding_key(state)
    audio_key = next((k for k in state if k.endswith("gpt.mel_embedding.weight")), None)
    rows, width = state[text_key].shape if text_key else (None, None)
    return {
        "text rows": rows,
        "width": width,
        "layers": gpt_layers(state),
        "audio rows": state[audio_key].shape[0] if audio_key else None,
    }


