"""A plain coqui XTTS GPT recipe (coqui-tts-trainer 0.4, no code of ours in the loop), on a base folder.

Used by tests (checkpoints written by coqui's own trainer must resume with us) and by the training-loop
benchmark as the baseline. Usage: python tests/coqui_recipe.py BASE_DIR DATASET_DIR OUT_DIR [options]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def recipe_config(base: Path, dataset: str, out: str, *, epochs: int, batch_size: int, save_step: int, lr: float,
                  xtts_checkpoint: str = "", run_name: str = "coqui_recipe", print_step: int = 25):
    """The plain recipe's GPTTrainerConfig on `base` (its dimensions from config.json) and a coqui-format dataset.
    `xtts_checkpoint`: a file GPTTrainer loads whole at construction (what the seed's resume did)."""
    from TTS.config.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainerConfig

    base = Path(base)
    model_args = json.loads((base / "config.json").read_text())["model_args"]
    gpt_args = GPTArgs(**{k: v for k, v in model_args.items() if k in GPTArgs.__dataclass_fields__})
    gpt_args.max_wav_length, gpt_args.max_text_length = 255995, 200
    gpt_args.mel_norm_file, gpt_args.dvae_checkpoint = str(base / "mel_stats.pth"), str(base / "dvae.pth")
    gpt_args.xtts_checkpoint, gpt_args.tokenizer_file = xtts_checkpoint, str(base / "vocab.json")
    return GPTTrainerConfig(
        epochs=epochs, output_path=out, model_args=gpt_args, run_name=run_name, project_name="recipe",
        dashboard_logger="tensorboard", audio=XttsAudioConfig(sample_rate=22050, dvae_sample_rate=22050,
                                                              output_sample_rate=24000),
        batch_size=batch_size, eval_batch_size=batch_size, num_loader_workers=0, print_step=print_step,
        plot_step=1, log_model_step=10**12, save_step=save_step, save_n_checkpoints=1, save_checkpoints=True,
        print_eval=False, optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=lr,
        lr_scheduler="MultiStepLR", scheduler_after_epoch=False,
        lr_scheduler_params={"milestones": [50000 * 18, 150000 * 18, 300000 * 18], "gamma": 0.5, "last_epoch": -1},
        test_sentences=[],
        datasets=[BaseDatasetConfig(formatter="coqui", dataset_name="d", path=dataset, language="en",
                                    meta_file_train="metadata_train.csv", meta_file_val="metadata_eval.csv")],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--grad_accum", type=int, default=1)
    parser.add_argument("--save_step", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--print_step", type=int, default=25)
    args = parser.parse_args()

    from trainer import Trainer, TrainerArgs
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

    config = recipe_config(Path(args.base), args.dataset, args.out, epochs=args.epochs, batch_size=args.batch_size,
                           save_step=args.save_step, lr=args.lr, print_step=args.print_step)
    train_samples, eval_samples = load_tts_samples(config, eval_split=True)
    model = GPTTrainer.init_from_config(config)
    trainer = Trainer(TrainerArgs(restore_path=None, grad_accum_steps=args.grad_accum), config,
                      output_path=args.out, model=model, train_samples=train_samples, eval_samples=eval_samples,
                      parse_command_line_args=False)
    trainer.fit()


if __name__ == "__main__":
    sys.exit(main())
