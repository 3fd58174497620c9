"""On a GPU: full-size XTTS-v2 training speed and memory, our CLI versus the bare coqui recipe, and resume
start-up time; with two cheap extras on the tiny test bed (a mixed-precision run, and resume parity).

Training (`--size full`: the work space's XTTS-v2-shaped base, GPT 30 layers x 1024, random weights): our CLI
(utils/gpt_train.py) and tests/coqui_recipe.py run with the same settings (batch size, gradient accumulation,
learning rate, one epoch of the same dataset of synthetic 6-10 s clips at 22050 Hz with ~100-character texts),
each in a fresh process, arms alternating (recipe, ours, then ours, recipe, ...). As in bench_train_loop.py, the
time of a batch is the gap between consecutive steps' TensorBoard timestamps (both trainers log every step); the
first gaps are warm-up and dropped, each run gives its median, each round a paired ratio ours / recipe. GPU memory
of a run: the highest sum of `used_memory` over the compute processes nvidia-smi lists (only the measured process
uses the GPU), sampled every 0.5 s while it runs; it includes the CUDA context and what PyTorch's caching allocator
holds. Both arms are measured the same way. Host memory: the process's peak RSS. The recipe trains from random
weights (it takes no checkpoint), ours from the base's: the same model and the same work per step. Ours ends at its
last update (--max_steps, one checkpoint saved); the recipe evaluates and saves after it; neither is timed.

Resume start-up: time from just before the process starts to its first update's progress event, when our CLI
resumes the work space's full-size training checkpoint (bench_resume_startup.py's "ours" arm) versus a fresh
start of our CLI from the base model ("fresh"). Each process is stopped once that event is written (the checkpoint
save that follows is not timed). No strace there: bytes read are not measured on the GPU machine.

Extras (only when the budget allows): `--mixed_precision` for a few updates on the tiny test bed (GPU only): are
the losses finite, is the grad scaler saved; and resume parity: 4 updates straight (checkpoints at 2 and 4) versus
resuming that run's checkpoint_2 to 4; the largest absolute difference of the final GPT weights (on a GPU not
necessarily 0: CUDA kernels need not be deterministic).

`--budget SECONDS` counts from the start (the work space build included); a run is begun only while the budget
still fits it (estimated from the runs of its kind so far), so repeats and extras are skipped when time is short,
and each run's timeout is what is left. The table is written after every measurement to `--results` (Markdown)
and `--json`, so a run stopped from outside still leaves its figures.

    python benchmarks/bench_gpu.py --size full --results gpu.md            # on a machine with a CUDA GPU
    python benchmarks/bench_gpu.py --device cpu --size tiny --batch_size 2 --clip_seconds 3 5 --updates 5
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_gpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_resume_startup, bench_train_loop, common

WARMUP_GAPS = 3
TARGET = 0.02
RESERVE_S = 15.0  # kept back from the budget for writing results
GUESS_S = {"train": 80.0, "resume": 60.0, "extra": 35.0}  # a run's seconds, until one of its kind was timed
FIRST_MIN_S = 60.0  # the first round of training and of resume is tried whenever this much is left
EXTRA_STEPS = 4


# ------------------------------------------------------------------------------------------------ the budget
class Budget:
    """Seconds left of `--budget`, and whether the next runs of a kind still fit (judged by the slowest so far)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self.taken: dict[str, list[float]] = {k: [] for k in GUESS_S}

    def left(self) -> float:
        return self.seconds - (self.clock() - self.started)

    def estimate(self, kind: str) -> float:
        return max(self.taken[kind]) if self.taken[kind] else GUESS_S[kind]

    def fits(self, kind: str, runs: int, *, first: bool = False) -> bool:
        """Whether `runs` more runs of `kind` fit; with `first` and none timed yet, whether FIRST_MIN_S are left
        (the guess may be wrong both ways, and each run's timeout keeps it inside the budget anyway)."""
        if first and not self.taken[kind]:
            return self.left() - RESERVE_S >= FIRST_MIN_S
        return self.left() - RESERVE_S >= 1.1 * runs * self.estimate(kind)

    def timeout(self) -> float:
        """What one run may take: the rest of the budget, less a little to write the results."""
        return max(self.left() - RESERVE_S / 2, 5.0)

    def record(self, kind: str, seconds: float) -> None:
        self.taken[kind].append(seconds)


