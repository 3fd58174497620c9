"""The coqui Trainer, taught to stop and resume exactly.

`RunTrainer` keeps the coqui trainer's model, optimizer, scheduler, train step and evaluation, and replaces
what it loses on a restart: it counts optimizer updates (not batches), saves atomically on update
boundaries only, stores and restores RNG states, the position inside the epoch and the best loss, draws
each training sample from RNG seeded by (seed, epoch, position) so loader workers don't matter, and never
deletes a run folder or turns an error into a bare exit code.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from trainer import Trainer, TrainerArgs

from utils.checkpoints.classify import optimizer_updates
from utils.checkpoints.keys import (
    BEST_MODEL,
    FORMAT_VERSION,
    KEY_CONFIG,
    KEY_DATE,
    KEY_EPOCH,
    KEY_FORMAT,
    KEY_LOSS,
    KEY_MODEL,
    KEY_OPTIMIZER,
    KEY_RUN_STATE,
    KEY_SCALER,
    KEY_SCHEDULER,
    KEY_STEP,
    KEY_VOCAB_SHA,
    CheckpointError,
    checkpoint_path,
    run_checkpoints,
)
from utils.checkpoints.write import CheckpointWriter
from utils.options import TrainOptions
from utils.training.distributed import Distributed
from utils.training.events import BestEvent, CheckpointEvent, EvalEvent, Event, UpdateEvent
from utils.training.sampling import FromPositionSampler, PositionSeededDataset, rng_state, set_rng_state

logger = logging.getLogger(__name__)



class StopTraining(Exception):
    """Raised at an update boundary once a checkpoint is saved and the run should end (max_steps or a signal)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunControl:
    """What the CLI tells the trainer beyond coqui's config."""

    max_steps: int | None = None
    save_step: int = 1000
    keep_checkpoints: int = 2
    seed: int = 1
    vocab_sha256: str = ""
    source: str = ""  # the file this run started from: never pruned
    on_event: Callable[[Event], None] = lambda event: None
    stop_requested: Callable[[], bool] = lambda: False
    extra_state: dict[str, Any] = field(default_factory=dict)  # recorded in each checkpoint's run_state


