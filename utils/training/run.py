"""Fine-tune XTTS-v2's GPT: `train_gpt(options)`, a table of contents of one start. The start is planned from the
checkpoint's content (utils/training/plan.py), the run folder locked, the start file read once, then trained."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.base_model.download import ensure_base_model
from utils.base_model.folder import BaseModel
from utils.checkpoints.keys import KEY_CONFIG, KEY_MODEL, KEY_RUN_STATE, Mode
from utils.checkpoints.latest import latest_checkpoint
from utils.checkpoints.read import load_xtts_weights, read_checkpoint
from utils.checkpoints.write import remove_partial_files
from utils.data.csvset import recover
from utils.data.gate import stored_flags_note
from utils.data.metadata import load_samples
from utils.data.validate import validate_dataset
from utils.options import LATEST, TrainOptions
from utils.training.allocator import START_MMAP_THRESHOLD, TRAINING_MMAP_THRESHOLD, set_mmap_threshold
from utils.training.config import build_config, build_model, estimate_checkpoint_bytes
from utils.training.distributed import Distributed
from utils.training.events import EndEvent, EventLog, StartEvent, WarningEvent
from utils.training.guard import TrainingDiverged
from utils.training.manifest import data_manifest, describe_changes
from utils.training.memory import AUTO, check_batch_size, find_batch_size
from utils.training.plan import StartPlan, plan_start
from utils.training.precision import check_precision
from utils.training.quality_loop import quality_for_run
from utils.training.run_folder import (
    PROGRESS_FILE,
    check_disk_space,
    keep_vocab,
    locked_run_dir,
    new_run_dir,
    read_manifest,
    record_start,
    shared_run_dir,
    write_manifest,
)
from utils.training.trainer import RunControl, RunTrainer
from utils.training.weights import adopt_weights, release_weights
from utils.vocabulary.expand import expand_base_checkpoint
from utils.vocabulary.tokenizer import vocab_sha256
from utils.xtts import DEFAULT_MIN_CONDITIONING_SAMPLES, MAX_TEXT_TOKENS, SAMPLE_RATE

logger = logging.getLogger("xtts_ft")


@dataclass
class TrainResult:
    """How a call to train_gpt ended."""

    run_dir: Path
    mode: Mode
    start_step: int
    step: int
    epoch: int
    reason: str  # "completed", "reached --max_steps N", "stop requested", ...
    last_checkpoint: Path | None


@dataclass
class StartContext:
    """What one start works with once planned: options, base folder, plan, where events go, the launch."""

    opts: TrainOptions
    base: BaseModel
    plan: StartPlan
    on_event: Callable[[dict[str, Any]], None] | None
    stop_requested: Callable[[], bool]
    dist: Distributed


def train_gpt(
    opts: TrainOptions,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    dist: Distributed | None = None,
) -> TrainResult:
    """Plan the start from the checkpoint's content, build the model, load the checkpoint once, train."""
    dist = dist or Distributed()
    opts.validate()
    check_precision(opts.train_precision)
    check_batch_size(opts.batch_size, ranks=dist.size)
    base = resolve_base(opts)
    opts = agree_on_latest(opts, dist)
    plan = plan_start(opts, base.vocab_path, base.model_path)
    refuse_bad_dataset(opts, plan.vocab_path, base)
    start = StartContext(opts, base, plan, on_event, stop_requested, dist)
    if not dist.writes:  # rank 0's run folder, once it is ready, checked to be the one this rank sees
        plan.run_dir = dist.join_run_dir(Path(opts.output_path))
        return run_training(start)
    with dist.publishing(Path(opts.output_path)) as publish:
        if plan.run_dir is None:
            plan.run_dir = (shared_run_dir(Path(opts.output_path), opts.run_name, dist.group_id) if dist.use_ddp
                            else new_run_dir(Path(opts.output_path), opts.run_name))
        with locked_run_dir(plan.run_dir):
            remove_partial_files(plan.run_dir)
            if not plan.continues_run:
                plan.vocab_path = keep_vocab(plan.run_dir, plan.vocab_path)
            record_start(plan.run_dir, plan.mode, plan.source, plan.step, dataclasses.asdict(opts))
            publish(plan.run_dir)
            return run_training(start)


