"""Build coqui's training config and model for a run: the model's dimensions come from the base folder's
config.json, the rest from the options."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from utils.base_model.folder import BaseModel
from utils.options import TrainOptions
from utils.training.memory import enable_gradient_checkpointing
from utils.training.precision import coqui_precision
from utils.vocabulary.tokenizer import make_tokenizer
from utils.xtts import MAX_TEXT_TOKENS, OUTPUT_SAMPLE_RATE, SAMPLE_RATE


def build_config(opts: TrainOptions, base: BaseModel, vocab: Path, run_dir: Path) -> Any:
    """coqui's GPTTrainerConfig for this run."""
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainerConfig

    known = GPTArgs.__dataclass_fields__
    model_args = GPTArgs(**{k: v for k, v in base.config["model_args"].items() if k in known})
    model_args.max_wav_length = int(opts.max_audio_length * SAMPLE_RATE)
    model_args.max_text_length = MAX_TEXT_TOKENS
    model_args.mel_norm_file = str(base.mel_stats_path)
    model_args.dvae_checkpoint = str(base.dvae_path)
    model_args.xtts_checkpoint = ""  # weights are loaded by us, checked, from the one file
    model_args.tokenizer_file = str(vocab)
    audio = XttsAudioConfig(sample_rate=SAMPLE_RATE, dvae_sample_rate=SAMPLE_RATE,
                            output_sample_rate=OUTPUT_SAMPLE_RATE)
    languages = sorted(set(base.config.get("languages") or []) | {opts.language})
    batch = opts.batch_size if isinstance(opts.batch_size, int) else 1  # auto: set once measured (run.py)
    mixed, precision = coqui_precision(opts.train_precision)
    return GPTTrainerConfig(
        epochs=opts.num_epochs, output_path=str(run_dir), model_args=model_args, run_name=opts.run_name,
        project_name="xtts_ft", dashboard_logger="tensorboard", audio=audio, languages=languages,
        batch_size=batch, eval_batch_size=batch, num_loader_workers=opts.num_workers,
        num_eval_loader_workers=opts.num_workers, print_step=1 if opts.debug else opts.print_step, plot_step=1,
        log_model_step=10**12, save_step=10**12, save_checkpoints=False, save_n_checkpoints=opts.keep_checkpoints,
        save_best_after=0, print_eval=False, optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=opts.lr,
        lr_scheduler="MultiStepLR",
        lr_scheduler_params={"milestones": [50000 * 18, 150000 * 18, 300000 * 18], "gamma": 0.5, "last_epoch": -1},
        scheduler_after_epoch=False, training_seed=opts.seed, mixed_precision=mixed,
        precision=precision, test_sentences=[],
    )


def build_model(config: Any, vocab: Path, *, gradient_checkpointing: bool = False, initialise: bool = True) -> Any:
    """coqui's GPTTrainer with our tokenizer (which also accepts languages coqui's list lacks). `initialise=False`:
    the weights are left as allocated, for a caller that loads every one of them next, strictly (random
    initialisation is 9 of the 10 s a full-size build takes, and a start would only overwrite it)."""
    from transformers.initialization import no_init_weights
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTTrainer

    with contextlib.nullcontext() if initialise else no_init_weights():
        model = GPTTrainer(config)  # loads dvae.pth, which check_base_folder found to hold every DVAE weight
    model.xtts.tokenizer = make_tokenizer(vocab)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def estimate_checkpoint_bytes(model: Any) -> int:
    """Size of one training checkpoint: every weight, plus AdamW's two moments for each trained (GPT) weight."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.xtts.gpt.parameters())
    return weights + moments
