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

    from trainer import Trainer, TrainerArgs
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainer, GPTTrainerConfig

    base, events = Path(args.base), Path(args.events)
    model_args = json.loads((base / "config.json").read_text())["model_args"]
    gpt_args = GPTArgs(**{k: v for k, v in model_args.items() if k in GPTArgs.__dataclass_fields__})
    gpt_args.max_wav_length, gpt_args.max_text_length = 255995, 200
    gpt_args.mel_norm_file, gpt_args.dvae_checkpoint = str(base / "mel_stats.pth"), str(base / "dvae.pth")
    gpt_args.xtts_checkpoint = args.checkpoint  # first full read: GPTTrainer.__init__ -> load_checkpoint
    gpt_args.tokenizer_file = str(base / "vocab.json")
    config = GPTTrainerConfig(
        epochs=args.epochs, output_path=args.out, model_args=gpt_args, run_name="seed_resume", project_name="seed",
        dashboard_logger="tensorboard", audio=XttsAudioConfig(sample_rate=22050, dvae_sample_rate=22050,
                                                              output_sample_rate=24000),
        batch_size=args.batch_size, eval_batch_size=args.batch_size, num_loader_workers=0, print_step=25,
        plot_step=1, log_model_step=10**12, save_step=10**9, save_n_checkpoints=1, save_checkpoints=True,
        print_eval=False, optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=5e-6,
        lr_scheduler="MultiStepLR", scheduler_after_epoch=False,
        lr_scheduler_params={"milestones": [50000 * 18, 150000 * 18, 300000 * 18], "gamma": 0.5, "last_epoch": -1},
        test_sentences=[],
        datasets=[BaseDatasetConfig(formatter="coqui", dataset_name="d", path=args.dataset, language="en",
                                    meta_file_train="metadata_train.csv", meta_file_val="metadata_eval.csv")],
    )
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
