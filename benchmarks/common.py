"""What the benchmarks share: an XTTS-v2-shaped work space built once, measured subprocesses, and the table.

The work space (`ensure_workspace`) lives in a cache folder and is reused by every script:

- `base/`: a base model folder in XTTS-v2's layout (config.json, vocab.json, model.pth, dvae.pth, mel_stats.pth)
  with random weights. `tiny` is the test bed of `utils/testbed.py` (2-layer, 64-wide GPT); `full` has the
  released model's shape: GPT 30 layers, 1024 wide, 16 heads, 6681 text tokens, plus the HiFi-GAN decoder and
  the DVAE.
- `dataset/`: the test bed's synthetic clips and CSVs.
- `checkpoints/checkpoint_1.pth`: a training checkpoint written by our own trainer (`utils/gpt_train.py
  --max_steps 1`, i.e. coqui's GPTTrainer driven by `RunTrainer`, saved by `RunTrainer.save_checkpoint`): the
  full model state (GPT, HiFi-GAN, DVAE), AdamW state (exp_avg, exp_avg_sq, step) for every GPT parameter, the
  LR scheduler and our run_state keys. At full size it is about 5.5 GB.

Measurements run in a fresh subprocess each. Peak RSS is the kernel's high-water mark of that process
(`VmHWM` in /proc/<pid>/status, or `ru_maxrss` from wait4 once it has exited); a probe that measures one call
inside a process resets the mark first (`/proc/self/clear_refs`), so imports are not counted. Whether a file was
in the page cache is measured with mincore(2) and reported; nothing is dropped from the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import fcntl
import json
import mmap
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
GPT_TRAIN = ROOT / "utils" / "gpt_train.py"
COQUI_RECIPE = ROOT / "tests" / "coqui_recipe.py"
SIZES = ("tiny", "full")
CACHE_ENV = "XTTS_BENCH_CACHE"
READY_FILE = "ready.json"
CHECKPOINT_STEP = 1  # optimizer updates in the work space's training checkpoint
CHECKPOINT_NAME = f"checkpoint_{CHECKPOINT_STEP}.pth"

# XTTS-v2 as released (coqui/XTTS-v2 config.json): what makes the GPT full-size; the rest as in the test bed.
FULL_TEXT_TOKENS = 6681
FULL_MODEL_ARGS = {"gpt_layers": 30, "gpt_n_model_channels": 1024, "gpt_n_heads": 16, "decoder_input_dim": 1024}
MB = 1e6
GB = 1e9


# --------------------------------------------------------------------------------------------- the work space
@dataclass(frozen=True)
class Workspace:
    """A base folder, a dataset and a training checkpoint of one size, in the cache."""

    size: str
    root: Path

    @property
    def base_dir(self) -> Path:
        return self.root / "base"

    @property
    def vocab(self) -> Path:
        return self.base_dir / "vocab.json"

    @property
    def base_model(self) -> Path:
        return self.base_dir / "model.pth"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def train_csv(self) -> Path:
        return self.dataset_dir / "metadata_train.csv"

    @property
    def eval_csv(self) -> Path:
        return self.dataset_dir / "metadata_eval.csv"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / CHECKPOINT_NAME

    def scratch(self, name: str) -> Path:
        """A new empty folder for one measurement's output, inside the cache (same file system)."""
        parent = self.root / "scratch"
        parent.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))


def default_cache() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "xtts-finetune-bench"


