"""The seed's way of resuming, as the baseline of bench_resume_startup.py (no code of ours in the loop).

The write-up in seed/ resumed a training checkpoint by giving the same file twice: as `GPTArgs.xtts_checkpoint`
(GPTTrainer loads it whole to take the weights) and as `TrainerArgs.restore_path` (coqui's trainer loads it
whole again in `restore_model`). The settings are those of tests/coqui_recipe.py. Two callbacks append JSON
lines to --events: "start" when the first training epoch begins, "update" after each training step; after
--stop_after updates the process ends at once (exit 0), so its peak memory is that of reaching them.

Usage: python benchmarks/seed_resume.py BASE_DIR DATASET_DIR OUT_DIR CHECKPOINT --events FILE [--stop_after N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def append_event(path: Path, event: str, trainer) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "time": time.time(), "step": trainer.total_steps_done}) + "\n")


def on_update(path: Path, stop_after: int, trainer) -> None:
    append_event(path, "update", trainer)
    if trainer.total_steps_done >= stop_after:
        os._exit(0)  # coqui's fit() would turn SystemExit into exit code 1 with a traceback


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("checkpoint")
    parser.add_argument("--events", required=True)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--stop_after", type=int, default=1, help="end the process after this many updates")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from coqui_recipe import recipe_config
    from trainer import Trainer, TrainerArgs
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

    events = Path(args.events)
    # first full read: GPTTrainer.__init__ -> load_checkpoint of xtts_checkpoint
    config = recipe_config(Path(args.base), args.dataset, args.out, epochs=args.epochs, batch_size=args.batch_size,
                           save_step=10**9, lr=5e-6, xtts_checkpoint=args.checkpoint, run_name="seed_resume")
    train_samples, eval_samples = load_tts_samples(config, eval_split=True)
    model = GPTTrainer.init_from_config(config)
    callbacks = {"on_train_epoch_start": lambda t: append_event(events, "start", t),
                 "on_train_step_end": lambda t: on_update(events, args.stop_after, t)}
    # second full read: Trainer.__init__ -> restore_model
    trainer = Trainer(TrainerArgs(restore_path=args.checkpoint), config, output_path=args.out, model=model,
                      train_samples=train_samples, eval_samples=eval_samples, parse_command_line_args=False,
                      callbacks=callbacks)
    trainer.fit()


if __name__ == "__main__":
    sys.exit(main())
