"""Training-loop overhead — steady-state time per update of our training (utils/gpt_train.py) versus a
bare coqui recipe with the same settings (tests/coqui_recipe.py: no code of ours in the loop), on the tiny
test bed whatever --size says (the loop's overhead is measured there; --size full only repeats it more).

The dataset's clips all have one length (4 s) and one text, so every batch has the same shapes whichever clips
each arm's sampler draws (the two arms draw differently): the difference measured is the loop's, not the data's.
Both run coqui's own train_step, which logs every step to TensorBoard (plot_step=1, print_step=1) with a
wall-clock timestamp and the step's `step_time` (forward, backward, optimizer); both run through
benchmarks/timed_run.py, which times coqui's format_batch (mel spectrograms and DVAE codes). The same instrument
times both arms. Per update:
- time per update: the gap between two consecutive steps' timestamps (data loading, the model's work and
  everything our loop adds between steps: position-seeded samples, progress events, the max_steps/stop checks);
- the model's work: step_time + format_batch, the same coqui code in both arms;
- loop time: the gap minus the model's work: what a loop, ours or coqui's, costs around the model.
Batch 2, no gradient accumulation, one epoch, no checkpoint inside it; the first gaps of each run are warm-up and
dropped; per run the median of each is taken. Torch runs on one thread in both arms (see ONE_THREAD). A round runs
recipe, ours, ours, recipe (the next round the other way round), one fresh process each, back to back; each arm's
figure is the median over its runs.

On this 2-core VM a process's CPU speed varies from run to run by 10-30% for the same work (CPU time equals wall
time, so it is not waiting: the same code simply runs slower), which no number of updates inside a run removes:
- time per update, ours / recipe: its noise is measured, as the ratio's 95% interval over bootstrap resamples of
  each arm's runs. Target: within 2%, or within that noise when it is wider (the row says which).
- time per update / the model's work in the same run, ours / recipe: dividing by the run's own model work removes
  the process's speed, and what remains is what the loop costs around the model. Target: ours adds at most 2%.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_train_loop.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

TIMED_RUN = Path(__file__).resolve().parent / "timed_run.py"
TARGET = 0.02
# One torch thread in both arms leaves the second core of a 2-core machine to the system and to the sampler, so
# that a two-thread op does not wait for whichever core the system takes (trial runs were no slower per update).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
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


def step_stats(run_root: Path) -> list[dict[str, float]]:
    """Per training step, in order: its wall-clock time (first tag logged) and the run-time stats coqui logged
    with it (`step_time` and `loader_time` where print_step let it), from the TensorBoard events under `run_root`."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    files = sorted(run_root.rglob("events.out.tfevents*"))
    if not files:
        raise RuntimeError(f"No TensorBoard events under {run_root}")
    steps: dict[int, dict[str, float]] = {}
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if not v.tag.startswith("TrainIterStats/"):
                    continue
                stats = steps.setdefault(event.step, {"wall": event.wall_time})
                stats["wall"] = min(stats["wall"], event.wall_time)
                value = v.simple_value if v.HasField("simple_value") else tensor_util.make_ndarray(v.tensor)
                stats[v.tag.split("/", 1)[1]] = float(value)
    return [steps[s] for s in sorted(steps)]


def step_times(run_root: Path) -> list[float]:
    """Wall-clock time of each training step, from the TensorBoard events under `run_root`."""
    return [s["wall"] for s in step_stats(run_root)]


@dataclass
class RunTimes:
    """One run's medians over its steady-state updates, in seconds."""

    update: float  # the gap between two steps
    model: float  # coqui's step_time + format_batch: the model's work
    fetch: float  # loader_time - format_batch: getting the batch from the data loader
    rest: float  # update - step_time - loader_time: logging, callbacks and per-update work

    @property
    def loop(self) -> float:
        return self.fetch + self.rest

    @property
    def relative(self) -> float:
        """Time per update in units of this run's own model work: free of how fast this process's CPU ran."""
        return self.update / self.model


def command(ws: common.Workspace, arm: str, data: Path, out: Path, times: Path) -> list[str]:
    """The arm's training command, launched through timed_run.py, logging run-time stats every step."""
    if arm == "recipe":
        cmd = [common.PYTHON, str(common.COQUI_RECIPE), str(ws.base_dir), str(data), str(out), "--epochs", "1",
               "--batch_size", str(BATCH), "--grad_accum", "1", "--save_step", "1000000"]
    else:
        cmd = common.train_command(ws, out, dataset=data, extra=["--num_epochs", "1", "--save_step", "1000000"])
    return [cmd[0], str(TIMED_RUN), str(times), *cmd[1:], "--print_step", "1"]