class RunTrainer(Trainer):
    """coqui's Trainer writing into a run folder we chose, with exact stop/resume (see module docstring)."""

    def __init__(self, *args: Any, control: RunControl, world_size: int | None = None, **kwargs: Any) -> None:
        self.control = control
        self.world_size = world_size  # set under torchrun: coqui would count the visible GPUs instead
        self.updates = 0  # optimizer updates applied in total
        self.epoch_batch = 0  # batches of the current epoch already trained
        self.resume_batch = 0  # where the first epoch after a resume starts
        self.train_dataset: PositionSeededDataset | None = None
        self.writer = CheckpointWriter()
        self.announce: dict[Path, CheckpointEvent | BestEvent] = {}  # per file in flight: its event once durable
        self.last_checkpoint: Path | None = None
        self.keep_avg_state: dict[str, Any] | None = None  # the epoch's running averages at the checkpoint
        self.last_loss: float | None = None  # loss of the latest batch
        super().__init__(*args, **kwargs)

    @classmethod
    def for_run(cls, opts: TrainOptions, config: Any, model: Any, run_dir: Path, train_samples: list[dict],
                eval_samples: list[dict], control: RunControl, dist: Distributed) -> RunTrainer:
        """The trainer for one start, writing into `run_dir`, with its training dataset built."""
        args = TrainerArgs(continue_path=str(run_dir), restore_path=None, grad_accum_steps=opts.grad_accum,
                           rank=dist.rank, group_id=dist.group_id, use_ddp=dist.use_ddp)
        trainer = cls(args, config, output_path=str(run_dir), model=model, train_samples=train_samples,
                      eval_samples=eval_samples, parse_command_line_args=False, control=control,
                      world_size=dist.world_size)
        trainer.build_train_dataset()
        return trainer

    # --- setup -------------------------------------------------------------------------------------------
    def setup_training_environment(self, args, config, gpu):
        """coqui takes the number of visible GPUs as the number of processes; under torchrun it is the number
        torchrun started (fewer processes than GPUs would otherwise wait forever for the missing ones)."""
        use_cuda, num_gpus = super().setup_training_environment(args=args, config=config, gpu=gpu)
        if use_cuda and self.world_size is not None:
            num_gpus = self.world_size
        return use_cuda, num_gpus

    def init_training(self, args, coqpit_overrides, config=None):
        """coqui reads config.json of `continue_path` over ours and picks the folder's latest checkpoint; we
        use continue_path only to name the run folder, and restore from the exact file ourselves."""
        return config, {}

    def _restore_best_loss(self) -> None:
        """coqui reads the best loss from the wrong file; ours comes from the checkpoint's run_state."""

    def build_train_dataset(self) -> None:
        """Build XTTS's training dataset once (it reseeds python's RNG when built), before RNG is restored."""
        loader = self.model.get_data_loader(config=self.config, is_eval=False, samples=self.train_samples,
                                            verbose=True)
        self.train_dataset = PositionSeededDataset(loader.dataset, self.control.seed)

    def batches_per_epoch(self) -> int:
        return -(-len(self.train_dataset) // self.config.batch_size)

    def updates_per_epoch(self) -> int:
        return -(-self.batches_per_epoch() // self.grad_accum_steps)

    def total_updates(self) -> int:
        planned = self.updates_per_epoch() * self.config.epochs
        return min(planned, self.control.max_steps) if self.control.max_steps is not None else planned

    def _loader(self, dataset: Dataset, *, batch_size: int, workers: int, sampler: Sampler | None,
                seed: int) -> DataLoader:
        """A loader with its own generator, so creating it never draws from the global torch RNG."""
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=False,
                          collate_fn=dataset.collate_fn, num_workers=workers, pin_memory=False,
                          generator=torch.Generator().manual_seed(seed))

    def get_eval_dataloader(self, samples, *, verbose: bool = True) -> DataLoader:
        loader = super().get_eval_dataloader(samples, verbose=verbose)
        return self._loader(loader.dataset, batch_size=self.config.eval_batch_size,
                            workers=self.config.num_eval_loader_workers, sampler=None, seed=self.control.seed)

    # --- resume ------------------------------------------------------------------------------------------
    def restore_training_state(self, data: dict[str, Any]) -> None:
        """Restore everything from one already-loaded training checkpoint, failing loudly on any mismatch."""
        try:
            self.model.load_state_dict(data[KEY_MODEL], strict=True)
        except RuntimeError as e:  # missing/unexpected keys or shapes: another XTTS size or another model
            detail = " ".join(str(e).split())[:300]
            raise CheckpointError(f"Checkpoint {self.control.source} does not fit this model ({detail}). Use a "
                                     f"checkpoint of the same XTTS size, or the matching --base_model_dir.") from e
        optimizers = data[KEY_OPTIMIZER]
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if len(optimizers) != len(self.optimizer):
            raise CheckpointError(f"Checkpoint {self.control.source} has {len(optimizers)} optimizer states; this "
                                     f"run uses {len(self.optimizer)}.")
        for opt, state in zip(self.optimizer, optimizers, strict=True):
            problem = _optimizer_mismatch(opt, state)
            if problem:
                raise CheckpointError(f"Checkpoint {self.control.source} does not fit this model: {problem}.")
            opt.load_state_dict(state)
        schedulers = data.get(KEY_SCHEDULER) or []
        for sched, state in zip([s for s in self.scheduler if s is not None], schedulers, strict=False):
            sched.load_state_dict(state)
        if self.scaler is not None and data.get(KEY_SCALER):
            self.scaler.load_state_dict(data[KEY_SCALER])
        run_state = data.get(KEY_RUN_STATE) or {}
        self.epochs_done = int(data.get(KEY_EPOCH) or 0)
        if run_state:
            self.updates = int(data[KEY_STEP])
            self.total_steps_done = int(run_state["batches_done"])
            self.resume_batch = self.epoch_batch = int(run_state["epoch_batch"])
            self.best_loss = run_state["best_loss"]
            self.keep_avg_state = run_state.get("keep_avg_train")
            set_rng_state(run_state["rng"])
        else:
            # A coqui trainer checkpoint: the optimizer knows how many updates were applied.
            self.updates = optimizer_updates(optimizers)
            self.total_steps_done = self.updates * self.grad_accum_steps
            self.resume_batch = 0
            loss = data.get(KEY_LOSS)
            if isinstance(loss, dict):
                self.best_loss = {"train_loss": _finite(loss.get("train_loss")),
                                  "eval_loss": _finite(loss.get("eval_loss"))}
        self.purge_logs_after(self.total_steps_done)

    def purge_logs_after(self, step: int) -> None:
        """TensorBoard: drop scalars a killed run logged after its last checkpoint, so none appear twice."""
        from torch.utils.tensorboard import SummaryWriter
        from trainer.logging.tensorboard_logger import TensorboardLogger

        if isinstance(self.dashboard_logger, TensorboardLogger):
            self.dashboard_logger.writer.close()
            self.dashboard_logger.writer = SummaryWriter(str(self.output_path), purge_step=step)

    # --- the loop ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        """coqui's train_epoch, starting at the batch the epoch had reached, with a loader built per epoch."""
        self.train_dataset.epoch = self.epochs_done
        start = self.resume_batch
        self.resume_batch = 0
        n_batches = self.batches_per_epoch()
        sampler = FromPositionSampler(len(self.train_dataset), start * self.config.batch_size)
        loader = self._loader(self.train_dataset, batch_size=self.config.batch_size,
                              workers=self.config.num_loader_workers, sampler=sampler,
                              seed=self.control.seed * 100003 + self.epochs_done)
        if start and self.keep_avg_state:
            self.keep_avg_train.avg_values = dict(self.keep_avg_state["avg_values"])
            self.keep_avg_train.iters = dict(self.keep_avg_state["iters"])
        self.keep_avg_state = None
        self.model.train()
        self.callbacks.on_train_epoch_start(self)
        self.c_logger.print_train_start()
        epoch_start = time.time()
        loader_start = time.time()
        for batch_index, batch in enumerate(loader, start=start):
            self.epoch_batch = batch_index + 1
            _, losses = self.train_step(batch, n_batches, batch_index, loader_start)
            self.last_loss = losses.get("loss") if losses else None
            stepped = (batch_index + 1) % self.grad_accum_steps == 0 or batch_index + 1 == n_batches
            if stepped:
                self.after_update()
            loader_start = time.time()
        self.callbacks.on_train_epoch_end(self)
        if self.config.scheduler_after_epoch:
            for idx, scheduler in enumerate(self.scheduler):
                if scheduler is not None and idx in self._stepped_optimizers:
                    scheduler.step()
        self._stepped_optimizers.clear()
        if self.args.rank == 0:
            stats = {"epoch_time": time.time() - epoch_start, **self.keep_avg_train.avg_values}
            self.dashboard_logger.train_epoch_stats(self.total_steps_done, stats)

    def after_update(self) -> None:
        """At an update boundary: report, save on save_step, and stop for max_steps or a requested stop."""
        self.updates += 1
        avg = self.keep_avg_train.avg_values
        self.emit(UpdateEvent(**self.position(), loss=self.last_loss, avg_loss=avg.get("avg_loss"),
                              avg_loss_text_ce=avg.get("avg_loss_text_ce"), avg_loss_mel_ce=avg.get("avg_loss_mel_ce"),
                              lr=self.optimizer[0].param_groups[0]["lr"]))
        self.saves_done(self.writer.poll())
        reached_max = self.control.max_steps is not None and self.updates >= self.control.max_steps
        stop = self.control.stop_requested()
        if self.updates % self.control.save_step == 0 or reached_max or stop:
            self.save_checkpoint()
        if reached_max:
            raise StopTraining(f"reached --max_steps {self.control.max_steps}")
        if stop:
            raise StopTraining("stop requested")

    def _fit(self) -> None:
        """coqui's epoch loop, stopping at max_steps even when it is already reached at the start."""
        if self.control.max_steps is not None and self.updates >= self.control.max_steps:
            self.save_checkpoint()
            raise StopTraining(f"the checkpoint already holds {self.updates} updates (--max_steps "
                               f"{self.control.max_steps})")
        super()._fit()

    def eval_epoch(self) -> None:
        super().eval_epoch()
        if self.keep_avg_eval is not None and "avg_loss" in self.keep_avg_eval.avg_values:
            self.emit(EvalEvent(**self.position(), eval_loss=self.keep_avg_eval.avg_values["avg_loss"]))

    def fit(self) -> str:
        """Train; returns why it ended ("completed" or the StopTraining reason). Errors propagate unchanged and
        the run folder is never deleted (coqui's fit removes folders without checkpoints and exits 1)."""
        try:
            self._fit()
            reason = "completed"
            self.save_checkpoint()  # the final state, after the last evaluation and best-model decision
        except StopTraining as stop:
            reason = stop.reason
        finally:
            try:
                self.saves_done(self.writer.wait())  # the last files are durable before fit returns
            finally:
                self.dashboard_logger.finish()
        return reason

    # --- saving ------------------------------------------------------------------------------------------
    def training_state(self, *, model_loss: dict[str, Any]) -> dict[str, Any]:
        """Everything needed to continue exactly, in the coqui trainer's layout plus our keys."""
        keep = self.keep_avg_train
        return {
            KEY_CONFIG: self.config.to_dict(),
            KEY_MODEL: self.model.state_dict(),
            KEY_OPTIMIZER: [o.state_dict() for o in self.optimizer],
            KEY_SCHEDULER: [s.state_dict() for s in self.scheduler if s is not None],
            KEY_SCALER: self.scaler.state_dict() if self.scaler is not None else None,
            KEY_STEP: self.updates,
            KEY_EPOCH: self.epochs_done,
            KEY_DATE: datetime.date.today().strftime("%B %d, %Y"),
            KEY_LOSS: model_loss,
            KEY_FORMAT: FORMAT_VERSION,
            KEY_VOCAB_SHA: self.control.vocab_sha256,
            KEY_RUN_STATE: {
                "rng": rng_state(),
                "batches_done": self.total_steps_done,
                "epoch_batch": self.epoch_batch,
                "best_loss": self.best_loss,
                "keep_avg_train": {"avg_values": dict(keep.avg_values), "iters": dict(keep.iters)} if keep else None,
                **self.control.extra_state,
            },
        }

    def save_checkpoint(self) -> None:
        """checkpoint_<updates>.pth, atomically; made durable in the background (CheckpointWriter) and
        announced, then the older ones pruned, once it is."""
        if self.args.rank not in (0, None):
            return
        loss = {"train_loss": self._pick_target_avg_loss(self.keep_avg_train),
                "eval_loss": self._pick_target_avg_loss(self.keep_avg_eval)}
        path = checkpoint_path(self.output_path, self.updates)
        self.save(path, loss, CheckpointEvent(**self.position(), path=str(path)))

    def save(self, path: Path, loss: dict[str, Any], event: CheckpointEvent | BestEvent) -> None:
        """Hand the training state to the writer; its event, stamped with this moment's step, follows once the
        file is durable."""
        state = self.training_state(model_loss=loss)
        self.saves_done(self.writer.save(state, path))
        self.announce[path] = event

    def saves_done(self, paths: list[Path]) -> None:
        """Announce files that became durable: a checkpoint (then prune the older ones) or best_model.pth."""
        for path in paths:
            event = self.announce.pop(path)
            self.emit(event)
            if isinstance(event, CheckpointEvent):
                self.last_checkpoint = path
                self.prune_checkpoints()

    def prune_checkpoints(self) -> None:
        """Keep the newest N checkpoint_*.pth of this run; never the file the run started from."""
        own = run_checkpoints(self.output_path)
        protected = {Path(self.control.source).resolve()} if self.control.source else set()
        for old in own[: -self.control.keep_checkpoints]:
            if old.resolve() not in protected:
                old.unlink(missing_ok=True)

    def save_best_model(self) -> None:
        """best_model.pth when the target loss improved; written atomically, so a worse model never replaces it."""
        if self.args.rank not in (0, None):
            return
        eval_loss = self._pick_target_avg_loss(self.keep_avg_eval)
        train_loss = self._pick_target_avg_loss(self.keep_avg_train) or float("inf")
        current = {"train_loss": train_loss, "eval_loss": eval_loss}
        best = self.best_loss
        key = "eval_loss" if current["eval_loss"] is not None and best.get("eval_loss") is not None else "train_loss"
        if current[key] is None or not current[key] < best[key]:
            return
        self.best_loss = current
        logger.info(" > Best model so far (%s %.5f): %s", key, current[key], BEST_MODEL)
        path = self.output_path / BEST_MODEL
        self.save(path, current, BestEvent(**self.position(), path=str(path), **{key: current[key]}))

    def position(self) -> dict[str, Any]:
        """Where training stands, as every event records it."""
        return {"step": self.updates, "total": self.total_updates(), "epoch": self.epochs_done}

    def emit(self, event: Event) -> None:
        self.control.on_event(event)


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("inf")


def _optimizer_mismatch(opt: torch.optim.Optimizer, state: dict[str, Any]) -> str | None:
    """What keeps `state` from fitting `opt` (torch checks group sizes, not shapes), or None."""
    groups = state.get("param_groups", [])
    ours = [len(g["params"]) for g in opt.param_groups]
    theirs = [len(g["params"]) for g in groups]
    if ours != theirs:
        return f"its optimizer has parameter groups of sizes {theirs}, this model {ours}"
    params = [p for g in opt.param_groups for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    for param, pid in zip(params, ids, strict=True):
        avg = state.get("state", {}).get(pid, {}).get("exp_avg")
        if isinstance(avg, torch.Tensor) and avg.shape != param.shape:
            return f"its optimizer holds a moment of shape {tuple(avg.shape)} for a weight of {tuple(param.shape)}"
    return None


__all__ = ["PositionSeededDataset", "RunControl", "RunTrainer", "StopTraining"]
