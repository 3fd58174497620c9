"""The XTTS-v2 base model folder: where it lives, download it (with checksums), and check every file in it.

Training starts from a folder in the layout of `coqui/XTTS-v2` on the Hugging Face hub. The user names one with
`--base_model_dir DIR`; without it we use a per-user cache folder and fill it on first use. The model's
dimensions are read from that folder's config.json, never assumed. Checking a folder only reads it: model.pth
in the released format is read safely through `utils.checkpoints.read_checkpoint`, never rewritten.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints import CheckpointError, fsync_folder, read_checkpoint, text_embedding_key
from utils.vocab import VocabError, load_vocab, text_token_count

FLAG = "--base_model_dir"
MODEL_FILE = "model.pth"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
DVAE_FILE = "dvae.pth"
MEL_STATS_FILE = "mel_stats.pth"
SPEAKERS_FILE = "speakers_xtts.pth"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, VOCAB_FILE, DVAE_FILE, MEL_STATS_FILE)
OPTIONAL_FILES = (SPEAKERS_FILE,)

HUB_REPO = "coqui/XTTS-v2"
HUB_REVISION = "v2.0.3"  # the tag of the last XTTS-v2 release; a tag, so the files never change under us
HUB_URL_TEMPLATE = "https://huggingface.co/{repo}/resolve/{revision}/"
DEFAULT_BASE_URL = HUB_URL_TEMPLATE.format(repo=HUB_REPO, revision=HUB_REVISION)
ENV_BASE_DIR = "XTTS_BASE_DIR"
ENV_BASE_URL = "XTTS_BASE_URL"
CACHE_SUBDIR = Path("xtts-finetune") / "XTTS-v2"
PART_SUFFIX = ".part"  # a file being downloaded: <name>.part, renamed only once complete and verified
LOCK_FILE = ".download.lock"

# sha256 of the files at HUB_REVISION, applied only when downloading from DEFAULT_BASE_URL. No documented values
# were found when this was written, so the hub's own X-Linked-ETag header (the sha256 of each LFS file) is what
# is verified; add entries here once checked by hand (`sha256sum` of a download) to pin them independently.
KNOWN_SHA256: dict[str, str] = {}

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
MEL_CHANNELS = 80
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
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

ProgressCallback = Callable[[str, int, int | None], None]  # (file name, bytes done, total bytes or None)


class BaseModelError(ValueError):
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
    """torch.load with weights_only (no code runs) and memory-mapped when possible; errors name the file."""
    import zipfile

    import torch

    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)", _redownload_fix(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, IndexError...) for bad files
        raise _fail(path, f"is not a readable PyTorch file ({_load_error_reason(e)})", _redownload_fix(path)) from e


def _load_error_reason(e: Exception) -> str:
    """A short reason for a failed torch.load: torch's own first line, unless it is the long weights_only notice."""
    import pickle

    first = str(e).splitlines()[0] if str(e) else ""
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
    layers = {k.split("gpt.gpt.h.")[1].split(".")[0] for k in state if "gpt.gpt.h." in k}
    rows, width = state[text_key].shape if text_key else (None, None)
    return {
        "text rows": rows,
        "width": width,
        "layers": len(layers),
        "audio rows": state[audio_key].shape[0] if audio_key else None,
    }


# --------------------------------------------------------------------------------------------------- download


