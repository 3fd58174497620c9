"""On a GPU: peak GPU memory and time per sample of our CLI at XTTS-v2 size with 11 s clips, for each combination
of batch size {1, 2, 4, 8} x gradient checkpointing x optimizer (adamw, adamw8bit) x precision (fp32, fp16, bf16)
that fits, beside today's default mode (fp32, adamw, no checkpointing) at the same batch.

Each cell is one fresh process of our CLI (utils/gpt_train.py) training `--updates` updates on a dataset of
`batch x updates` clips of exactly `--clip_seconds` with two-sentence texts; the time of a batch is the gap
between consecutive steps' TensorBoard timestamps (bench_train_loop.step_times), the first gap dropped, the
median taken, divided by the batch: seconds per sample. GPU memory: bench_gpu.GpuMemory (nvidia-smi's per-process
used memory, sampled every 0.5 s: CUDA context plus what PyTorch's allocator holds). A cell that runs out of
memory is reported as such (and the larger batches of that mode are not tried). Cells run in the order of
CELL_ORDER (the default mode and the leanest first) while `--budget` allows; the rest are listed as not measured.
Targets (issue 18): batch 4 within 12 GB and batch 2 within 8 GB with some combination, at no more than 1.35x the
default mode's time per sample at that batch.

    python benchmarks/bench_gpu_memory.py --size full --budget 480 --results gpu_memory.md     # a CUDA GPU
    python benchmarks/bench_gpu_memory.py --device cpu --size tiny --clip_seconds 3 --updates 3 --batches 1 2 \
        --modes fp32,adamw,0 bf16,adamw8bit,1                                                 # a CPU dry run
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_gpu_memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_gpu, bench_train_loop, common

GB = 1e9
TIME_TARGET = 1.35
FITS = {4: 12, 2: 8}  # batch -> GB it must fit in with some combination
DEFAULT_MODE = ("fp32", "adamw", False)
# The default first (the baseline of every ratio), then from the leanest to the fattest.
CELL_ORDER = [DEFAULT_MODE, ("bf16", "adamw8bit", True), ("bf16", "adamw", True), ("fp16", "adamw8bit", True),
              ("bf16", "adamw8bit", False), ("fp32", "adamw8bit", True), ("fp32", "adamw", True),
              ("fp16", "adamw", True), ("bf16", "adamw", False), ("fp16", "adamw8bit", False),
              ("fp16", "adamw", False), ("fp32", "adamw8bit", False)]
OOM_MARKERS = ("OutOfMemoryError", "CUDA out of memory")


@dataclass(frozen=True)
class Cell:
    precision: str
    optimizer: str
    checkpointing: bool
    batch: int

    @property
    def mode(self) -> tuple[str, str, bool]:
        return self.precision, self.optimizer, self.checkpointing

    def flags(self) -> list[str]:
        return ["--precision", self.precision, "--optimizer", self.optimizer,
                *(["--gradient_checkpointing"] if self.checkpointing else [])]

    def name(self) -> str:
        return f"{self.precision}, {self.optimizer}, {'checkpointing' if self.checkpointing else 'no checkpointing'}"


def parse_mode(text: str) -> tuple[str, str, bool]:
    precision, optimizer, checkpointing = text.split(",")
    return precision, optimizer, checkpointing.strip() in ("1", "true", "yes")


def dataset(ws: common.Workspace, clips: int, seconds: float) -> Path:
    from utils import testbed

    folder = ws.root / f"gpu_memory_dataset_{clips}x{seconds:g}s"
    if not (folder / "metadata_eval.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        testbed.build_dataset(folder, clips=clips + 2, eval_clips=2, seconds=(seconds, seconds), sentences_per_clip=2)
    return folder


def run_cell(ws: common.Workspace, cell: Cell, args: argparse.Namespace, budget: bench_gpu.Budget) -> dict[str, Any]:
    """One training process for `cell`: peak GPU memory, seconds per sample, or out of memory."""
    data = dataset(ws, cell.batch * args.updates, args.clip_seconds)
    out = ws.scratch(f"gpu-memory-{cell.precision}-{cell.optimizer}-{int(cell.checkpointing)}-{cell.batch}")
    cmd = common.train_command(ws, out, dataset=data, max_steps=args.updates, batch_size=cell.batch,
                               extra=["--num_epochs", "1", "--save_step", "1000000", *cell.flags()])
    started = time.monotonic()
    try:
        with bench_gpu.GpuMemory(args.device == "cuda") as gpu:
            m = common.run_measured(cmd, timeout=budget.timeout())
        times = bench_train_loop.step_times(out) if m.returncode == 0 else []
    finally:
        shutil.rmtree(out, ignore_errors=True)
    budget.record("train", time.monotonic() - started)
    if m.returncode != 0:
        if any(marker in m.output_tail for marker in OOM_MARKERS):
            return {"oom": True, "gpu_peak": gpu.peak}
        last = m.output_tail.strip().splitlines()[-1:] or ["?"]
        return {"oom": False, "error": f"exit {m.returncode}: {last[0][:300]}"}  # e.g. no bitsandbytes there
    gaps = [b - a for a, b in itertools.pairwise(times)][1:]
    if not gaps:
        return {"oom": False, "error": f"{len(times)} steps leave no gap to time: raise --updates"}
    return {"oom": False, "gpu_peak": gpu.peak, "per_sample_s": common.median(gaps) / cell.batch,
            "peak_rss": m.peak_rss}


def plan(modes: list[tuple[str, str, bool]], batches: list[int]) -> list[Cell]:
    return [Cell(*mode, batch) for mode in modes for batch in batches]


def measure(ws: common.Workspace, args: argparse.Namespace) -> list[common.Row]:
    budget = bench_gpu.Budget(args.budget)
    results: dict[Cell, dict[str, Any]] = {}
    skipped: list[Cell] = []
    too_big: set[tuple[tuple[str, str, bool], int]] = set()
    for cell in plan(args.modes, args.batches):
        if any(mode == cell.mode and cell.batch > b for mode, b in too_big):
            continue  # a smaller batch of this mode ran out of memory already
        if not budget.fits("train", 1, first=not results):
            skipped.append(cell)
            continue
        results[cell] = run_cell(ws, cell, args, budget)
        common._stderr(f"  {cell.name()}, batch {cell.batch}: {describe(results[cell])}")
        if results[cell]["oom"]:
            too_big.add((cell.mode, cell.batch))
    return build_rows(results, skipped, args)


def describe(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"failed ({r['error']})"
    if r["oom"]:
        return "out of memory"
    return f"peak GPU memory {r['gpu_peak'] / GB:.2f} GB, {r['per_sample_s'] * 1000:.0f} ms per sample"


def build_rows(results: dict[Cell, dict[str, Any]], skipped: list[Cell], args: argparse.Namespace) -> list[common.Row]:
    rows = []
    for cell, r in results.items():
        default = results.get(Cell(*DEFAULT_MODE, cell.batch))
        base = default.get("per_sample_s") if default else None
        if r["oom"] or r.get("error"):
            rows.append(common.Row(f"GPU memory: {cell.name()}, batch {cell.batch}", 0.0, None, "GB", "—", None,
                                   describe(r)))
            continue
        rows.append(common.Row(
            f"GPU memory: {cell.name()}, batch {cell.batch}", r["gpu_peak"] / GB, None, "GB", "—", None,
            f"{r['per_sample_s'] * 1000:.0f} ms per sample" + (f", {r['per_sample_s'] / base:.2f}x the default "
                                                               f"mode's" if base else "")))
    for batch, limit in FITS.items():
        rows.append(fit_row(results, batch, limit))
    if skipped:
        names = "; ".join(f"{c.name()} batch {c.batch}" for c in skipped)
        rows.append(common.Row("GPU memory: cells not measured (budget)", float(len(skipped)), None, "cells", "—",
                               None, names))
    return rows


def fit_row(results: dict[Cell, dict[str, Any]], batch: int, limit_gb: float) -> common.Row:
    """The leanest measured combination at `batch`, and whether it fits `limit_gb` within 1.35x the default's time."""
    default = results.get(Cell(*DEFAULT_MODE, batch))
    measured = [(c, r) for c, r in results.items() if c.batch == batch and "per_sample_s" in r]
    name = f"GPU memory target: batch {batch} within {limit_gb} GB"
    if not measured:
        return common.Row(name, 0.0, None, "GB", f"<= {limit_gb} GB, <= {TIME_TARGET}x time", None, "not measured")
    if not any(r["gpu_peak"] for _, r in measured):
        return common.Row(name, 0.0, None, "GB", f"<= {limit_gb} GB, <= {TIME_TARGET}x time", None,
                          "no GPU memory measured (a run without a CUDA GPU)")
    cell, r = min(measured, key=lambda cr: cr[1]["gpu_peak"])
    base = default.get("per_sample_s") if default else None
    slow = r["per_sample_s"] / base if base else None
    met = r["gpu_peak"] <= limit_gb * GB and (slow is not None and slow <= TIME_TARGET)
    return common.Row(name, r["gpu_peak"] / GB, default["gpu_peak"] / GB if base else None, "GB",
                      f"<= {limit_gb} GB, <= {TIME_TARGET}x time", met if base else None,
                      f"leanest measured: {cell.name()}; time per sample {'?' if slow is None else f'{slow:.2f}x'} "
                      f"the default mode's", "default mode")


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--budget", type=float, default=480, help="seconds for all cells together")
    p.add_argument("--updates", type=int, default=4, help="updates per cell (the first gap is dropped)")
    p.add_argument("--clip_seconds", type=float, default=11.0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--modes", type=parse_mode, nargs="+", default=CELL_ORDER,
                   help="precision,optimizer,checkpointing (0/1) triples, in the order to run them")
    p.add_argument("--results", type=Path, default=None, help="also write the table (Markdown) here")

    def run(ws: common.Workspace, a: argparse.Namespace) -> list[common.Row]:
        rows = measure(ws, a)
        if a.results:
            a.results.write_text(common.format_table(rows) + "\n")
        return rows

    return common.script_main(__doc__, argv, run, p=p)


if __name__ == "__main__":
    sys.exit(main())
