"""The dataset quality gate's cost: `validate --quality`'s measuring of every clip (Whisper transcript, VAD,
levels, DNSMOS, speaker embedding) beside a plain transcription of the same clips with the same Whisper model
and options, in clips per second on the CPU; and a re-run on the unchanged dataset (stored measurements).

The clips: the gate tests' espeak-ng dataset (12 clips of 3-6 s, tests/faulty_dataset.py), built once in the
cache. Each measurement runs in a fresh process with its models loaded, and each model's first call made,
before the clock starts (the command loads each once; on a dataset of hundreds of clips the first call is
noise); the arms alternate, `--repeats` times each. Target: the gate at most 1.5x the plain
transcription's time in every repeat; the re-run under 5 s. `--size full` measures all 12 clips, `--size tiny`
(the default, for the test suite) the first 4 of them; no XTTS model is involved.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_quality_gate.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

SCRIPT = Path(__file__).resolve()
RATIO_TARGET = 1.5
RERUN_TARGET_S = 5.0
CLIPS = {"tiny": 4, "full": None}  # clips measured per --size (None: all of them)


def dataset(cache: Path) -> Path:
    """The espeak-ng dataset, built once in the cache (without measurements)."""
    folder = cache / "quality_gate" / "dataset"
    if not (folder / "metadata_eval.csv").is_file():
        from tests import faulty_dataset

        if folder.exists():
            shutil.rmtree(folder)
        faulty_dataset.build(folder)
    return folder


def probe(argv: list[str]) -> None:
    """One measurement: `plain FOLDER N` transcribes each of the first N clips (0: all); `gate FOLDER N`
    measures them in a copy of the dataset without stored measurements; `rerun FOLDER N` runs the gate again on
    a measured copy."""
    arm, folder, count = argv[0], Path(argv[1]), int(argv[2])
    from utils.data.filter import dataset_lines
    from utils.data.gate import assess
    from utils.data.measure import Measurer
    from utils.data.metadata import resolve_audio
    from utils.quality import audio as audio_io

    lines = dataset_lines(folder)[:count or None]
    measurer = Measurer().load("en")
    first = audio_io.load(resolve_audio(folder, lines[0].row.audio_file))
    measurer.asr.transcribe(first, "en")  # each model's first call (lazy set-up) outside the clock, in both arms
    measurer.mos.window_scores(first)
    measurer.speaker.embed(first)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "dataset"
        shutil.copytree(folder, work)
        if arm == "plain":
            clips = [resolve_audio(work, line.row.audio_file) for line in lines]
            started, cpu = time.perf_counter(), time.process_time()
            for clip in clips:
                measurer.asr.transcribe(audio_io.load(clip), "en")
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        else:
            chosen = dataset_lines(work)[:count or None]
            if arm == "rerun":
                assess(chosen, work, language="en", measurer=measurer)
            started, cpu = time.perf_counter(), time.process_time()
            report = assess(chosen, work, language="en", measurer=measurer)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            if len(report.verdicts) != len(lines):
                raise RuntimeError(f"measured {len(report.verdicts)} of {len(lines)} clips")
    common.emit_probe({"seconds": seconds, "cpu_seconds": cpu, "clips": len(lines)})


def measure(cache: Path, repeats: int, size: str) -> list[common.Row]:
    folder = dataset(cache)
    runs: dict[str, list[dict]] = {"plain": [], "gate": [], "rerun": []}
    for _ in range(repeats):
        for arm in runs:  # interleaved: plain, gate, rerun, plain, ...
            runs[arm].append(common.run_probe(SCRIPT, [arm, str(folder), str(CLIPS[size] or 0)]))
    clips = runs["plain"][0]["clips"]
    plain = [r["seconds"] for r in runs["plain"]]
    gate = [r["seconds"] for r in runs["gate"]]
    rerun = [r["seconds"] for r in runs["rerun"]]
    ratios = common.round_ratios(gate, plain)
    cpu_ratios = [g["cpu_seconds"] / p["cpu_seconds"] for g, p in zip(runs["gate"], runs["plain"], strict=True)]
    spread = (f"{repeats} interleaved repeats, fresh process each, models loaded and warm before timing; "
              f"ratio per repeat {common.ratio_text(ratios)}; gate s {', '.join(f'{g:.1f}' for g in gate)}"
              f", plain s {', '.join(f'{p:.1f}' for p in plain)}; spread gate {common.spread(gate):.0%}, "
              f"plain {common.spread(plain):.0%}; CPU time (all threads) ratio per repeat "
              f"{', '.join(f'{r:.2f}' for r in cpu_ratios)}")
    rate = clips / common.median(gate)
    return [
        common.Row(f"quality gate: measure {clips} clips (validate --quality)", common.median(gate),
                   common.median(plain), "s", f"<= {RATIO_TARGET:g}x plain", all(r <= RATIO_TARGET for r in ratios),
                   f"{rate:.2f} clips/s against {clips / common.median(plain):.2f}; {spread}",
                   "plain transcription, same Whisper", paired_ratio=common.median(ratios)),
        common.Row(f"quality gate: re-run on the unchanged {clips} clips", common.median(rerun), None, "s",
                   f"< {RERUN_TARGET_S:g} s", all(r < RERUN_TARGET_S for r in rerun),
                   f"stored measurements, nothing re-measured; spread {common.spread(rerun):.0%}"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.probe:
        probe(args.probe)
        return 0
    cache = Path(args.cache) if args.cache else common.default_cache()
    common.finish(measure(cache, args.repeats or 3, args.size), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
