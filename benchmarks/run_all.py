"""Run every benchmark and print one table: measurement, ours, baseline, ratio, target, met?

Each script runs in its own process, one after another, and shares the work space cache (built on first use).
With --results, the table is also written as Markdown with the date, the machine and the load it was under.

    .venv/bin/python benchmarks/run_all.py --size full [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/run_all.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_classify", "bench_listing", "bench_resume_startup", "bench_checkpoint_write", "bench_train_loop",
           "bench_vocab_expansion", "bench_quality_gate")


def run_script(name: str, size: str, cache: Path | None, extra: list[str]) -> list[common.Row]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [common.PYTHON, str(HERE / f"{name}.py"), "--size", size, "--json", str(out), *extra]
        if cache:
            cmd += ["--cache", str(cache)]
        print(f"== {name} --size {size}", file=sys.stderr, flush=True)
        started = time.time()
        done = subprocess.run(cmd, env=common.bench_env(), cwd=common.ROOT, stdout=subprocess.PIPE, text=True)
        print(done.stdout, file=sys.stderr, flush=True)
        print(f"   ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed with exit code {done.returncode}")
        return common.read_rows(out)


def header(size: str, started: datetime.datetime, seconds: float, load: tuple[float, float]) -> str:
    return (f"Benchmarks (`benchmarks/run_all.py --size {size}`), {started:%Y-%m-%d %H:%M}, {seconds / 60:.0f} min.\n"
            f"Machine: {common.machine()}.\n"
            f"Load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} (other work shared the CPUs).")


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=SCRIPTS, help="run these scripts only")
    p.add_argument("--results", type=Path, default=None, help="also write the table as Markdown here")
    args = p.parse_args(argv)
    extra = ["--repeats", str(args.repeats)] if args.repeats else []
    started, t0, load0 = datetime.datetime.now(), time.time(), os.getloadavg()[0]
    rows: list[common.Row] = []
    for name in args.only or SCRIPTS:
        rows += run_script(name, args.size, args.cache, extra)
    text = header(args.size, started, time.time() - t0, (load0, os.getloadavg()[0])) + "\n\n" + \
        common.format_table(rows)
    print(text, flush=True)
    if args.json:
        common.write_rows(rows, args.json)
    if args.results:
        args.results.write_text(f"# Benchmark results\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
