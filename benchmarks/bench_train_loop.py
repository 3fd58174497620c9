"""Item 5: training-loop overhead — steady-state time per update of our training (utils/gpt_train.py) versus a
bare coqui recipe with the same settings (tests/coqui_recipe.py: no code of ours in the loop), on the tiny
test bed whatever --size says (the issue measures the loop there; --size full only repeats it more).

The dataset's clips all have one length (4 s) and one text, so every batch has the same shapes whichever clips
each arm's sampler draws (the two arms draw differently): the difference measured is the loop's, not the data's.
Both run coqui's own train_step, which logs every step to TensorBoard (plot_step=1) with a wall-clock
timestamp: the same instrument times both. The time of an update is the gap between two consecutive steps'
timestamps, so it includes data loading and everything our loop adds between steps (position-seeded samples,
progress events, the max_steps/stop checks). Batch 2, no gradient accumulation, one epoch, no checkpoint inside
it; the first gaps of each run are warm-up and dropped. Runs alternate (recipe, ours, ours, recipe, ...), one
fresh process each; per run the median gap is taken. The two runs of a round ran back to back, under the same
load, so each round gives one paired ratio (ours / recipe): the ratio shown is the median of these, and the
measured noise is their median absolute deviation. Target: within 2%, or within the noise when it is wider.
"""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_train_loop.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

TARGET = 0.02
WARMUP_GAPS = 2
BATCH = 2
CLIP_S = 4.0


def loop_dataset(ws: common.Workspace, updates: int) -> Path:
    """A test-bed dataset with 2*updates training clips (one epoch = `updates` updates) of one length and one
    text (see the docstring), built once."""
    from utils import testbed

    folder = ws.root / f"loop_dataset_{updates}_uniform"
    if not (folder / "metadata_eval.csv").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        testbed.build_dataset(folder, clips=updates * BATCH + 2, eval_clips=2, seconds=(CLIP_S, CLIP_S),
                              text=testbed.SENTENCES[0])
    return folder


def step_times(run_root: Path) -> list[float]:
    """Wall-clock time of each training step, from the TensorBoard events under `run_root` (first tag per step)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(run_root.rglob("events.out.tfevents*"))
    if not files:
        raise RuntimeError(f"No TensorBoard events under {run_root}")
    first: dict[int, float] = {}
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if any(v.tag.startswith("TrainIterStats/") for v in event.summary.value):
                first[event.step] = min(first.get(event.step, event.wall_time), event.wall_time)
    return [first[s] for s in sorted(first)]


def command(ws: common.Workspace, arm: str, data: Path, out: Path) -> list[str]:
    if arm == "recipe":
        return [common.PYTHON, str(common.COQUI_RECIPE), str(ws.base_dir), str(data), str(out), "--epochs", "1",
                "--batch_size", str(BATCH), "--grad_accum", "1", "--save_step", "1000000"]
    return common.train_command(ws, out, dataset=data, extra=["--num_epochs", "1", "--save_step", "1000000"])


def run_once(ws: common.Workspace, arm: str, data: Path, updates: int, timeout: float) -> list[float]:
    out = ws.scratch(f"loop-{arm}")
    try:
        m = common.run_measured(command(ws, arm, data, out), timeout=timeout)
        if m.returncode != 0:
            raise RuntimeError(f"{arm} run failed ({m.returncode}):\n{m.output_tail}")
        times = step_times(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(times) != updates:
        raise RuntimeError(f"{arm}: expected {updates} logged steps, found {len(times)}")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return gaps[WARMUP_GAPS:]


def measure(ws: common.Workspace, repeats: int, updates: int, timeout: float, log=common._stderr) -> list[common.Row]:
    data = loop_dataset(ws, updates)
    per_run: dict[str, list[float]] = {"recipe": [], "ours": []}
    for i in range(repeats):
        order = ("recipe", "ours") if i % 2 == 0 else ("ours", "recipe")
        for arm in order:
            gaps = run_once(ws, arm, data, updates, timeout)
            per_run[arm].append(common.median(gaps))
            log(f"  training loop, {arm}: median {per_run[arm][-1] * 1000:.1f} ms per update over {len(gaps)} gaps")
    ours, recipe = common.median(per_run["ours"]), common.median(per_run["recipe"])
    paired = [o / r for o, r in zip(per_run["ours"], per_run["recipe"], strict=True)]
    ratio, noise = common.median(paired), common.mad(paired)
    allowed = max(TARGET, noise)
    criterion = f"within 2% (noise {noise:.1%})" if noise <= TARGET else f"within the measured noise ({noise:.1%})"
    runs = "; ".join(f"{arm} " + ", ".join(f"{v * 1000:.0f}" for v in values) + " ms"
                     for arm, values in per_run.items())
    notes = (f"tiny test bed, {updates} updates/run, first {WARMUP_GAPS} gaps dropped, {repeats} rounds, arms "
             f"alternating; run medians: {runs}; ratio = median of paired ratios "
             f"({', '.join(f'{p:.2f}' for p in paired)}); criterion used: {criterion}")
    return [common.Row("training loop: time per update", ours * 1000, recipe * 1000, "ms",
                       "within 2% or noise", abs(ratio - 1) <= allowed, notes, "coqui recipe", paired_ratio=ratio)]


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=None, help="updates per run (default 10 tiny, 20 full)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per run")

    def run(ws: common.Workspace, args) -> list[common.Row]:
        full = args.size == "full"
        return measure(ws, args.repeats or (5 if full else 2), args.updates or (20 if full else 10), args.timeout)

    # The loop is measured on the test bed whatever --size says (see the docstring).
    return common.script_main(__doc__, argv, run, p=p, size="tiny")


if __name__ == "__main__":
    sys.exit(main())
