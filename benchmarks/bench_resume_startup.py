"""Resume start-up — time from the command to the first training update, bytes read from the
checkpoint, and peak RSS, when resuming the work space's training checkpoint with our CLI; versus the seed's
way (benchmarks/seed_resume.py: the file loaded whole as GPTArgs.xtts_checkpoint, then again by the coqui
trainer's restore_path) and versus a fresh start of our CLI from the base model.

Each arm is one fresh process (run in turn, repeated, the order reversed every other round) that ends by itself
after its second update: ours with --max_steps two past the checkpoint's step (it saves a checkpoint, then
exits), the seed's from its on_train_step_end callback. Two updates, not one: a fresh start creates AdamW's
moments in its first optimizer step, so only from its second update on does its backward pass run beside them, as
a resume's first one does; stopping both after one update compared a resume's steady-state peak with a fresh
start's lighter first update (at full size 10.1 GB against 9.5 GB; after the second update 9.9 GB). Time: from
just before the process starts to the first update's timestamp (our progress JSON lines; the seed's callback).
Peak RSS: the process's high-water mark
(ru_maxrss from wait4, and VmHWM samples). Ending by itself matters: stopping it from outside lands at a random
point of the next step's forward pass, whose activations add up to ~1 GB at full size. Bytes read from
the checkpoint: bytes returned by read-family calls on the file (strace -y, seccomp-filtered so nothing else
is traced) plus, for each memory mapping of the file, the most of it ever resident (smaps, sampled every 0.5 s
and just before the stop) — what mmap read. A mapping that came and went between samples would be missed: the
notes say how many of the file's mmaps (from strace) no sample saw. The bytes come from one extra run of ours and
of the seed's way under strace, after the timed rounds: no timed run is traced (stopping at every read() cost a
resume ~5 s at full size, and a fresh start, which maps its base, far less, which skewed the time ratio).
Targets (issue 18): the checkpoint read once (at most 1.05x its size); time to the first update and peak RSS at
most 1.05x a fresh start's. At least 3 rounds; each round runs every arm once (order reversed every other round),
and a target against the fresh start is "met" only when it holds in every round (ours / fresh of the same round);
the table shows the median of those per-round ratios, and the notes each round's and the spread.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_resume_startup.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SEED_SCRIPT = Path(__file__).resolve().parent / "seed_resume.py"
BYTES_TARGET = 1.05
RSS_TARGET = 1.05
TIME_TARGET = 1.05
MIN_REPEATS = 3
UPDATES = 2  # per arm: see the docstring
ARMS = ("ours", "seed", "fresh")


def arm_command(ws: common.Workspace, arm: str, out: Path, events: Path) -> list[str]:
    if arm == "seed":
        return [common.PYTHON, str(SEED_SCRIPT), str(ws.base_dir), str(ws.dataset_dir), str(out), str(ws.checkpoint),
                "--events", str(events), "--stop_after", str(UPDATES)]
    custom = ws.checkpoint if arm == "ours" else None
    steps = common.CHECKPOINT_STEP + UPDATES if arm == "ours" else UPDATES  # then save and exit
    return common.train_command(ws, out, custom_model=custom, max_steps=steps, progress=events,
                                extra=["--num_epochs", "1000"])


def run_arm(ws: common.Workspace, arm: str, timeout: float, *, traced: bool = False) -> dict:
    """One fresh process of `arm`; `traced`: under strace, for the bytes read (its times are not used)."""
    out = ws.scratch(f"resume-{arm}")
    events = out / "events.jsonl"
    log = out / "strace.log" if traced else None
    common.warm(ws.checkpoint)
    cached = common.resident_fraction(ws.checkpoint)
    try:
        m = common.run_measured(arm_command(ws, arm, out / "out", events), timeout=timeout, strace_log=log,
                                watch_path=ws.checkpoint)
        update = common.first_event(events, "update")
        start = common.first_event(events, "start")
        if update is None or m.returncode != 0:
            raise RuntimeError(f"{arm}: exit {m.returncode}, update reported: {update is not None}\n{m.output_tail}")
        trace = common.parse_strace(log, ws.checkpoint) if log else None
        via_read = trace.read_bytes if trace else None
        return {
            "arm": arm,
            "to_update_s": update["time"] - m.started_at,
            "to_start_s": start["time"] - m.started_at if start else None,
            "peak_rss": m.peak_rss,
            "peak_anon": m.peak_anon,
            "read_syscall_bytes": via_read,
            "mmap_bytes": m.mapped_bytes(),
            "ckpt_bytes_read": (via_read or 0) + m.mapped_bytes() if log else None,
            "rchar": m.rchar,
            "unsampled_mappings": m.unsampled(trace.mmap_starts) if trace else 0,
            "cached": cached,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure(ws: common.Workspace, repeats: int, timeout: float, log=common._stderr) -> list[common.Row]:
    runs: dict[str, list[dict]] = {a: [] for a in ARMS}
    for i in range(repeats):
        order = ARMS if i % 2 == 0 else tuple(reversed(ARMS))
        for arm in order:
            r = run_arm(ws, arm, timeout)
            log(f"  resume start-up, {arm}: first update after {r['to_update_s']:.1f} s, peak RSS "
                f"{r['peak_rss'] / common.GB:.2f} GB, checkpoint bytes read {_gb(r['ckpt_bytes_read'])}")
            runs[arm].append(r)
    traced = {a: run_arm(ws, a, timeout, traced=True) for a in ("ours", "seed")} if common.have_strace() else None
    med = {a: {k: _median(runs[a], k) for k in runs[a][0] if k != "arm"} for a in ARMS}
    size = ws.checkpoint.stat().st_size
    cached = min(r["cached"] for rs in runs.values() for r in rs)
    base = f"{size / common.GB:.2f} GB checkpoint, cached {cached:.0%}; median of {repeats} per arm"
    ours, seed, fresh = med["ours"], med["seed"], med["fresh"]
    rows = [
        common.Row("resume: command to first update", ours["to_update_s"], seed["to_update_s"], "s", "—", None,
                   f"{base}; to the 'start' event (training begins): ours {_s(ours['to_start_s'])}, seed's "
                   f"{_s(seed['to_start_s'])}, fresh {_s(fresh['to_start_s'])}", "seed's way"),
        paired_row("resume vs fresh start: command to first update", runs, "to_update_s", "s", 1.0, TIME_TARGET,
                   base),
    ]
    if traced is not None:
        t_ours, t_seed = traced["ours"], traced["seed"]
        limit = BYTES_TARGET * size
        rows.append(common.Row(
            "resume: bytes read from the checkpoint", t_ours["ckpt_bytes_read"] / common.GB,
            t_seed["ckpt_bytes_read"] / common.GB, "GB", f"<= {BYTES_TARGET:g}x file ({limit / common.GB:.2f} GB)",
            t_ours["ckpt_bytes_read"] <= limit,
            f"ours: {_gb(t_ours['read_syscall_bytes'])} by read() + {_gb(t_ours['mmap_bytes'])} by mmap "
            f"({t_ours['ckpt_bytes_read'] / size:.2f}x file); seed's: {t_seed['ckpt_bytes_read'] / size:.2f}x file; "
            f"mmaps of the file no smaps sample saw: ours {t_ours['unsampled_mappings']:g}, seed's "
            f"{t_seed['unsampled_mappings']:g}; from one run of each under strace, after the timed rounds (tracing "
            f"every read() slowed a start by ~5 s, so no timed run is traced)",
            "seed's way"))
    per_run = "; ".join(f"{a} " + ", ".join(f"{r['peak_rss'] / common.GB:.2f}" for r in runs[a]) for a in ARMS)
    rows += [
        paired_row("resume: peak RSS", runs, "peak_rss", "GB", common.GB, RSS_TARGET,
                   f"high-water mark up to exit; RSS includes the checkpoint's pages mapped by mmap; per run (GB): "
                   f"{per_run}"),
        common.Row("resume: peak anonymous memory (sampled)", ours["peak_anon"] / common.GB,
                   fresh["peak_anon"] / common.GB, "GB", "—", None,
                   "RssAnon sampled every 50 ms: memory that is not file-backed page cache", "fresh start"),
        common.Row("resume: peak RSS vs seed's way", ours["peak_rss"] / common.GB, seed["peak_rss"] / common.GB, "GB",
                   "—", None, f"seed's peak anonymous (sampled) {_gb(seed['peak_anon'])}", "seed's way"),
    ]
    return rows


def paired_row(name: str, runs: dict[str, list[dict]], key: str, unit: str, scale: float, target: float,
               notes: str) -> common.Row:
    """Ours against the fresh start of the same round: met only when every round's ratio is within `target`."""
    ours, fresh = [r[key] for r in runs["ours"]], [r[key] for r in runs["fresh"]]
    ratios = common.round_ratios(ours, fresh)
    detail = (f"ours/fresh per round: {common.ratio_text(ratios)}; spread (max-min)/median: ours "
              f"{common.spread(ours):.0%}, fresh {common.spread(fresh):.0%}")
    return common.Row(name, common.median(ours) / scale, common.median(fresh) / scale, unit,
                      f"<= {target:g}x fresh start in every round", all(r <= target for r in ratios),
                      f"{notes}; {detail}", "fresh start", paired_ratio=common.median(ratios))


def _median(runs: list[dict], key: str):
    values = [r[key] for r in runs if r[key] is not None]
    return common.median(values) if values else None


def _gb(value) -> str:
    return "?" if value is None else f"{value / common.GB:.2f} GB"


def _s(value) -> str:
    return "?" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per arm")
    return common.script_main(__doc__, argv,
                              lambda ws, args: measure(ws, max(args.repeats or MIN_REPEATS, MIN_REPEATS), args.timeout),
                              p=p)


if __name__ == "__main__":
    sys.exit(main())
