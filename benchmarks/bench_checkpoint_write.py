"""Item 4: checkpoint write — `save_atomic` (write <name>.tmp, fsync, rename, fsync the folder) versus a plain
`torch.save` of the same state (what coqui's trainer does: no fsync, no rename).

One fresh process loads the work space's training checkpoint into memory (not memory-mapped, so every arm writes
from RAM), then writes it with each arm in turn, rotating the order, `--repeats` times. A third arm, torch.save
followed by fsync, shows what durability alone costs. Between writes, outside the timed region, the file just
written is fsynced (so no arm inherits another's dirty pages) and deleted. Target: at most 10% slower than plain.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_checkpoint_write.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SCRIPT = Path(__file__).resolve()
TARGET = 1.10
ARMS = ("atomic", "plain", "plain_fsync")


def write(arm: str, state: dict, path: Path) -> float:
    import torch

    from utils.checkpoints import save_atomic

    started = time.perf_counter()
    if arm == "atomic":
        save_atomic(state, path)
    elif arm == "plain":
        torch.save(state, path)
    else:
        with open(path, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    with open(path, "rb+") as f:  # untimed: leave no dirty pages for the next arm
        os.fsync(f.fileno())
    path.unlink()
    return seconds


def probe(argv: list[str]) -> None:
    source, out_dir, repeats = Path(argv[0]), Path(argv[1]), int(argv[2])
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)  # into RAM
    times: dict[str, list[float]] = {a: [] for a in ARMS}
    for i in range(repeats):
        order = ARMS[i % len(ARMS):] + ARMS[: i % len(ARMS)]
        for arm in order:
            times[arm].append(write(arm, state, out_dir / f"checkpoint_{arm}.pth"))
    common.emit_probe(times)


def measure(ws: common.Workspace, repeats: int) -> list[common.Row]:
    out = ws.scratch("write")
    try:
        times = common.run_probe(SCRIPT, [str(ws.checkpoint), str(out), str(repeats)])
    finally:
        for leftover in out.iterdir():
            leftover.unlink()
        out.rmdir()
    med = {a: common.median(v) for a, v in times.items()}
    size_gb = ws.checkpoint.stat().st_size / common.GB
    spreads = ", ".join(f"{a} {common.spread(v):.0%}" for a, v in times.items())
    notes = (f"{size_gb:.2f} GB state from RAM; median of {repeats}, arms rotated; spread (max-min)/median: {spreads}")
    return [
        common.Row("checkpoint write: atomic vs torch.save", med["atomic"], med["plain"], "s",
                   f"<= {TARGET:g}x", med["atomic"] <= TARGET * med["plain"], notes, "torch.save"),
        common.Row("checkpoint write: atomic vs torch.save + fsync", med["atomic"], med["plain_fsync"], "s", "—",
                   None, "the same write made durable: what the rename and folder fsync add", "torch.save+fsync"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.probe:
        probe(args.probe)
        return 0
    ws = common.ensure_workspace(args.size, args.cache)
    common.finish(measure(ws, args.repeats or 3), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
