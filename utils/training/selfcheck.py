"""Offline self-check of an installation: train a tiny random XTTS a few steps, stop, resume, and report.

This is a pipeline check, not a voice: the model is 2 layers wide and random, and what it learns is noise.
It needs no network and no base model download.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from utils import testbed
from utils.checkpoints.classify import classify_checkpoint
from utils.checkpoints.keys import Mode
from utils.options import TrainOptions
from utils.training.run import train_gpt


def run_selfcheck(work_dir: Path | None = None) -> int:
    """Build the tiny base and dataset, train 2 updates, resume to 4, check the resume, print facts; 0 if fine."""
    print("Self-check: a pipeline test on a tiny random model; it produces no usable voice.")
    with tempfile.TemporaryDirectory(prefix="xtts-selfcheck-") as tmp:
        root = Path(work_dir) if work_dir else Path(tmp)
        started = time.time()
        base = testbed.build_base(root / "tiny_base")
        data = testbed.build_dataset(root / "dataset")
        print(f"Built a tiny base model and {len(data.clips)} synthetic clips in {time.time() - started:.0f} s")
        opts = TrainOptions(train_csv=str(data.train_csv), eval_csv=str(data.eval_csv), output_path=str(root / "out"),
                            base_model_dir=str(base), num_epochs=2, batch_size=2, max_steps=2, save_step=1000)
        first = train_gpt(opts)
        info = classify_checkpoint(first.last_checkpoint)
        print(f"Stopped at {first.last_checkpoint.name}: it classifies as {info.mode}, step {info.step}")
        opts.custom_model, opts.max_steps = str(first.last_checkpoint), 4
        second = train_gpt(opts)
        ok = second.mode is Mode.RESUME and second.start_step == 2 and second.step == 4
        print(f"Resumed from step {second.start_step} to step {second.step} in {second.run_dir}")
        print(f"Self-check {'passed' if ok else 'FAILED'} in {time.time() - started:.0f} s")
        return 0 if ok else 1
