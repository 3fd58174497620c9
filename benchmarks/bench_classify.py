"""Inspect / classify a training checkpoint — `classify_checkpoint` versus a plain `torch.load`.

Each arm runs in a fresh process with torch, utils.checkpoints, utils.vocabulary and tokenizers already imported (as
in the WebUI or the CLI, where they are imported anyway); what is measured is the call alone: its wall time,
and the peak RSS it adds above the process's RSS before it. The call is made twice per process: the first
includes what a first call costs (lazy imports; classify_checkpoint reads only the file's pickled structure and
imports nothing of coqui), the second is a warm process. Arms are interleaved and repeated; medians are shown.
Target: under 1 s and under 200 MB, whatever the file size.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_classify.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SCRIPT = Path(__file__).resolve()
TIME_TARGET_S = 1.0
RSS_TARGET_MB = 200


def probe(argv: list[str]) -> None:
    """In a fresh process: one call of the arm `argv[0]` on checkpoint `argv[1]` (vocabulary `argv[2]`)."""
    arm, path, vocab = argv
    import tokenizers  # noqa: F401  (imported before measuring, as in a running WebUI)
    import torch

    import utils.vocabulary.tokenizer  # noqa: F401
    from utils.checkpoints.classify import classify_checkpoint

    if arm == "ours":
        info, m = common.measure_twice(lambda: classify_checkpoint(path, vocab))
        m["mode"], m["step"] = info.mode, info.step
    else:
        data, m = common.measure_twice(lambda: torch.load(path, map_location="cpu", weights_only=True))
        m["step"] = data["step"]
    common.emit_probe(m)


def measure(ws: common.Workspace, repeats: int) -> list[common.Row]:
    ckpt, vocab = str(ws.checkpoint), str(ws.vocab)
    common.warm(ws.checkpoint)
    note = common.cache_note([ws.checkpoint])
    ours, plain = [], []
    for _ in range(repeats):
        ours.append(common.run_probe(SCRIPT, ["ours", ckpt, vocab]))
        plain.append(common.run_probe(SCRIPT, ["torch_load", ckpt, vocab]))
    if {o["mode"] for o in ours} != {"resume"}:
        raise RuntimeError(f"classify_checkpoint did not see a training checkpoint: {ours}")
    size_gb = ws.checkpoint.stat().st_size / common.GB
    notes = f"{size_gb:.2f} GB checkpoint, {note}; median of {repeats} fresh processes"
    def med(runs: list[dict], key: str) -> float:
        return common.median([r[key] for r in runs])

    t_first, t_again = med(ours, "seconds"), med(ours, "seconds_again")
    m_ours = max(med(ours, "peak_rss_added"), med(ours, "peak_rss_added_again")) / common.MB
    m_plain = max(med(plain, "peak_rss_added"), med(plain, "peak_rss_added_again")) / common.MB
    target = f"< {TIME_TARGET_S:g} s"
    return [
        common.Row("classify: time, first call in a process", t_first, med(plain, "seconds"), "s", target,
                   t_first < TIME_TARGET_S, notes, "torch.load"),
        common.Row("classify: time, warm process", t_again, med(plain, "seconds_again"), "s", target,
                   t_again < TIME_TARGET_S, notes, "torch.load"),
        common.Row("classify: peak RSS added", m_ours, m_plain, "MB", f"< {RSS_TARGET_MB} MB",
                   m_ours < RSS_TARGET_MB, f"{notes}; the larger of the two calls", "torch.load"),
    ]


def main(argv: list[str] | None = None) -> int:
    return common.script_main(__doc__, argv, lambda ws, args: measure(ws, args.repeats or 3), probe=probe)


if __name__ == "__main__":
    sys.exit(main())