def run_once(ws: common.Workspace, arm: str, data: Path, updates: int, timeout: float) -> RunTimes:
    out = ws.scratch(f"loop-{arm}")
    times_file = out / "format_batch_times.json"
    try:
        m = common.run_measured(command(ws, arm, data, out, times_file), timeout=timeout, env=ONE_THREAD)
        if m.returncode != 0:
            raise RuntimeError(f"{arm} run failed ({m.returncode}):\n{m.output_tail}")
        steps = step_stats(out)
        formats = json.loads(times_file.read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if len(steps) != updates or len(formats) != updates:
        raise RuntimeError(f"{arm}: expected {updates} logged steps and format_batch calls, found {len(steps)} "
                           f"and {len(formats)}")
    # The gap before step i+1 holds step i+1's data loading, format_batch and optimizer step (its step_time).
    per_update = [(b["wall"] - a["wall"], b["step_time"], b["loader_time"], fmt)
                  for a, b, fmt in zip(steps[:-1], steps[1:], formats[1:], strict=True)][WARMUP_GAPS:]
    return RunTimes(update=common.median([g for g, _, _, _ in per_update]),
                    model=common.median([st + f for _, st, _, f in per_update]),
                    fetch=common.median([lt - f for _, _, lt, f in per_update]),
                    rest=common.median([g - st - lt for g, st, lt, _ in per_update]))


def _ms(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v * 1000:.{digits}f}" for v in values)


def ratio_interval(a: list[float], b: list[float], samples: int = 5000) -> tuple[float, float]:
    """The 95% interval of median(a) / median(b) over bootstrap resamples of each arm's runs: how far the ratio
    could be from the one measured, given how much the runs of each arm scatter."""
    rng = random.Random(0)
    ratios = sorted(common.median(rng.choices(a, k=len(a))) / common.median(rng.choices(b, k=len(b)))
                    for _ in range(samples))
    return ratios[int(0.025 * samples)], ratios[int(0.975 * samples) - 1]


def measure(ws: common.Workspace, rounds: int, updates: int, timeout: float, log=common._stderr) -> list[common.Row]:
    data = loop_dataset(ws, updates)
    runs: dict[str, list[RunTimes]] = {"recipe": [], "ours": []}
    for i in range(rounds):
        order = ("recipe", "ours", "ours", "recipe") if i % 2 == 0 else ("ours", "recipe", "recipe", "ours")
        for arm in order:
            t = run_once(ws, arm, data, updates, timeout)
            runs[arm].append(t)
            log(f"  training loop, {arm}: median per update {t.update * 1000:.1f} ms (model {t.model * 1000:.1f} ms, "
                f"fetch {t.fetch * 1000:.2f} ms, rest {t.rest * 1000:.2f} ms) over {updates - 1 - WARMUP_GAPS} updates")
    keys = ("update", "model", "fetch", "rest", "loop", "relative")
    med = {arm: {k: common.median([getattr(t, k) for t in ts]) for k in keys} for arm, ts in runs.items()}
    ours, recipe = med["ours"], med["recipe"]
    ratio = ours["update"] / recipe["update"]
    low, high = ratio_interval([t.update for t in runs["ours"]], [t.update for t in runs["recipe"]])
    relative = ours["relative"] / recipe["relative"]
    if abs(ratio - 1) <= TARGET:
        met, criterion = True, "within 2%"
    else:  # the noise decides: is a ratio within 2% of 1 inside the ratio's 95% interval?
        met = low <= 1 + TARGET and high >= 1 - TARGET
        criterion = "within the measured noise (wider than 2%)" if met else "outside 2% and the measured noise"
    setup = (f"tiny test bed, torch on one thread in both arms, {updates} updates/run, first {WARMUP_GAPS} gaps "
             f"dropped, {rounds} round(s) of recipe-ours-ours-recipe (alternating), medians over runs")
    total = common.Row(
        "training loop: time per update", ours["update"] * 1000, recipe["update"] * 1000, "ms",
        "within 2% or noise", met,
        f"{setup}; per run: " + "; ".join(f"{arm} {_ms([t.update for t in ts])} ms" for arm, ts in runs.items())
        + f"; noise: the ratio's 95% interval is {low:.2f}-{high:.2f}x (bootstrap over runs); criterion used: "
        f"{criterion}; the model's work per update "
        f"(coqui's step_time + format_batch, the same code in both arms) varies as much: ours "
        f"{ours['model'] * 1000:.1f} ms, recipe {recipe['model'] * 1000:.1f} ms", "coqui recipe")
    loop = common.Row(
        "training loop: time per update / the model's work in that run", ours["relative"], recipe["relative"], "x",
        "<= 1.02x (adds <= 2%)", relative <= 1 + TARGET,
        f"the same runs; dividing by the run's own model work removes how fast each process happened to run "
        f"(per run: ours {', '.join(f'{t.relative:.3f}' for t in runs['ours'])}; recipe "
        f"{', '.join(f'{t.relative:.3f}' for t in runs['recipe'])}); the loop's time per update (data loading, "
        f"logging, callbacks, our per-update work): ours {ours['loop'] * 1000:.1f} ms, recipe "
        f"{recipe['loop'] * 1000:.1f} ms, of which fetching the batch: ours {ours['fetch'] * 1000:.1f} ms, recipe "
        f"{recipe['fetch'] * 1000:.1f} ms, and the rest: ours {ours['rest'] * 1000:.2f} ms, recipe "
        f"{recipe['rest'] * 1000:.2f} ms", "coqui recipe", paired_ratio=relative)
    return [total, loop]


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=None, help="updates per run (default 10 tiny, 20 full)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per run")

    def run(ws: common.Workspace, args) -> list[common.Row]:
        full = args.size == "full"
        return measure(ws, args.repeats or (4 if full else 1), args.updates or (20 if full else 10), args.timeout)

    # The loop is measured on the test bed whatever --size says (see the docstring).
    return common.script_main(__doc__, argv, run, p=p, size="tiny")


if __name__ == "__main__":
    sys.exit(main())