def agree_on_latest(opts: TrainOptions, dist: Distributed) -> TrainOptions:
    """With several ranks, rank 0 resolves --custom_model latest and every rank starts from the file it found."""
    if opts.custom_model != LATEST or not dist.active:
        return opts
    found = dist.share_path(lambda: latest_checkpoint(opts.output_path), Path(opts.output_path))
    return dataclasses.replace(opts, custom_model=str(found) if found else None)


def refuse_bad_dataset(opts: TrainOptions, vocab: Path, base: BaseModel) -> None:
    """Refuse a dataset with errors before anything is written, naming the first lines at fault (after finishing
    a change of the CSVs that a killed `formatter.py filter` left)."""
    recover(Path(opts.train_csv).parent)
    min_cond = base.config["model_args"].get("min_conditioning_length") or DEFAULT_MIN_CONDITIONING_SAMPLES
    report = validate_dataset(opts.train_csv, opts.eval_csv, vocab_path=vocab, language=opts.language,
                              max_audio_seconds=opts.max_audio_length, min_conditioning_seconds=min_cond / SAMPLE_RATE,
                              max_text_tokens=MAX_TEXT_TOKENS)
    report.raise_if_errors()


def resolve_base(opts: TrainOptions) -> BaseModel:
    if opts.base_model_dir:  # the user's own folder: check it, never download into it
        return ensure_base_model(Path(opts.base_model_dir), download=False)
    return ensure_base_model(None, download=True)


def run_training(start: StartContext) -> TrainResult:
    """Build, load the start state once, train, and report how it ended."""
    opts, plan, dist = start.opts, start.plan, start.dist
    logs = [plan.run_dir / PROGRESS_FILE, *([Path(opts.progress_jsonl)] if opts.progress_jsonl else [])]
    events = EventLog(logs if dist.writes else [], start.on_event)
    if dist.writes:
        report_flagged_clips(opts, plan, events)
    train_samples = load_samples(opts.train_csv, opts.language)
    eval_samples = load_samples(opts.eval_csv, opts.language)
    config = build_config(opts, start.base, plan.vocab_path, plan.run_dir)
    set_mmap_threshold(START_MMAP_THRESHOLD)  # what the start frees goes back to the system (allocator.py)
    # Not initialised: load_start_state loads every weight, strictly, in each mode.
    model = build_model(config, plan.vocab_path, gradient_checkpointing=opts.gradient_checkpointing, initialise=False)
    data = load_start_state(model, plan)
    if dist.writes:
        check_disk_space(plan.run_dir, estimate_checkpoint_bytes(model), opts.keep_checkpoints, events)
    manifest = data_manifest([opts.train_csv, opts.eval_csv], train_samples + eval_samples)
    if plan.mode is Mode.RESUME:
        report_data_changes(plan, data, manifest, events)
    if dist.writes:
        write_manifest(plan.run_dir, manifest)
    control = RunControl(
        max_steps=opts.max_steps, save_step=opts.save_step, keep_checkpoints=opts.keep_checkpoints,
        seed=opts.seed, vocab_sha256=vocab_sha256(plan.vocab_path), source=str(plan.source),
        on_event=events, stop_requested=start.stop_requested, extra_state={"data_digest": manifest["digest"]},
        max_bad_updates=opts.max_bad_updates, optimizer=opts.optimizer,
        quality=quality_for_run(opts, plan.run_dir, dist.writes, train_samples, eval_samples,
                                data.get(KEY_RUN_STATE) if plan.mode is Mode.RESUME else None),
    )
    trainer = RunTrainer.for_run(opts, config, model, plan.run_dir, train_samples, eval_samples, control, dist)
    start_step = 0
    if plan.mode is Mode.RESUME:
        trainer.restore_training_state(data)
        start_step = trainer.updates
    if opts.batch_size == AUTO:
        settle_auto_batch(trainer, data, plan, train_samples, events)
    del data  # the start file's tensors: what the model and optimizer did not adopt is freed here
    lr = trainer.optimizer[0].param_groups[0]["lr"]
    events(StartEvent(**trainer.position(), mode=str(plan.mode), run_dir=str(plan.run_dir), lr=lr,
                      message=start_message(plan, trainer.updates, trainer.epochs_done, lr)))
    set_mmap_threshold(TRAINING_MMAP_THRESHOLD)  # activations reuse the heap from here on
    try:
        reason = trainer.fit()
    except TrainingDiverged as diverged:  # the CLI exits 3; the WebUI reads why from the progress
        events(WarningEvent(**trainer.position(), message=str(diverged)))
        raise
    last = trainer.last_checkpoint
    events(EndEvent(**trainer.position(), reason=reason, run_dir=str(plan.run_dir), path=str(last) if last else None))
    return TrainResult(plan.run_dir, plan.mode, start_step, trainer.updates, trainer.epochs_done, reason, last)