# ------------------------------------------------------------------------------------------------ GPU memory
def _smi(query: str) -> list[list[str]]:
    """Rows of `nvidia-smi --query-<query> --format=csv,noheader,nounits`, split on commas ([] if unavailable)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            return [[c.strip() for c in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
    return []


def _mib(text: str) -> int | None:
    return int(float(text) * 2**20) if text.replace(".", "", 1).isdigit() else None


def compute_apps() -> list[tuple[str, int | None]]:
    """(pid, bytes of GPU memory or None where not reported) of each process nvidia-smi lists as using the GPU."""
    rows = _smi("compute-apps=pid,used_memory")
    return [(row[0], _mib(row[1])) for row in rows if len(row) == 2 and row[0].isdigit()]


class GpuMemory:
    """While open, samples nvidia-smi every `interval` s: the highest total `used_memory` of the compute processes
    (`peak_apps`, their pids in `pids`) and the highest rise of the card's used memory over its level at the start
    (`peak_rise`, for drivers that list no processes). Does nothing when `enabled` is false."""

    def __init__(self, enabled: bool, interval: float = 0.5) -> None:
        self.enabled, self.interval = enabled, interval
        self.peak_apps = self.peak_rise = 0
        self.pids: set[str] = set()
        self._base = 0
        self._others: set[str] = set()  # processes on the GPU before the run began: not counted
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def card_used() -> int:
        rows = _smi("gpu=memory.used")
        return (_mib(rows[0][0]) or 0) if rows else 0

    def sample(self) -> None:
        used = [(pid, m) for pid, m in compute_apps() if pid not in self._others]
        self.pids.update(pid for pid, _ in used)
        self.peak_apps = max(self.peak_apps, sum(m or 0 for _, m in used))
        if not self.peak_apps:  # a driver that lists no per-process memory: the card's total instead
            self.peak_rise = max(self.peak_rise, self.card_used() - self._base)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> GpuMemory:
        if self.enabled:
            deadline = time.monotonic() + 3  # a process killed just before may still be releasing its memory
            while compute_apps() and time.monotonic() < deadline:
                time.sleep(0.2)
            self._others = {pid for pid, _ in compute_apps()}
            self._base = self.card_used()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    @property
    def peak(self) -> int:
        return self.peak_apps or self.peak_rise

    def how(self) -> str:
        return "per process" if self.peak_apps else "card total, rise over idle"


# ------------------------------------------------------------------------------------------------ settings
@dataclass
class Settings:
    """What both training arms share."""

    device: str
    batch_size: int
    grad_accum: int
    lr: float
    updates: int
    clip_seconds: tuple[float, float]
    sentences: int

    @property
    def batches(self) -> int:
        return self.updates * self.grad_accum

    def describe(self) -> str:
        low, high = self.clip_seconds
        return (f"batch {self.batch_size}, grad accum {self.grad_accum}, lr {self.lr:g}, {self.updates} updates per "
                f"run (one epoch), synthetic clips of {low:g}-{high:g} s at 22050 Hz with texts of about "
                f"{50 * self.sentences} characters")


@dataclass
class Results:
    """Everything measured so far (rows are rebuilt from it after each measurement)."""

    train: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # one dict per round: arm -> run
    resume: list[dict[str, dict[str, Any]]] = field(default_factory=list)
    mixed: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    cached: float | None = None
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ training
def gpu_dataset(ws: common.Workspace, s: Settings) -> Path:
    """Clips for exactly one epoch of `s.batches` batches (plus 2 for evaluation), built once per shape."""
    from utils import testbed

    low, high = s.clip_seconds
    clips = s.batches * s.batch_size
    folder = ws.root / f"gpu_dataset_{clips}x{low:g}-{high:g}s_{s.sentences}"
    if not (folder / "metadata_eval.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        testbed.build_dataset(folder, clips=clips + 2, eval_clips=2, seconds=(low, high),
                              sentences_per_clip=s.sentences)
    return folder


def train_command(ws: common.Workspace, arm: str, data: Path, out: Path, s: Settings) -> list[str]:
    shared = ["--grad_accum", str(s.grad_accum), "--lr", str(s.lr)]
    if arm == "recipe":
        return [common.PYTHON, str(common.COQUI_RECIPE), str(ws.base_dir), str(data), str(out), "--epochs", "1",
                "--save_step", "1000000", "--batch_size", str(s.batch_size), *shared]
    # --max_steps ends ours right after its last update (one checkpoint saved, no evaluation); the recipe evaluates
    # and saves after it. Neither happens inside the timed steps.
    return common.train_command(ws, out, dataset=data, max_steps=s.updates, batch_size=s.batch_size,
                                extra=["--num_epochs", "1", "--save_step", "1000000", *shared])


def train_run(ws: common.Workspace, arm: str, data: Path, s: Settings, budget: Budget) -> dict[str, Any]:
    """One fresh training process of `arm`: its median batch gap after warm-up, peak GPU memory and RSS."""
    out = ws.scratch(f"gpu-train-{arm}")
    try:
        with GpuMemory(s.device == "cuda") as gpu:
            m = common.run_measured(train_command(ws, arm, data, out, s), timeout=budget.timeout())
        if m.returncode != 0:
            raise RuntimeError(f"{arm} training run failed (exit {m.returncode}):\n{m.output_tail}")
        times = bench_train_loop.step_times(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(times) != s.batches:
        raise RuntimeError(f"{arm}: expected {s.batches} logged steps, found {len(times)}:\n{m.output_tail}")
    gaps = [b - a for a, b in itertools.pairwise(times)][WARMUP_GAPS:]
    if not gaps:
        raise RuntimeError(f"{arm}: {len(times)} steps leave no gap after {WARMUP_GAPS} warm-up gaps: raise --updates")
    return {"update_s": common.median(gaps) * s.grad_accum, "gaps": len(gaps), "gpu_peak": gpu.peak,
            "gpu_how": gpu.how(), "gpu_pids": len(gpu.pids), "peak_rss": m.peak_rss, "wall_s": m.seconds,
            "tail": m.output_tail}


# ------------------------------------------------------------------------------------------------ resume
def resume_run(ws: common.Workspace, arm: str, device: str, budget: Budget) -> dict[str, Any]:
    """bench_resume_startup's `arm` ("ours": resume the checkpoint; "fresh": start from the base), stopped at its
    first update event."""
    out = ws.scratch(f"gpu-resume-{arm}")
    events = out / "events.jsonl"
    try:
        cmd = bench_resume_startup.arm_command(ws, arm, out / "out", events)
        with GpuMemory(device == "cuda") as gpu:
            m = common.run_measured(cmd, until=lambda: common.first_event(events, "update") is not None,
                                    timeout=budget.timeout())
        update, start = common.first_event(events, "update"), common.first_event(events, "start")
        if update is None:
            raise RuntimeError(f"resume arm {arm}: no update event (exit {m.returncode}):\n{m.output_tail}")
        return {"to_update_s": update["time"] - m.started_at,
                "to_start_s": start["time"] - m.started_at if start else None, "mode": (start or {}).get("mode"),
                "gpu_peak": gpu.peak, "gpu_pids": len(gpu.pids), "peak_rss": m.peak_rss, "wall_s": m.seconds}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ extras
def extras_workspace(cache: Path) -> common.Workspace:
    """The tiny test bed's base and dataset (no training checkpoint: the extras make their own)."""
    from utils import testbed

    ws = common.Workspace("tiny", cache / "gpu_extras")
    if not (ws.root / common.READY_FILE).is_file():
        shutil.rmtree(ws.root, ignore_errors=True)
        testbed.build_base(ws.base_dir, released_format=False)
        testbed.build_dataset(ws.dataset_dir)
        (ws.root / common.READY_FILE).write_text("{}")
    return ws