def ensure_workspace(size: str, cache: Path | None = None, *, log: Callable[[str], None] | None = None) -> Workspace:
    """The work space of `size`, built on first use (minutes and ~8 GB of disk for `full`), then reused."""
    if size not in SIZES:
        raise ValueError(f"--size must be one of {', '.join(SIZES)}, got {size!r}.")
    log = log or _stderr
    cache = Path(cache) if cache else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    ws = Workspace(size, cache / size)
    with open(cache / f".{size}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two scripts started together: one builds, the other waits
        if (ws.root / READY_FILE).is_file():
            return ws
        if ws.root.exists():
            shutil.rmtree(ws.root)  # an interrupted build
        ws.root.mkdir(parents=True)
        started = time.time()
        log(f"Building the {size} benchmark work space in {ws.root} (once) ...")
        _build_base(ws, log)
        _build_dataset(ws)
        _build_training_checkpoint(ws, log)
        info = {"size": size, "built": _now(), "build_s": round(time.time() - started, 1),
                "checkpoint_bytes": ws.checkpoint.stat().st_size, "base_model_bytes": ws.base_model.stat().st_size}
        (ws.root / READY_FILE).write_text(json.dumps(info, indent=2))
        log(f"Built in {info['build_s']:.0f} s: checkpoint {info['checkpoint_bytes'] / GB:.2f} GB")
    return ws


def _build_base(ws: Workspace, log: Callable[[str], None]) -> None:
    from utils import testbed

    if ws.size == "tiny":
        testbed.build_base(ws.base_dir, released_format=False)
    else:
        build_full_base(ws.base_dir, log=log)
    from utils.base_model.folder import check_base_folder

    check_base_folder(ws.base_dir)  # the real check every training start runs


def _build_dataset(ws: Workspace) -> None:
    from utils import testbed

    testbed.build_dataset(ws.dataset_dir)


def full_vocab_corpus(seed: int = 0, words: int = 60000) -> list[str]:
    """Deterministic pseudo-English text with enough distinct pairs to train a 6681-token BPE vocabulary."""
    import random

    from utils import testbed

    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "qu", "r", "s", "t", "v", "w", "y",
              "z", "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc", "sh", "sk", "sl",
              "sm", "sn", "sp", "st", "str", "sw", "th", "tr", "tw", "wh", "wr"]
    nuclei = ["a", "e", "i", "o", "u", "y", "ai", "au", "ea", "ee", "ei", "ie", "oa", "oi", "oo", "ou"]
    codas = ["", "", "b", "ck", "d", "ff", "g", "k", "l", "ll", "m", "n", "nd", "ng", "nk", "nt", "p", "r", "rd",
             "rk", "rn", "rt", "s", "ss", "st", "t", "th", "x"]
    lexicon = ["".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas)
                       for _ in range(rng.choice((1, 1, 2, 2, 3)))) for _ in range(20000)]
    lines = [" ".join(rng.choice(lexicon) for _ in range(12)) + rng.choice(".,!?") for _ in range(words // 12)]
    return testbed.SENTENCES + lines


def full_model_args(num_text_tokens: int = FULL_TEXT_TOKENS) -> dict[str, Any]:
    """config.json's model_args of the released XTTS-v2."""
    from utils import testbed

    return {**testbed.tiny_model_args(num_text_tokens), **FULL_MODEL_ARGS}


def build_full_base(folder: Path, *, seed: int = 0, log: Callable[[str], None] | None = None) -> Path:
    """A base folder in XTTS-v2's layout and size with random weights (model.pth ~1.9 GB, dvae.pth 0.2 GB)."""
    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.models.xtts import Xtts

    from utils import testbed
    from utils.base_model.folder import DVAE_KWARGS
    from utils.vocabulary.tokenizer import make_tokenizer

    log = log or _stderr
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = testbed.build_vocab(folder / "vocab.json", full_vocab_corpus(seed), vocab_size=FULL_TEXT_TOKENS - 1)
    if tokens != FULL_TEXT_TOKENS:
        raise RuntimeError(f"The generated vocabulary has {tokens} text tokens, not {FULL_TEXT_TOKENS}.")
    config = XttsConfig(model_args=XttsArgs(**full_model_args(tokens)), audio=XttsAudioConfig(),
                        languages=list(testbed.LANGUAGES))
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    log("  full-size Xtts (GPT 30x1024, HiFi-GAN) with random weights ...")
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = make_tokenizer(folder / "vocab.json")
    model.init_models()
    # The layout coqui itself writes (config as a dict); the released file pickles an XttsConfig instead.
    torch.save({"config": config.to_dict(), "model": model.state_dict()}, folder / "model.pth")
    del model
    torch.save(DiscreteVAE(**DVAE_KWARGS).state_dict(), folder / "dvae.pth")
    torch.save(torch.rand(80) + 0.5, folder / "mel_stats.pth")
    return folder


def _build_training_checkpoint(ws: Workspace, log: Callable[[str], None]) -> None:
    """One update of our real training from the base folder; its checkpoint_1.pth is what the benchmarks use."""
    out = ws.root / "train"
    log("  one training update with utils/gpt_train.py to write a real training checkpoint ...")
    cmd = train_command(ws, out, max_steps=CHECKPOINT_STEP, extra=["--save_step", "1", "--keep_checkpoints", "1"])
    done = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"Building the training checkpoint failed ({done.returncode}):\n{done.stderr[-3000:]}")
    found = sorted(out.rglob(CHECKPOINT_NAME))
    if not found:
        raise RuntimeError(f"utils/gpt_train.py wrote no {CHECKPOINT_NAME} under {out}:\n{done.stdout[-3000:]}")
    ws.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    os.replace(found[0], ws.checkpoint)  # alone in its folder: resuming it makes a new run folder elsewhere
    shutil.rmtree(out)


def train_command(ws: Workspace, output: Path, *, custom_model: Path | None = None, max_steps: int | None = None,
                  progress: Path | None = None, dataset: Path | None = None, batch_size: int = 2,
                  extra: Sequence[str] = ()) -> list[str]:
    """Our CLI on the work space's base and dataset (batch 2 by default; the default dataset has 8 training clips:
    4 updates per epoch)."""
    data = Path(dataset) if dataset else ws.dataset_dir
    cmd = [PYTHON, str(GPT_TRAIN), "--train_csv", str(data / "metadata_train.csv"), "--eval_csv",
           str(data / "metadata_eval.csv"), "--output_path", str(output), "--base_model_dir", str(ws.base_dir),
           "--batch_size", str(batch_size)]
    if custom_model is not None:
        cmd += ["--custom_model", str(custom_model)]
    if max_steps is not None:
        cmd += ["--max_steps", str(max_steps)]
    if progress is not None:
        cmd += ["--progress_jsonl", str(progress)]
    return cmd + list(extra)


def bench_env() -> dict[str, str]:
    """The environment of every measured process: offline, unbuffered, the repository importable first (entries
    already on PYTHONPATH are kept after it: the device run's carried packages and audio shim live there)."""
    env = dict(os.environ)
    path = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path})
    return env