def settle_auto_batch(trainer: RunTrainer, data: dict[str, Any], plan: StartPlan, samples: list[dict],
                      events: EventLog) -> None:
    """--batch_size auto: a resume keeps the batch its checkpoint trained with; a new start measures the largest
    that fits (trial steps on the longest clips). Printed, and recorded in every checkpoint of the run."""
    if plan.mode is Mode.RESUME:
        batch = int((data.get(KEY_CONFIG) or {}).get("batch_size") or trainer.config.batch_size)
        message = f"--batch_size auto: resuming with the checkpoint's batch size, {batch}"
    else:
        search = find_batch_size(trainer, samples, limit=len(samples))
        batch, message = search.chosen, search.describe()
    trainer.config.batch_size = trainer.config.eval_batch_size = batch
    trainer.control.extra_state["batch_size"] = batch
    events(WarningEvent(**trainer.position(), message=message))


def load_start_state(model: Any, plan: StartPlan) -> dict[str, Any]:
    """Read the start file's tensors once; for base/extend_vocab load its weights now (extend: expanded once,
    first). A resume reads the file into memory rather than mapping it, and the model and optimizer adopt its
    tensors as they are (a mapping would keep every page of the file resident beside them; a copy of the weights
    into the freshly built model would hold them twice)."""
    if plan.mode is Mode.EXTEND_VOCAB:
        expanded = expand_base_checkpoint(plan.source, plan.source_vocab_path, plan.vocab_path, plan.run_dir)
        data = read_checkpoint(expanded)
        load_xtts_weights(model.xtts, data[KEY_MODEL], expanded)
        return data
    if plan.mode is Mode.RESUME:
        release_weights(model)  # the file's weights replace them: never both in memory
    data = read_checkpoint(plan.source, mmap=plan.mode is not Mode.RESUME)
    if plan.mode is Mode.BASE:
        load_xtts_weights(model.xtts, data[KEY_MODEL], plan.source)
    if plan.mode is Mode.RESUME:  # the model takes the file's tensors: no second copy of the weights
        adopt_weights(model, data[KEY_MODEL], plan.source)
    return data


def report_data_changes(plan: StartPlan, data: dict[str, Any], manifest: dict[str, Any], events: EventLog) -> None:
    """One line when the data differs from what the checkpoint was trained on; training goes on."""
    recorded = (data.get(KEY_RUN_STATE) or {}).get("data_digest")
    if recorded is None or recorded == manifest["digest"]:
        return
    old = read_manifest(plan.source.parent) or {"digest": recorded}
    details = describe_changes(old, manifest) or "details unknown"
    message = (f"Training data changed since {plan.source.name} ({details}): training goes on, but the run no longer "
               f"matches an uninterrupted one exactly.")
    events(WarningEvent(step=plan.info.step, total=None, epoch=plan.info.epoch, message=message))


def start_message(plan: StartPlan, step: int, epoch: int, lr: float) -> str:
    if plan.mode is Mode.RESUME:
        return f"Resuming from {plan.source.name}: step {step}, epoch {epoch}, learning rate {lr:g} ({plan.run_dir})"
    if plan.mode is Mode.EXTEND_VOCAB:
        return (f"Fine-tuning from {plan.source.name} with an extended vocabulary ({plan.info.checkpoint_text_tokens} "
                f"-> {plan.info.tokenizer_text_tokens} text rows): step 0 ({plan.run_dir})")
    return f"Fine-tuning from {plan.source.name}: weights only, step 0, learning rate {lr:g} ({plan.run_dir})"


def report_flagged_clips(opts: TrainOptions, plan: StartPlan, events: EventLog) -> None:
    """One line saying how many clips the quality gate's stored measurements flag; training refuses none."""
    note = stored_flags_note([Path(opts.train_csv), Path(opts.eval_csv)], opts.language)
    if note:
        events(WarningEvent(step=plan.step, total=None, epoch=plan.epoch, message=note))