def _run_cli(cmd: list[str], budget: Budget, what: str) -> common.Measured:
    m = common.run_measured(cmd, timeout=budget.timeout())
    budget.record("extra", m.seconds)
    if m.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {m.returncode}):\n{m.output_tail}")
    return m


def _load(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def mixed_precision_run(ews: common.Workspace, budget: Budget) -> dict[str, Any]:
    """A few updates of our CLI with --mixed_precision: the losses reported, and whether the scaler was saved."""
    out = ews.scratch("gpu-mixed")
    events = out / "events.jsonl"
    try:
        cmd = common.train_command(ews, out / "out", max_steps=EXTRA_STEPS, progress=events,
                                   extra=["--mixed_precision", "--save_step", "1000"])
        _run_cli(cmd, budget, "the --mixed_precision run")
        losses = [e.get("loss") for e in common.read_events(events) if e.get("event") == "update"]
        saved = sorted((out / "out").rglob(f"checkpoint_{EXTRA_STEPS}.pth"))
        scaler = bool(saved) and bool(_load(saved[0]).get("scaler"))
        return {"losses": losses, "scaler_saved": scaler}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def parity_run(ews: common.Workspace, budget: Budget) -> dict[str, Any]:
    """EXTRA_STEPS updates straight (checkpoints every half) versus resuming the half-way checkpoint to the end."""
    import torch

    half = EXTRA_STEPS // 2
    out = ews.scratch("gpu-parity")
    try:
        straight = out / "straight"
        _run_cli(common.train_command(ews, straight, max_steps=EXTRA_STEPS,
                                      extra=["--save_step", str(half), "--keep_checkpoints", "10"]),
                 budget, "the uninterrupted parity run")
        middle = next(straight.rglob(f"checkpoint_{half}.pth"))
        end_a = next(straight.rglob(f"checkpoint_{EXTRA_STEPS}.pth"))
        if budget.left() - RESERVE_S < budget.estimate("extra"):
            raise TimeoutError("no time left for the resumed half")
        resumed = out / "resumed"
        _run_cli(common.train_command(ews, resumed, custom_model=middle, max_steps=EXTRA_STEPS),
                 budget, "the resumed parity run")
        end_b = next(resumed.rglob(f"checkpoint_{EXTRA_STEPS}.pth"))
        a, b = _load(end_a)["model"], _load(end_b)["model"]
        gpt = [k for k in a if k.startswith("xtts.gpt.") and a[k].is_floating_point()]
        max_diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in gpt)
        differing = sum(1 for k in a if not torch.equal(a[k], b[k]))
        return {"max_abs_diff": max_diff, "gpt_tensors": len(gpt), "differing": differing, "tensors": len(a)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the table
def _pairs(rounds: list[dict[str, dict[str, Any]]], a: str, b: str, key: str) -> list[tuple[float, float]]:
    return [(r[a][key], r[b][key]) for r in rounds if a in r and b in r]


def _values(rounds: list[dict[str, dict[str, Any]]], arm: str, key: str) -> list[Any]:
    return [r[arm][key] for r in rounds if arm in r and r[arm].get(key) is not None]


def build_rows(res: Results, s: Settings, size: str, checkpoint_gb: float) -> list[common.Row]:
    tag = "GPU" if s.device == "cuda" else "CPU"
    rows: list[common.Row] = []
    pairs = _pairs(res.train, "ours", "recipe", "update_s")
    if pairs:
        ours = common.median([o for o, _ in pairs])
        recipe = common.median([r for _, r in pairs])
        paired = [o / r for o, r in pairs]
        ratio, noise = common.median(paired), common.mad(paired)
        allowed = max(TARGET, noise)
        runs = "; ".join(f"{arm} " + ", ".join(f"{v * 1000:.0f}" for v in _values(res.train, arm, "update_s")) + " ms"
                         for arm in ("recipe", "ours"))
        base = f"{size} size, {s.describe()}; {len(pairs)} round(s), arms alternating, fresh processes"
        rows.append(common.Row(
            f"{tag} training: time per update", ours * 1000, recipe * 1000, "ms", "within 2% or noise",
            abs(ratio - 1) <= allowed,
            f"{base}; first {WARMUP_GAPS} step gaps dropped; run medians: {runs}; ratio = median of paired ratios "
            f"({', '.join(f'{p:.3f}' for p in paired)}); noise (MAD) {noise:.1%}", "coqui recipe",
            paired_ratio=ratio))
        rows.append(common.Row(
            f"{tag} training: updates per second", 1 / ours, 1 / recipe, "updates/s", "—", None,
            f"the same runs; ratio = median of paired ratios, above 1 = ours faster; samples per second: ours "
            f"{s.batch_size * s.grad_accum / ours:.1f}, recipe {s.batch_size * s.grad_accum / recipe:.1f}",
            "coqui recipe", paired_ratio=common.median([r / o for o, r in pairs])))
        gpu = _pairs(res.train, "ours", "recipe", "gpu_peak")
        if s.device == "cuda" and gpu and all(o and r for o, r in gpu):
            per_run = "; ".join(f"{arm} " + ", ".join(f"{v / common.GB:.2f}" for v in _values(res.train, arm,
                                                                                                 "gpu_peak"))
                                for arm in ("recipe", "ours"))
            how = next(r["ours"]["gpu_how"] for r in res.train if "ours" in r)
            rows.append(common.Row(
                f"{tag} training: peak GPU memory", common.median([o for o, _ in gpu]) / common.GB,
                common.median([r for _, r in gpu]) / common.GB, "GB", "—", None,
                f"nvidia-smi used_memory ({how}), sampled every 0.5 s: CUDA context + PyTorch's caching allocator; "
                f"per run (GB): {per_run}", "coqui recipe"))
        rss = _pairs(res.train, "ours", "recipe", "peak_rss")
        rows.append(common.Row(
            f"{tag} training: peak host RSS", common.median([o for o, _ in rss]) / common.GB,
            common.median([r for _, r in rss]) / common.GB, "GB", "—", None,
            "high-water mark of the process (VmHWM / ru_maxrss)", "coqui recipe"))
    resume = _pairs(res.resume, "ours", "fresh", "to_update_s")
    if resume:
        ours_t = common.median([o for o, _ in resume])
        fresh_t = common.median([f for _, f in resume])
        starts = {arm: _values(res.resume, arm, "to_start_s") for arm in ("ours", "fresh")}
        gpu_mem = {arm: _values(res.resume, arm, "gpu_peak") for arm in ("ours", "fresh")}
        notes = (f"{size} size, {checkpoint_gb:.2f} GB checkpoint, cached {res.cached or 0:.0%}; median of "
                 f"{len(resume)} per arm; per run: ours " + ", ".join(f"{o:.1f}" for o, _ in resume) + " s, fresh "
                 + ", ".join(f"{f:.1f}" for _, f in resume) + " s; to the 'start' event: ours "
                 + _median_s(starts["ours"]) + ", fresh " + _median_s(starts["fresh"])
                 + "; stopped at the first update event")
        if s.device == "cuda" and all(gpu_mem.values()):
            notes += (f"; GPU memory up to then: ours {common.median(gpu_mem['ours']) / common.GB:.2f} GB, fresh "
                      f"{common.median(gpu_mem['fresh']) / common.GB:.2f} GB")
        rows.append(common.Row(f"{tag} resume: command to first update", ours_t, fresh_t, "s", "—", None, notes,
                               "fresh start"))
    if res.mixed is not None:
        losses = res.mixed["losses"]
        finite = sum(1 for v in losses if isinstance(v, int | float) and math.isfinite(v))
        rows.append(common.Row(
            f"{tag} mixed precision (tiny): updates with a finite loss", finite, None, "updates",
            f"all {len(losses)}", finite == len(losses) == EXTRA_STEPS,
            "our CLI --mixed_precision on the tiny test bed; losses " + ", ".join(_loss(v) for v in losses)
            + f"; grad scaler saved in the checkpoint: {'yes' if res.mixed['scaler_saved'] else 'no'}"))
    if res.parity is not None:
        p = res.parity
        half = EXTRA_STEPS // 2
        rows.append(common.Row(
            f"{tag} resume parity (tiny): max abs difference of GPT weights", p["max_abs_diff"], None, "max abs",
            "—", None,
            f"{EXTRA_STEPS} updates straight vs {half} + resume + {half}, our CLI on the tiny test bed; tensors "
            f"differing: {p['differing']} of {p['tensors']} (bit-identical: {'yes' if not p['differing'] else 'no'})"))
    return rows


def _median_s(values: list[float]) -> str:
    return f"{common.median(values):.1f} s" if values else "?"


def _loss(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def header(args: Any, s: Settings, device_info: dict[str, Any], seconds: float, started: datetime.datetime,
           ws_info: dict[str, Any]) -> str:
    card = device_info.get("name") or "no GPU"
    lines = [f"GPU benchmarks (`benchmarks/bench_gpu.py --size {args.size} --device {s.device}`), "
             f"{started:%Y-%m-%d %H:%M}, {seconds / 60:.1f} min (budget {args.budget:.0f} s)."]
    if device_info.get("name"):
        lines.append(f"Card: {card}, {device_info['memory'] / 2**30:.1f} GiB, compute capability "
                     f"{device_info['capability']}, {device_info['sms']} SMs, driver {device_info.get('driver', '?')}; "
                     f"torch {device_info['torch']} (CUDA {device_info['cuda']}).")
    lines.append(f"Machine: {common.machine(card if device_info.get('name') else None)}.")
    shim = os.environ.get("XTTS_BENCH_AUDIO_SHIM")
    lines.append("Audio: read with soundfile through benchmarks/device_shim (torchaudio.load replaced, torchcodec and "
                 "FFmpeg absent there), the same for both arms." if shim else
                 "Audio: read with torchaudio.load as installed.")
    lines.append(f"Settings: {s.describe()}.")
    if ws_info:
        lines.append(f"Work space: {args.size}, built in {ws_info.get('build_s', '?')} s (this run: "
                     f"{'yes' if ws_info.get('built_now') else 'no, reused'}).")
    return "\n".join(lines)


def write_results(args: Any, rows: list[common.Row], res: Results, head: str) -> str:
    text = head + "\n\n" + (common.format_table(rows) if rows else "(no measurement finished yet)")
    if res.skipped:
        text += "\n\nSkipped (budget): " + "; ".join(res.skipped) + "."
    if res.errors:
        text += "\n\nErrors:\n" + "\n".join(f"- {e}" for e in res.errors)
    if args.results:
        tmp = args.results.with_name(args.results.name + ".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, args.results)
    if args.json:
        common.write_rows(rows, args.json)
    return text


# ------------------------------------------------------------------------------------------------ the run
def device_probe(device: str) -> dict[str, Any]:
    """The card and torch build, asked in a child process so this one never holds a CUDA context."""
    code = ("import json, torch\n"
            "d = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': torch.cuda.is_available()}\n"
            "if d['available']:\n"
            "    p = torch.cuda.get_device_properties(0)\n"
            "    d.update(name=torch.cuda.get_device_name(0), memory=p.total_memory,\n"
            "             capability=f'{p.major}.{p.minor}', sms=p.multi_processor_count)\n"
            "print(json.dumps(d))\n")
    done = subprocess.run([common.PYTHON, "-c", code], capture_output=True, text=True, env=common.bench_env(),
                          cwd=common.ROOT, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"torch could not start:\n{done.stderr[-3000:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if device == "cuda":
        if not info["available"]:
            raise RuntimeError(f"--device cuda, but torch {info['torch']} sees no CUDA GPU.")
        rows = _smi("gpu=driver_version")
        info["driver"] = rows[0][0] if rows else "?"
    else:
        info.pop("name", None)
    return info


class Stopped(Exception):
    """SIGTERM (e.g. from `timeout`): the measured process is killed and the results so far are written."""


def _stop_on_sigterm(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not interrupt writing the results
    raise Stopped(f"stopped by signal {signum} (time limit?)")


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: a GPU must be there; cpu: hide any GPU (for a test of the script)")
    p.add_argument("--budget", type=float, default=450, help="seconds for everything, the work space build included")
    p.add_argument("--results", type=Path, default=None, help="write the header and table (Markdown) here, as it goes")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--grad_accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-6)
    p.add_argument("--updates", type=int, default=30, help="updates per training run (one epoch)")
    p.add_argument("--clip_seconds", type=float, nargs=2, default=(6.0, 10.0), metavar=("LOW", "HIGH"))
    p.add_argument("--sentences", type=int, default=2, help="test-bed sentences (~50 characters each) per text")
    p.add_argument("--resume_repeats", type=int, default=2, help="rounds of the resume start-up arms")
    p.add_argument("--no_extras", action="store_true", help="skip the mixed-precision and parity runs")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    budget = Budget(args.budget)
    started = datetime.datetime.now()
    s = Settings(args.device, args.batch_size, args.grad_accum, args.lr, args.updates,
                 tuple(args.clip_seconds), args.sentences)
    if s.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # inherited by every measured process
    res = Results()
    info: dict[str, Any] = {}
    ws_info: dict[str, Any] = {}
    checkpoint_gb = 0.0

    def publish() -> None:
        rows = build_rows(res, s, args.size, checkpoint_gb)
        write_results(args, rows, res, header(args, s, info, budget.seconds - budget.left(), started, ws_info))

    try:
        info.update(device_probe(s.device))
        log(f"device: {info.get('name') or 'CPU'}; torch {info['torch']}, CUDA {info['cuda']}")
        publish()
        cache = Path(args.cache) if args.cache else common.default_cache()
        built_before = (cache / args.size / common.READY_FILE).is_file()
        ws = common.ensure_workspace(args.size, cache, log=log)
        ws_info = {**json.loads((ws.root / common.READY_FILE).read_text()), "built_now": not built_before}
        checkpoint_gb = ws.checkpoint.stat().st_size / common.GB
        log(f"work space ready ({'built' if not built_before else 'reused'}), {budget.left():.0f} s left")
        data = gpu_dataset(ws, s)
        publish()
        run_plan(ws, cache, data, s, args, budget, res, publish)
    except Exception as e:
        res.errors.append(f"{type(e).__name__}: {e}".strip()[:4000])
        log(f"stopped: {res.errors[-1]}")
    rows = build_rows(res, s, args.size, checkpoint_gb)
    text = write_results(args, rows, res, header(args, s, info, budget.seconds - budget.left(), started, ws_info))
    print(text, file=sys.stderr, flush=True)  # the whole of it, for the log
    print(common.format_table(rows) if rows else "(no measurement finished)", flush=True)  # stdout: the table alone
    return 1 if res.errors and not rows else 0


def run_plan(ws: common.Workspace, cache: Path, data: Path, s: Settings, args: Any, budget: Budget, res: Results,
             publish: Any) -> None:
    """Training round 1, resume round 1, training round 2, extras, then the remaining rounds, while time lasts."""
    train_rounds = args.repeats or 3
    plan: list[tuple[str, int]] = [("train", 0), ("resume", 0)]
    if train_rounds > 1:
        plan.append(("train", 1))
    if not args.no_extras:
        plan.append(("extras", 0))
    plan += [("resume", i) for i in range(1, args.resume_repeats)]
    plan += [("train", i) for i in range(2, train_rounds)]
    for kind, i in plan:
        if kind == "train":
            if not budget.fits("train", 2, first=i == 0):
                res.skipped.append(f"training round {i + 1}")
                continue
            order = ("recipe", "ours") if i % 2 == 0 else ("ours", "recipe")
            runs: dict[str, dict[str, Any]] = {}
            res.train.append(runs)
            for arm in order:
                r = train_run(ws, arm, data, s, budget)
                budget.record("train", r["wall_s"])
                runs[arm] = r
                log(f"training round {i + 1}, {arm}: {r['update_s'] * 1000:.1f} ms per update over {r['gaps']} "
                    f"gaps, GPU peak {r['gpu_peak'] / common.GB:.2f} GB ({r['gpu_how']}, {r['gpu_pids']} pid(s)), "
                    f"RSS {r['peak_rss'] / common.GB:.2f} GB, run {r['wall_s']:.0f} s; {budget.left():.0f} s left")
                if i == 0:
                    log(f"{arm} output (end):\n{r['tail'][-1500:]}")
                publish()
        elif kind == "resume":
            if not budget.fits("resume", 2, first=i == 0):
                res.skipped.append(f"resume round {i + 1}")
                continue
            if res.cached is None:
                common.warm(ws.checkpoint)
                res.cached = common.resident_fraction(ws.checkpoint)
            order = ("ours", "fresh") if i % 2 == 0 else ("fresh", "ours")
            rounds: dict[str, dict[str, Any]] = {}
            res.resume.append(rounds)
            for arm in order:
                r = resume_run(ws, arm, s.device, budget)
                budget.record("resume", r["wall_s"])
                rounds[arm] = r
                log(f"resume round {i + 1}, {arm} ({r['mode']}): first update after {r['to_update_s']:.1f} s, GPU "
                    f"{r['gpu_peak'] / common.GB:.2f} GB, run {r['wall_s']:.0f} s; {budget.left():.0f} s left")
                publish()
        else:
            run_extras(cache, s, budget, res, publish)


def run_extras(cache: Path, s: Settings, budget: Budget, res: Results, publish: Any) -> None:
    """The mixed-precision run (GPU only) and the parity check, each only if it fits; a failure is noted, not fatal."""
    wanted = (["mixed precision"] if s.device == "cuda" else []) + ["parity"]
    if not budget.fits("extra", 1 + len(wanted)):
        res.skipped.append("extras (" + ", ".join(wanted) + ")")
        return
    ews = extras_workspace(cache)
    for name in wanted:
        runs = 1 if name == "mixed precision" else 2
        if not budget.fits("extra", runs):
            res.skipped.append(name)
            continue
        try:
            if name == "mixed precision":
                res.mixed = mixed_precision_run(ews, budget)
                log(f"mixed precision: losses {res.mixed['losses']}, scaler saved {res.mixed['scaler_saved']}")
            else:
                res.parity = parity_run(ews, budget)
                log(f"parity: {res.parity}")
        except (RuntimeError, TimeoutError, StopIteration, OSError) as e:
            res.errors.append(f"{name}: {type(e).__name__}: {e}"[:3000])
            log(f"{name} failed: {res.errors[-1]}")
        publish()


if __name__ == "__main__":
    sys.exit(main())
