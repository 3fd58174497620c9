"""List a run folder of 10 training checkpoints as the WebUI picker does — `list_checkpoints` versus
reading each file with a plain `torch.load` to learn its step and epoch.

The 10 files are hard links of the work space's checkpoint (disk is limited; each is read as a separate path).
Each arm runs in a fresh process with its modules imported; the call alone is measured (wall time, peak RSS
added), twice: the first listing in a process (lazy imports included) and a second one (a warm process, as
when the WebUI refreshes its picker). Target: under 2 s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_listing.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SCRIPT = Path(__file__).resolve()
FILES = 10
TIME_TARGET_S = 2.0


def run_folder(ws: common.Workspace) -> Path:
    """<cache>/<size>/listing/run with checkpoint_1.pth ... checkpoint_10.pth, hard links of the checkpoint."""
    folder = ws.root / "listing" / "run"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, FILES + 1):
        link = folder / f"checkpoint_{i}.pth"
        if not link.exists():
            os.link(ws.checkpoint, link)
    return folder


def naive_listing(folder: Path) -> list[tuple[str, int, int]]:
    """What a picker without a cheap reader does: load each file and read its step and epoch."""
    import torch

    found = []
    for path in sorted(folder.glob("*.pth")):
        data = torch.load(path, map_location="cpu", weights_only=True)
        found.append((path.name, int(data["step"]), int(data["epoch"])))
        del data
    return found


def probe(argv: list[str]) -> None:
    arm, folder, vocab = argv
    import tokenizers  # noqa: F401  (imported before measuring, as in a running WebUI)
    import torch  # noqa: F401

    import utils.vocabulary.tokenizer  # noqa: F401
    from utils.checkpoints.classify import list_checkpoints

    if arm == "ours":
        found, m = common.measure_twice(lambda: list_checkpoints(folder, vocab))
    else:
        found, m = common.measure_twice(lambda: naive_listing(Path(folder)))
    m["files"] = len(found)
    common.emit_probe(m)


def measure(ws: common.Workspace, repeats: int, baseline_repeats: int) -> list[common.Row]:
    folder = run_folder(ws)
    common.warm(ws.checkpoint)
    note = common.cache_note([ws.checkpoint])
    ours, plain = [], []
    for i in range(max(repeats, baseline_repeats)):
        if i < repeats:
            ours.append(common.run_probe(SCRIPT, ["ours", str(folder), str(ws.vocab)]))
        if i < baseline_repeats:
            plain.append(common.run_probe(SCRIPT, ["naive", str(folder), str(ws.vocab)]))
    if {o["files"] for o in ours + plain} != {FILES}:
        raise RuntimeError(f"Expected {FILES} checkpoints listed: {ours + plain}")
    size_gb = ws.checkpoint.stat().st_size / common.GB
    def med(runs: list[dict], key: str) -> float:
        return common.median([r[key] for r in runs])

    t_first, t_again = med(ours, "seconds"), med(ours, "seconds_again")
    m_ours = max(med(ours, "peak_rss_added"), med(ours, "peak_rss_added_again")) / common.MB
    m_plain = max(med(plain, "peak_rss_added"), med(plain, "peak_rss_added_again")) / common.MB
    notes = (f"{FILES} hard links of a {size_gb:.2f} GB checkpoint, {note}; median of {repeats} (baseline "
             f"{baseline_repeats}) fresh processes")
    target = f"< {TIME_TARGET_S:g} s"
    return [
        common.Row(f"list {FILES} checkpoints: time, first in a process", t_first, med(plain, "seconds"), "s",
                   target, t_first < TIME_TARGET_S, notes, "torch.load each"),
        common.Row(f"list {FILES} checkpoints: time, warm process", t_again, med(plain, "seconds_again"), "s",
                   target, t_again < TIME_TARGET_S, notes, "torch.load each"),
        common.Row(f"list {FILES} checkpoints: peak RSS added", m_ours, m_plain, "MB", "—", None,
                   f"{notes}; the larger of the two calls", "torch.load each"),
    ]


def main(argv: list[str] | None = None) -> int:
    def run(ws: common.Workspace, args) -> list[common.Row]:
        repeats = args.repeats or 3
        return measure(ws, repeats, min(repeats, 1 if args.size == "full" else repeats))

    return common.script_main(__doc__, argv, run, probe=probe)


if __name__ == "__main__":
    sys.exit(main())