def ensure_base_model(
    folder: str | Path | None = None,
    *,
    download: bool = True,
    base_url: str | None = None,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> BaseModel:
    """The checked base model in `folder` (default: default_base_dir()), downloading missing files if allowed."""
    folder = Path(folder) if folder is not None else default_base_dir()
    if download and missing_files(folder):
        download_base_model(folder, base_url=base_url, progress=progress, progress_callback=progress_callback)
    return check_base_folder(folder)


def download_base_model(
    dest: str | Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> Path:
    """Download the missing XTTS-v2 files (and speakers_xtts.pth if the server has it) into `dest`; each file is
    written to <name>.part and renamed only once complete and its checksum verified. Existing files are kept."""
    dest = Path(dest)
    url = (base_url or default_base_url()).rstrip("/") + "/"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BaseModelError(
            f"Cannot create base model folder {dest} ({e}): pass {FLAG} DIR with a writable folder."
        ) from e
    with _download_lock(dest):
        for name in missing_files(dest):
            _fetch_required(dest, url, name, progress, progress_callback)
        for name in missing_files(dest, OPTIONAL_FILES):
            _fetch_optional(dest, url, name, progress, progress_callback)
    return dest


def _fetch_required(dest: Path, url: str, name: str, progress: bool, callback: ProgressCallback | None) -> None:
    """Download one required file; network failures become one error naming the folder, what is missing, the flag."""
    try:
        _download_file(url + name, dest / name, _known_sha256(url, name), progress, callback)
    except (urllib.error.URLError, OSError) as e:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        missing = ", ".join(missing_files(dest))
        raise BaseModelError(
            f"Cannot download the XTTS-v2 base model into {dest}: {url + name} failed ({reason}), so {missing} "
            f"are still missing; connect to the network and run again, or pass {FLAG} DIR with a folder holding them."
        ) from e


def _fetch_optional(dest: Path, url: str, name: str, progress: bool, callback: ProgressCallback | None) -> None:
    """Download an optional file; its absence or any failure is reported on stderr and otherwise ignored."""
    try:
        _download_file(url + name, dest / name, _known_sha256(url, name), progress, callback)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            print(f"Skipped optional {name} for {dest}: {url + name} answered {e.code} {e.reason}.", file=sys.stderr)
    except (BaseModelError, urllib.error.URLError, OSError) as e:
        print(f"Skipped optional {name} for {dest}: {e}", file=sys.stderr)


def _known_sha256(url: str, name: str) -> str | None:
    """The pinned sha256 of `name`, for downloads from the pinned hub revision only."""
    return KNOWN_SHA256.get(name) if url == DEFAULT_BASE_URL else None


@contextlib.contextmanager
def _download_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on `dest` so two processes (CLI and WebUI) never write the same .part file."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(dest / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process downloading into {dest} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does and keeps each redirect's headers: the hub sends X-Linked-ETag (the
    file's sha256) on its 302 to the CDN, not on the final response."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _sha256_from_headers(all_headers: list[Any]) -> str | None:
    """The sha256 a server states for the file: X-Linked-ETag (any hop) first, then the final ETag, if 64-hex."""
    candidates = [h.get("X-Linked-ETag") for h in all_headers] + [all_headers[-1].get("ETag")]
    for value in candidates:
        if value:
            tag = value.strip().removeprefix("W/").strip('"').lower()
            if SHA256_RE.match(tag):
                return tag
    return None


def _open(url: str, offset: int) -> tuple[http.client.HTTPResponse, str | None]:
    """GET `url` from byte `offset` (a Range request when > 0); returns the response and the stated sha256."""
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    request = urllib.request.Request(url, headers={"User-Agent": "xtts-finetune", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    response = opener.open(request, timeout=TIMEOUT_S)
    return response, _sha256_from_headers([*redirects.headers, response.headers])


def _start(url: str, part: Path, known_sha: str | None) -> tuple[http.client.HTTPResponse, str | None, int, int | None]:
    """Open the download, resuming a leftover .part only when a checksum will verify the whole file afterwards;
    returns (response, expected sha256, bytes already in .part, total size or None)."""
    offset = part.stat().st_size if part.is_file() else 0
    if offset:
        try:
            response, sha = _open(url, offset)
        except urllib.error.HTTPError as e:
            if e.code != 416:  # 416: the range is past the end, so the .part is stale; start over
                raise
        else:
            expected = known_sha or sha
            if response.status == 200:  # the server ignored the Range header: this is the whole file
                return response, expected, 0, _content_length(response)
            if response.status == 206 and _content_range_start(response) == offset and expected:
                return response, expected, offset, _content_range_total(response)
            response.close()  # no checksum to verify a resumed file with: start over
    response, sha = _open(url, 0)
    return response, known_sha or sha, 0, _content_length(response)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _content_range_total(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _download_file(
    url: str, final: Path, known_sha: str | None, progress: bool, callback: ProgressCallback | None
) -> None:
    """Fetch `url` into `final` via `final`.part: resume or restart the .part, check length and sha256, then
    rename. A broken connection keeps the .part (to resume); a wrong checksum deletes it."""
    part = final.with_name(final.name + PART_SUFFIX)
    response, expected, offset, total = _start(url, part, known_sha)
    with response:
        _check_free_space(final.parent, (total or 0) - offset, final.name)
        digest = _hash_file(part) if offset else hashlib.sha256()
        done = _stream(response, part, offset, total, digest, final.name, progress, callback)
    if total is not None and done != total:
        raise BaseModelError(
            f"Download of {final.name} into {final.parent} stopped after {done} of {total} bytes (connection "
            f"closed); run again to resume it, or pass {FLAG} DIR with a folder holding the files."
        )
    if expected and digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        raise BaseModelError(
            f"Download of {final.name} into {final.parent} is corrupt: its sha256 is {digest.hexdigest()}, the "
            f"server states {expected}; run again to download it anew, or pass {FLAG} DIR with a folder holding "
            "the files."
        )
    os.replace(part, final)
    fsync_folder(final.parent)


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    digest: Any,
    name: str,
    progress: bool,
    callback: ProgressCallback | None,
) -> int:
    """Copy the response body into `part` (appending after `offset`), hashing and reporting progress; returns
    the bytes the .part holds afterwards. Transport errors are turned into a BaseModelError (the .part is kept)."""
    from tqdm import tqdm

    done = offset
    with open(part, "ab" if offset else "wb") as f, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress,
        file=sys.stderr, leave=False,
    ) as bar:
        try:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if callback is not None:
                    callback(name, done, total)
        except (http.client.HTTPException, OSError) as e:
            f.flush()
            raise BaseModelError(
                f"Download of {name} into {part.parent} broke after {done} bytes ({e or type(e).__name__}); run "
                f"again to resume it, or pass {FLAG} DIR with a folder holding the files."
            ) from e
        finally:
            f.flush()
            os.fsync(f.fileno())
    return done


def _hash_file(path: Path) -> Any:
    """A sha256 object fed with the bytes already in `path` (to verify a resumed download as a whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _check_free_space(folder: Path, needed: int, name: str) -> None:
    """Refuse to start a download the disk cannot hold."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise BaseModelError(
            f"Base model folder {folder} has {free / 1e9:.1f} GB free but {name} needs {needed / 1e9:.1f} GB: free "
            f"some space, or pass {FLAG} DIR with a folder on a larger disk."
        )


__all__ = [
    "DEFAULT_BASE_URL",
    "FLAG",
    "HUB_REPO",
    "HUB_REVISION",
    "OPTIONAL_FILES",
    "REQUIRED_FILES",
    "BaseModel",
    "BaseModelError",
    "check_base_folder",
    "default_base_dir",
    "default_base_url",
    "download_base_model",
    "ensure_base_model",
    "missing_files",
]