# ------------------------------------------------------------------------------------------------ page cache
def resident_fraction(path: Path) -> float:
    """Share of `path`'s pages in the page cache right now (mincore(2)); reads nothing."""
    size = Path(path).stat().st_size
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    page = mmap.PAGESIZE
    pages = -(-size // page)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            resident = sum(b & 1 for b in bytes(vec))
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return resident / pages


def warm(path: Path) -> float:
    """Read `path` once so it sits in the page cache (as it does after being written); returns the seconds taken."""
    started = time.perf_counter()
    buf = bytearray(64 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - started


def cache_note(paths: Iterable[Path]) -> str:
    """'cached 100%' (the lowest share over `paths`, measured just now)."""
    share = min(resident_fraction(p) for p in paths)
    return f"cached {share:.0%}"


# ----------------------------------------------------------------------------------------------- /proc reading
def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


def proc_io(pid: int | str = "self") -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


_SMAPS_RANGE = re.compile(r"^[0-9a-f]+-[0-9a-f]+$")


def mapped_rss(pid: int | str, path: Path) -> dict[str, int]:
    """Resident bytes of each mapping of `path` in a process, keyed by its address range (smaps)."""
    target = str(Path(path).resolve())
    found: dict[str, int] = {}
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=5)
            if _SMAPS_RANGE.match(head[0]):
                current = head[0] if len(head) == 6 and head[5].strip() == target else None
            elif current and head[0] == "Rss:":
                found[current] = int(head[1]) * 1024
    return found


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure_call(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run `fn` in this process: its wall time, and the peak RSS it added above the RSS before it."""
    import gc

    gc.collect()
    reset_peak_rss()
    before = proc_status()["VmRSS"]
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    status = proc_status()
    return result, {"seconds": seconds, "peak_rss_added": status["VmHWM"] - before, "rss_before": before,
                    "peak_rss": status["VmHWM"]}


# ------------------------------------------------------------------------------------------ measured processes
@dataclass
class Measured:
    """One subprocess, measured from outside."""

    cmd: list[str]
    seconds: float  # from just before it was started to when it exited or was stopped
    returncode: int | None
    stopped: bool  # True: killed once `until` was satisfied
    peak_rss: int  # VmHWM of the measured process (bytes)
    peak_anon: int  # highest RssAnon sampled (bytes)
    rchar: int  # bytes through read()-family calls, any file (last sample)
    read_bytes: int  # bytes fetched from the block device (last sample)
    mapped: dict[str, int] = field(default_factory=dict)  # mapping -> highest resident bytes (watch_path only)
    started_at: float = 0.0  # time.time() just before the start
    output_tail: str = ""

    def mapped_bytes(self) -> int:
        return sum(self.mapped.values())

    def unsampled(self, starts: Iterable[int]) -> int:
        """How many of the mappings starting at `starts` were never seen by a sample (their reads are missed)."""
        seen = {int(k.split("-")[0], 16) for k in self.mapped}
        return sum(1 for s in starts if s not in seen)


def run_measured(cmd: Sequence[str], *, until: Callable[[], bool] | None = None, timeout: float = 3600,
                 strace_log: Path | None = None, watch_path: Path | None = None, cwd: Path = ROOT,
                 poll_s: float = 0.05, env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` in a new session, sampling its /proc files until it exits, or until `until()` is true (then it is
    killed with SIGKILL, after a last sample). With `strace_log`, read-family calls and mmaps are logged with file
    names (`strace -y`, seccomp filtered, so other calls run untraced); with `watch_path`, the resident size of
    each mapping of that file is tracked (every 0.5 s and at the stop: how much of it was read through mmap).
    `env`: variables set on top of bench_env()."""
    cmd = list(cmd)
    full = cmd
    if strace_log is not None:
        full = ["strace", "-f", "-qq", "--seccomp-bpf", "-y", "-s", "0", "-e", "signal=none",
                "-e", "trace=read,pread64,readv,preadv,preadv2,mmap", "-o", str(strace_log), "--", *cmd]
    sampler = _Sampler(watch_path)
    stopped, rusage, status = False, None, 0
    with tempfile.TemporaryFile() as out_file:
        started_at, t0 = time.time(), time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, env={**bench_env(), **(env or {})}, stdout=out_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                target = _traced_child(proc.pid) if strace_log is not None else proc.pid
                waited, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if waited:
                    seconds = time.perf_counter() - t0
                    break
                sampler.sample(target, smaps=False)
                if until is not None and until():
                    sampler.sample(target, smaps=True)
                    seconds, stopped = time.perf_counter() - t0, True
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, rusage = os.wait4(proc.pid, 0)
                    break
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"{' '.join(cmd[:3])} ... ran past {timeout:.0f} s")
                time.sleep(poll_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
            raise
        finally:
            proc.returncode = 0  # reaped by wait4 above; keep Popen from waiting again
        out_file.seek(0)
        tail = out_file.read()[-6000:].decode(errors="replace")
    peak = sampler.peak
    if rusage is not None:  # wait4 reports the child's own peak, and its reaped children's (strace's tracee)
        peak = max(peak, rusage.ru_maxrss * 1024)
    return Measured(cmd=cmd, seconds=seconds, returncode=None if stopped else os.waitstatus_to_exitcode(status),
                    stopped=stopped, peak_rss=peak, peak_anon=sampler.anon, rchar=sampler.rchar,
                    read_bytes=sampler.read_bytes, mapped=sampler.mapped, started_at=started_at, output_tail=tail)


class _Sampler:
    """The highest VmHWM and RssAnon, the latest I/O counters, and per-mapping resident bytes of one process."""

    def __init__(self, watch_path: Path | None) -> None:
        self.watch_path = watch_path
        self.peak = self.anon = self.rchar = self.read_bytes = 0
        self.mapped: dict[str, int] = {}
        self.last_smaps = 0.0

    def sample(self, pid: int | None, *, smaps: bool) -> None:
        """Read the process's /proc files (smaps too when asked, or when 0.5 s have passed since the last time)."""
        if pid is None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError):  # the process may exit between two reads
            st = proc_status(pid)
            self.peak, self.anon = max(self.peak, st["VmHWM"]), max(self.anon, st.get("RssAnon", 0))
            io = proc_io(pid)
            self.rchar, self.read_bytes = io["rchar"], io["read_bytes"]
            if self.watch_path is not None and (smaps or time.perf_counter() - self.last_smaps > 0.5):
                self.last_smaps = time.perf_counter()
                for k, v in mapped_rss(pid, self.watch_path).items():
                    self.mapped[k] = max(self.mapped.get(k, 0), v)


def _traced_child(tracer: int) -> int | None:
    """The process strace started (its first child)."""
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{tracer}/task/{tracer}/children").read_text().split()
        if children:
            return int(children[0])
    return None


_STRACE_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>.*\)\s+=\s+(?P<ret>-?\d+)")
_STRACE_UNFINISHED = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>.*<unfinished \.\.\.>")
_STRACE_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>\w+) resumed>.*\)\s+=\s+(?P<ret>-?\d+)")
_STRACE_MMAP = re.compile(r"^(?P<pid>\d+)\s+mmap\(.*, \d+<(?P<path>[^>]*)>, \w+\)\s+=\s+0x(?P<addr>[0-9a-f]+)")


