"""Recordings -> dataset: transcribe each recording, cut it into clips at 22.05 kHz mono and add them to the
dataset folder, one recording at a time (a stop loses at most the recording in progress)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

from utils.data.audio import audio_info, find_audio_files, load_audio, write_clip
from utils.data.clips import plan_clips
from utils.data.errors import DatasetError
from utils.data.folder import DatasetFolder, DatasetSummary, safe_stem
from utils.data.measure import record_cut_confidence
from utils.data.options import PrepareOptions
from utils.data.progress import ProgressCallback, ProgressTracker
from utils.data.transcribe import Transcriber
from utils.fsio import file_sha256
from utils.whisper import xtts_language
from utils.xtts import CLIPS_DIR, SAMPLE_RATE, TRAIN_CSV


def prepare_from_audio(
    inputs: Iterable[str | Path],
    dataset_dir: str | Path,
    transcriber: Transcriber,
    options: PrepareOptions | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetSummary:
    """Transcribe recordings, cut them into clips at 22.05 kHz mono and add them to the dataset in
    `dataset_dir` (created if missing). Recordings already in the dataset (same content) are skipped; the CSVs
    are rewritten after each recording, so a stop loses at most the recording in progress."""
    options = options or PrepareOptions()
    options.check()
    files = find_audio_files(list(inputs))
    dataset = DatasetFolder(Path(dataset_dir), options.language)
    summary = DatasetSummary(Path(dataset_dir), dataset.language or "")

    digests = {path: file_sha256(path) for path in files}
    # content order, not argument order: the same recordings and seed give the same split whatever their order
    first_of = {d: p for p, d in reversed(digests.items())}  # one file per content: copies are not done twice
    todo = sorted((p for p in first_of.values() if digests[p] not in dataset.manifest), key=lambda p: digests[p])
    summary.files_skipped = [str(p) for p in files if p not in todo]
    durations = {p: _duration_or_zero(p) for p in todo}
    tracker = ProgressTracker("transcribe", len(todo), sum(durations.values()), progress)
    tracker.report("starting")
    for path in todo:
        tracker.report(path.name)
        audio = load_audio(path, SAMPLE_RATE)
        transcript = transcriber.transcribe(path, dataset.language, on_progress=lambda s, p=path: tracker.report(
            p.name, min(s, durations[p]), force=False))
        language = (dataset.language or xtts_language(transcript.language)).strip()
        if not language:
            raise DatasetError(f"No language given, and the transcriber detected none for {path}: pass --language.")
        dataset.set_language(language)
        seconds = len(audio) / SAMPLE_RATE
        planning = plan_clips(transcript, min_seconds=options.min_clip_seconds, max_seconds=options.max_clip_seconds,
                              padding_seconds=options.padding_seconds, duration=seconds)
        plans = planning.clips
        stem = f"{safe_stem(path.stem)}_{digests[path][:8]}"
        rows, max_frames = [], int(options.max_clip_seconds * SAMPLE_RATE)
        for i, plan in enumerate(plans):
            rel = f"{CLIPS_DIR}/{stem}_{i:04d}.wav"
            first = math.floor(plan.start * SAMPLE_RATE)
            write_clip(dataset.folder / rel, audio[first: min(math.ceil(plan.end * SAMPLE_RATE), first + max_frames)])
            rows.append((rel, plan.text, options.speaker_name))
            summary.seconds_added += plan.seconds
        record_cut_confidence(dataset.folder, [(dataset.folder / r[0], plan.confidence) for r, plan in
                                               zip(rows, plans, strict=True)],
                              str(getattr(transcriber, "model_name", type(transcriber).__name__)))
        summary.left_out += [f"{path.name} {r}" for r in planning.left_out]
        timing = planning.timing.describe(seconds)
        if timing:
            summary.left_out.append(f"{path.name}: {timing}")
        if not plans:
            summary.left_out.append(f"{path.name}: no speech long enough for a clip was found")
        dataset.add(rows, options.eval_fraction, options.seed)
        dataset.manifest[digests[path]] = {"file": str(path), "clips": [r[0] for r in rows],
                                           "language": language, "added": time.strftime("%Y-%m-%d %H:%M:%S")}
        dataset.save()
        summary.files_added.append(str(path))
        summary.clips_added += len(rows)
        tracker.files_done += 1
        tracker.clips += len(rows)
        tracker.work_done += durations[path]
        tracker.report(path.name)
    if not todo and not (dataset.folder / TRAIN_CSV).exists():
        dataset.save()
    summary.language = dataset.language or ""
    summary.train_lines, summary.eval_lines = len(dataset.train), len(dataset.eval)
    return summary


def _duration_or_zero(path: Path) -> float:
    try:
        return audio_info(path).seconds
    except DatasetError:
        return 0.0  # the transcriber or the decoder will say what is wrong with it
