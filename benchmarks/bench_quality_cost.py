"""Cost of quality evaluation during training: the time of one evaluation (synthesise the sentences, then
Whisper, the speaker encoder and DNSMOS on each) against the training time between two evaluations at the
WebUI's default --quality_every.

Each repeat is one training run (`--quality_every EVERY`, a fresh process) whose progress.jsonl gives both
numbers from the same process, so the evaluation and the updates it is compared with ran at the same CPU speed:
- one evaluation: from the `update` event of its step to its `quality` event (nothing else runs in between);
- one update: the median gap between consecutive `update` events with no evaluation, checkpoint or epoch end
  between them.
Added time = evaluation / (WEBUI_EVERY x update). Target: at most 5%, in every repeat. On the tiny test bed the
model is 2 layers wide 64 while the scorers are real (Whisper tiny.en on CPU): the share is larger than at real
size, where an update takes far longer; the GPU row needs a device run (README). The run has the environment a
user's has: training runs torch on one thread (coqui's XTTS dataset module sets it) and an evaluation on every
core (utils/training/quality_eval.evaluation_threads); OMP_NUM_THREADS, where set, limits both.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_quality_cost.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from utils.options import WEBUI_QUALITY_EVERY

TARGET = 0.05
EVERY = 4  # evaluations in the measured run: at steps 0, 4, 8, ...
UPDATES = 12


def measure_run(ws: common.Workspace, out: Path, timeout: float) -> tuple[list[float], list[float]]:
    """(evaluation seconds, update seconds) of one run."""
    cmd = common.train_command(ws, out, max_steps=UPDATES,
                               extra=["--num_epochs", "100", "--save_step", "1000000", "--quality_every", str(EVERY)])
    m = common.run_measured(cmd, timeout=timeout)
    if m.returncode != 0:
        raise RuntimeError(f"training with --quality_every failed ({m.returncode}):\n{m.output_tail}")
    events = common.read_events(next(out.rglob("progress.jsonl")))
    return split_times(events)


def split_times(events: list[dict]) -> tuple[list[float], list[float]]:
    """Evaluation durations and plain update gaps from one run's events (see the module docstring)."""
    evaluations, updates = [], []
    last_update: dict | None = None
    clean = True  # nothing but training since the last update event
    for event in events:
        kind = event["event"]
        if kind == "update":
            if last_update is not None and clean and event["step"] == last_update["step"] + 1:
                updates.append(event["time"] - last_update["time"])
            last_update, clean = event, True
        elif kind == "quality":
            if last_update is not None and last_update["step"] == event["step"]:
                evaluations.append(event["time"] - last_update["time"])
            clean = False
        elif kind in ("eval", "checkpoint", "best"):
            clean = False
    return evaluations, updates


def measure(ws: common.Workspace, args) -> list[common.Row]:
    repeats = args.repeats or 3
    shares, evals, steps = [], [], []
    for r in range(repeats):
        out = ws.scratch(f"quality-cost-{r}")
        try:
            evaluations, updates = measure_run(ws, out, timeout=1800)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        evaluation, update = common.median(evaluations), common.median(updates)
        evals.append(evaluation)
        steps.append(update)
        shares.append(evaluation / (WEBUI_QUALITY_EVERY * update))
        print(f"repeat {r + 1}: one evaluation {evaluation:.2f} s, one update {update:.3f} s, added "
              f"{100 * shares[-1]:.2f}% at --quality_every {WEBUI_QUALITY_EVERY}", file=sys.stderr, flush=True)
    worst = max(shares)
    notes = (f"{repeats} runs; per run: added {', '.join(f'{100 * s:.2f}%' for s in shares)}; one update "
             f"{common.median(steps):.3f} s (spread {100 * common.spread(steps):.0f}%), evaluation spread "
             f"{100 * common.spread(evals):.0f}%")
    return [common.Row(measurement=f"quality evaluation vs {WEBUI_QUALITY_EVERY} updates of training (tiny bed, CPU)",
                       ours=common.median(evals), baseline=WEBUI_QUALITY_EVERY * common.median(steps), unit="s",
                       target=f"<= {100 * TARGET:.0f}% added, every run", met=worst <= TARGET, notes=notes,
                       baseline_name=f"{WEBUI_QUALITY_EVERY} updates", paired_ratio=worst)]


def main(argv: list[str] | None = None) -> int:
    return common.script_main(__doc__, argv, measure, size="tiny")


if __name__ == "__main__":
    raise SystemExit(main())