@dataclass
class StraceReads:
    """What an `strace -f -y` log says a process did with one file."""

    read_bytes: int  # returned by read-family calls on it
    mmap_starts: list[int]  # start addresses of its memory mappings


def parse_strace(log: Path, path: Path) -> StraceReads:
    """Read-family bytes and mmaps of `path` (by the name the process opened it with) in an strace log."""
    target = str(Path(path).resolve())
    pending: dict[str, str] = {}
    total, maps = 0, []
    with open(log, errors="replace") as f:
        for line in f:
            m = _STRACE_CALL.match(line)
            if m:
                if m["path"] == target and int(m["ret"]) > 0:
                    total += int(m["ret"])
                continue
            m = _STRACE_MMAP.match(line)
            if m:
                if m["path"] == target:
                    maps.append(int(m["addr"], 16))
                continue
            m = _STRACE_UNFINISHED.match(line)
            if m:
                pending[m["pid"]] = m["path"]
                continue
            m = _STRACE_RESUMED.match(line)
            if m and m["pid"] in pending and pending.pop(m["pid"]) == target and int(m["ret"]) > 0:
                total += int(m["ret"])
    return StraceReads(total, maps)


def read_events(path: Path) -> list[dict[str, Any]]:
    """JSON-lines events written so far (a last line being written is skipped)."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def first_event(path: Path, kind: str) -> dict[str, Any] | None:
    return next((e for e in read_events(path) if e.get("event") == kind), None)


def have_strace() -> bool:
    return shutil.which("strace") is not None


# --------------------------------------------------------------------------------------------------- probes
def run_probe(script: Path, args: Sequence[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `script --probe ARGS` in a fresh process; it prints one JSON line (its measurement) last."""
    done = subprocess.run([PYTHON, str(script), "--probe", *args], capture_output=True, text=True, env=bench_env(),
                          cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"probe {script.name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_twice(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """measure_call, twice: the first call in a fresh process (lazy imports and first-use costs included) and a
    second one (a warm process, as in a running WebUI). Keys: seconds, peak_rss_added (first) and *_again."""
    _, first = measure_call(fn)
    result, again = measure_call(fn)
    return result, {**first, **{f"{k}_again": v for k, v in again.items()}}


def emit_probe(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ statistics
def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation from the median."""
    center = statistics.median(values)
    return statistics.median(abs(v - center) for v in values)


def round_ratios(ours: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Paired per-round ratios, rounded as `ratio_text` prints them, so a verdict on them is one a reader can check."""
    return [round(o / b, 3) for o, b in zip(ours, baseline, strict=True)]


def ratio_text(ratios: Sequence[float]) -> str:
    return ", ".join(f"{r:.3f}" for r in ratios)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: the relative range of repeated measurements."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)


# ------------------------------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One line of the table. `ours` and `baseline` are in `unit`; `met` is None where there is no target."""

    measurement: str
    ours: float
    baseline: float | None
    unit: str  # "s", "ms", "MB", "GB", "x size"
    target: str
    met: bool | None
    notes: str = ""
    baseline_name: str = ""
    paired_ratio: float | None = None  # set where the ratio is measured pairwise (the notes say how)

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.ours / self.baseline if self.baseline else None

    def cells(self) -> list[str]:
        baseline = "—" if self.baseline is None else fmt(self.baseline, self.unit)
        if self.baseline is not None and self.baseline_name:
            baseline += f" ({self.baseline_name})"
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}x"
        met = "n/a" if self.met is None else ("yes" if self.met else "NO")
        return [self.measurement, fmt(self.ours, self.unit), baseline, ratio, self.target, met, self.notes]


HEADER = ["measurement", "ours", "baseline", "ratio", "target", "met?", "notes"]


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB"
    if unit == "GB":
        return f"{value:.2f} GB"
    if unit == "x":
        return f"{value:.3f}x"
    return f"{value:.3g} {unit}"


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable in a terminal, pasteable into README)."""
    lines = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def write_rows(rows: Sequence[Row], path: Path) -> None:
    Path(path).write_text(json.dumps([asdict(r) for r in rows], indent=1))


def read_rows(path: Path) -> list[Row]:
    return [Row(**r) for r in json.loads(Path(path).read_text())]


def machine(gpu: str | None = None) -> str:
    """One line: CPU, cores, memory, the GPU used (`gpu`, else none), kernel, torch version."""
    import torch

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB RAM, {gpu or 'no GPU used'}, Linux {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


# ----------------------------------------------------------------------------------------------- the command
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", choices=SIZES, default="tiny", help="tiny: the test bed (seconds); full: XTTS-v2 size")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"work space cache folder (default: ${CACHE_ENV} or ~/.cache/xtts-finetune-bench)")
    p.add_argument("--repeats", type=int, default=None, help="repetitions per arm (default depends on --size)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here (for run_all.py)")
    p.add_argument("--probe", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def script_main(doc: str, argv: list[str] | None, measure: Callable[[Workspace, argparse.Namespace], Sequence[Row]],
                *, probe: Callable[[list[str]], None] | None = None, p: argparse.ArgumentParser | None = None,
                size: str | None = None) -> int:
    """What each benchmark script's main does: parse its options (`p`, else the common ones), run its probe when
    called as one, else measure on the work space (of `size`, else --size) and print/write the rows."""
    args = (p or parser(doc.splitlines()[0])).parse_args(argv)
    if args.probe:
        if probe is None:
            raise SystemExit("this script has no probe")
        probe(args.probe)
        return 0
    ws = ensure_workspace(size or args.size, args.cache)
    finish(measure(ws, args), args)
    return 0


def finish(rows: Sequence[Row], args: argparse.Namespace) -> None:
    print(format_table(rows), flush=True)
    if args.json:
        write_rows(rows, args.json)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
