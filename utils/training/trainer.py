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
import tempfile
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
    KEY_OPTIMIZER_NAME,
    KEY_RUN_STATE,
    KEY_SCALER,
    KEY_SCHEDULER,
    KEY_STEP,
    KEY_VOCAB_SHA,
    RUN_STATE_QUALITY,
    CheckpointError,
    checkpoint_path,
    run_checkpoints,
)
from utils.checkpoints.write import CheckpointWriter
from utils.options import TrainOptions
from utils.training.ddp import forward as ddp_forward
from utils.training.ddp import weight_gradient, wrap_for_ddp
from utils.training.distributed import Distributed
from utils.training.events import BestEvent, CheckpointEvent, EvalEvent, Event, UpdateEvent, WarningEvent
from utils.training.guard import GRADIENT_NOT_FINITE, NanGuard, TrainingDiverged
from utils.training.optimizers import ADAMW_8BIT, held_optimizer, optimizer_mismatch, optimizer_name, to_8bit
from utils.training.quality_loop import QualityLoop
from utils.training.sampling import (
    EpochShard,
    PositionSeededDataset,
    ShardSampler,
    resume_shard,
    rng_state,
    set_rng_state,
)
from utils.training.trace import RankTrace
from utils.training.weights import holds_tensors, load_weights

logger = logging.getLogger(__name__)


class StopTraining(Exception):
    """Raised at an update boundary once a checkpoint is saved and the run should end (max_steps, a signal, an
    early stop)."""

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
    max_bad_updates: int = 10  # NaN guard: skipped updates in a row before training stops as diverged
    optimizer: str = "adamw"  # adamw (torch) or adamw8bit (bitsandbytes)
    quality: QualityLoop = field(default_factory=QualityLoop)  # quality evaluations, --best_by, --early_stop
    on_event: Callable[[Event], None] = lambda event: None
    stop_requested: Callable[[], bool] = lambda: False
    extra_state: dict[str, Any] = field(default_factory=dict)  # recorded in each checkpoint's run_state


class RunTrainer(Trainer):
    """coqui's Trainer writing into a run folder we chose, with exact stop/resume (see module docstring)."""

    def __init__(self, *args: Any, control: RunControl, dist: Distributed | None = None, **kwargs: Any) -> None:
        self.dist = dist or Distributed()
        control.stop_requested = self.dist.any_of(control.stop_requested)  # all ranks stop at the same update
        self.control = control
        self.updates = 0  # optimizer updates applied in total
        self.epoch_batch = 0  # micro-batches of the current epoch already trained (all ranks together)
        self.epoch_position = 0  # positions of the current epoch already trained (all ranks together)
        self.resume_point: tuple[int | None, int] | None = None  # (global position, micro-batches) of a resume
        self.resuming = False  # True until the first epoch after a resume begins
        self.origin = (0, 0)  # (updates, epoch) this start began with
        self.batch_weight = 1.0  # this rank's share of the current micro-batch (uneven last batches)
        self.sync_gradients = True  # False inside an accumulation window: DDP averages at the update's last batch
        self.ddp: torch.nn.Module | None = None
        self.trace = RankTrace(self.dist.rank)
        self.scratch: tempfile.TemporaryDirectory | None = None  # coqui's files of a rank that does not write
        self.train_dataset: PositionSeededDataset | None = None
        self.writer = CheckpointWriter()
        self.announce: dict[Path, CheckpointEvent | BestEvent] = {}  # per file in flight: its event once durable
        self.last_checkpoint: Path | None = None
        self.keep_avg_state: dict[str, Any] | None = None  # the epoch's running averages at the checkpoint
        self.last_loss: float | None = None  # loss of the latest batch
        self.guard = NanGuard(max_bad=control.max_bad_updates)
        super().__init__(*args, **kwargs)
        self.guard.precision = self.config.precision if self.config.mixed_precision else "fp32"
        self.guard.lr = self.config.lr
        if self.dist.active:
            self.ddp = wrap_for_ddp(self.model, self.optimizer, self.dist)
        self.callbacks.callbacks_on_epoch_end.append(RunTrainer.early_stop_at_epoch_end)

    @classmethod
    def for_run(cls, opts: TrainOptions, config: Any, model: Any, run_dir: Path, train_samples: list[dict],
                eval_samples: list[dict], control: RunControl, dist: Distributed) -> RunTrainer:
        """The trainer for one start, writing into `run_dir`, with its training dataset built. Only rank 0 writes
        there: the other ranks keep the files coqui writes in every process (its config.json copy, log, script
        copy) in a temporary folder of their own, removed when training ends."""
        scratch = None if dist.writes else tempfile.TemporaryDirectory(prefix=f"xtts_ft_rank{dist.rank}_")
        folder = run_dir if scratch is None else Path(scratch.name)
        args = TrainerArgs(continue_path=str(folder), restore_path=None, grad_accum_steps=opts.grad_accum,
                           rank=dist.rank, group_id=dist.group_id, use_ddp=dist.use_ddp)
        trainer = cls(args, config, output_path=str(folder), model=model, train_samples=train_samples,
                      eval_samples=eval_samples, parse_command_line_args=False, control=control, dist=dist)
        trainer.scratch = scratch
        trainer.build_train_dataset()
        return trainer

    # --- setup -------------------------------------------------------------------------------------------
    def setup_training_environment(self, args, config, gpu):
        """coqui takes the visible GPUs for the launch's processes and would set DDP up itself (CUDA only, the
        global rank as GPU index, its wrapper bypassed); with ranks training together we do that instead
        (Distributed.connected, utils/training/ddp.py), so coqui is told of one GPU: this rank's."""
        use_cuda, num_gpus = super().setup_training_environment(args=args, config=config, gpu=gpu)
        return use_cuda, 1 if self.dist.active else num_gpus

    def get_optimizer(self) -> list[torch.optim.Optimizer]:
        """coqui's AdamW over the GPT's two parameter groups, or bitsandbytes' 8-bit AdamW over the same groups."""
        optimizers = super().get_optimizer()
        return [to_8bit(o) for o in optimizers] if self.control.optimizer == ADAMW_8BIT else optimizers

    def init_training(self, args, coqpit_overrides, config=None):
        """coqui reads config.json of `continue_path` over ours and picks the folder's latest checkpoint; we
        use continue_path only to name the run folder, and restore from the exact file ourselves."""
        return config, {}

    def _setup_logger_config(self, log_file: str) -> None:
        """coqui adds a file handler per trainer and never removes it: in a process that trains more than once
        (tests, the self-check) earlier runs' logs would get later lines, or fail once their folder is gone."""
        release_log_files()
        super()._setup_logger_config(log_file)

    def _restore_best_loss(self) -> None:
        """coqui reads the best loss from the wrong file; ours comes from the checkpoint's run_state."""

    def build_train_dataset(self) -> None:
        """Build XTTS's training dataset once (it reseeds python's RNG when built), before RNG is restored."""
        loader = self.model.get_data_loader(config=self.config, is_eval=False, samples=self.train_samples,
                                            verbose=True)
        self.train_dataset = PositionSeededDataset(loader.dataset, self.control.seed)

    def epoch_shard(self, start: int = 0, first_batch: int = 0) -> EpochShard:
        """This rank's part of an epoch (from global position `start`)."""
        return EpochShard(len(self.train_dataset), self.config.batch_size, self.dist.size, self.dist.rank, start,
                          first_batch)

    def batches_per_epoch(self) -> int:
        """Global micro-batches of batch_size x ranks in an epoch."""
        return self.epoch_shard().n_batches

    def updates_per_epoch(self) -> int:
        return -(-self.batches_per_epoch() // self.grad_accum_steps)

    def total_updates(self) -> int:
        """Updates the run will have when complete: those it started with, the rest of the epoch it started in,
        then whole epochs, on this launch's number of ranks."""
        updates, epoch = self.origin
        first = self.first_shard()
        rest = -(-(first.n_batches - first.first_batch) // self.grad_accum_steps)
        later = max(self.config.epochs - epoch - 1, 0) * self.updates_per_epoch()
        planned = updates + (rest + later if epoch < self.config.epochs else 0)
        return min(planned, self.control.max_steps) if self.control.max_steps is not None else planned

    def _loader(self, dataset: Dataset, *, workers: int, seed: int, batch_size: int = 1,
                sampler: Sampler | None = None, batch_sampler: Sampler | None = None) -> DataLoader:
        """A loader with its own generator, so creating it never draws from the global torch RNG."""
        batching = ({"batch_sampler": batch_sampler} if batch_sampler is not None else
                    {"batch_size": batch_size, "sampler": sampler, "shuffle": False, "drop_last": False})
        return DataLoader(dataset, **batching, collate_fn=dataset.collate_fn, num_workers=workers, pin_memory=False,
                          generator=torch.Generator().manual_seed(seed))

    def get_eval_dataloader(self, samples, *, verbose: bool = True) -> DataLoader:
        loader = super().get_eval_dataloader(samples, verbose=verbose)
        return self._loader(loader.dataset, batch_size=self.config.eval_batch_size,
                            workers=self.config.num_eval_loader_workers, sampler=None, seed=self.control.seed)

    # --- resume ------------------------------------------------------------------------------------------
    def restore_training_state(self, data: dict[str, Any]) -> None:
        """Restore everything from one already-loaded training checkpoint, failing loudly on any mismatch. Weights
        the model already adopted (`adopt_weights`, before the trainer was built) are not copied again."""
        if not holds_tensors(self.model, data[KEY_MODEL]):
            load_weights(self.model, data[KEY_MODEL], self.control.source)
        optimizers = data[KEY_OPTIMIZER]
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        held, ours = held_optimizer(data.get(KEY_OPTIMIZER_NAME), optimizers), optimizer_name(self.optimizer[0])
        if held != ours:
            raise CheckpointError(f"Checkpoint {self.control.source} holds {held} optimizer state and this run uses "
                                  f"--optimizer {ours}: resume with --optimizer {held}, or pass --restart to keep "
                                  f"its weights only with a fresh {ours}.")
        if len(optimizers) != len(self.optimizer):
            raise CheckpointError(f"Checkpoint {self.control.source} has {len(optimizers)} optimizer states; this "
                                     f"run uses {len(self.optimizer)}.")
        for opt, state in zip(self.optimizer, optimizers, strict=True):
            problem = optimizer_mismatch(opt, state)
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
            self.resume_at(run_state)
            self.best_loss = run_state["best_loss"]
            self.keep_avg_state = run_state.get("keep_avg_train")
            self.control.quality.restore(run_state)
            ranks = run_state.get("rng_ranks")  # every rank's RNG, in files of several ranks
            set_rng_state(ranks[self.dist.rank] if ranks and len(ranks) == self.dist.size else run_state["rng"])
        else:
            # A coqui trainer checkpoint: the optimizer knows how many updates were applied.
            self.updates = optimizer_updates(optimizers)
            self.total_steps_done = self.updates * self.grad_accum_steps
            loss = data.get(KEY_LOSS)
            if isinstance(loss, dict):
                self.best_loss = {"train_loss": _finite(loss.get("train_loss")),
                                  "eval_loss": _finite(loss.get("eval_loss"))}
        self.origin = (self.updates, self.epochs_done)
        self.purge_logs_after(self.total_steps_done)

    def resume_at(self, run_state: dict[str, Any]) -> None:
        """The epoch's global data position from a checkpoint (files before it had one: micro-batches x batch
        size, one rank), continued on this launch's ranks."""
        batch, position = int(run_state["epoch_batch"]), run_state.get("epoch_position")
        self.resume_point = (None if position is None else int(position), batch)
        self.epoch_batch, self.epoch_position = batch, self.first_shard().start
        self.resuming = True

    def first_shard(self) -> EpochShard:
        """This rank's part of the epoch this start begins in (built when needed: --batch_size auto settles the
        batch size after the restore)."""
        if self.resume_point is None:
            return self.epoch_shard()
        position, batch = self.resume_point
        position = batch * self.config.batch_size if position is None else position
        return resume_shard(len(self.train_dataset), self.config.batch_size, self.dist.size, self.dist.rank,
                            self.grad_accum_steps, position, batch)

    def purge_logs_after(self, step: int) -> None:
        """TensorBoard: drop scalars a killed run logged after its last checkpoint, so none appear twice."""
        from torch.utils.tensorboard import SummaryWriter
        from trainer.logging.tensorboard_logger import TensorboardLogger

        if isinstance(self.dashboard_logger, TensorboardLogger):
            self.dashboard_logger.writer.close()
            self.dashboard_logger.writer = SummaryWriter(str(self.output_path), purge_step=step)

    # --- the loop ----------------------------------------------------------------------------------------
    def train_epoch(self) -> None:
        """coqui's train_epoch over this rank's share of the epoch (EpochShard), from the position the epoch had
        reached, with a loader built per epoch."""
        self.train_dataset.epoch = self.epochs_done
        shard = self.first_shard() if self.resuming else self.epoch_shard()
        self.resuming = False
        start, n_batches = shard.first_batch, shard.n_batches
        self.epoch_batch, self.epoch_position = start, shard.start
        loader = self._loader(self.train_dataset, batch_sampler=ShardSampler(shard),
                              workers=self.config.num_loader_workers,
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
            self.epoch_batch, self.epoch_position = batch_index + 1, shard.bounds(batch_index)[1]
            stepped = (batch_index + 1) % self.grad_accum_steps == 0 or batch_index + 1 == n_batches
            self.batch_weight, self.sync_gradients = shard.weight(batch_index), stepped
            self.trace.batch(shard.positions(batch_index))
            _, losses = self.train_step(batch, n_batches, batch_index, loader_start)
            self.last_loss = losses.get("loss") if losses else None
            if stepped:
                self.trace.update(self.epochs_done, self.updates + 1,
                                  (p for o in self.optimizer for g in o.param_groups for p in g["params"]))
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
        if self.guard.skipped:
            self.after_skipped_update()
            return
        self.updates += 1
        avg = self.keep_avg_train.avg_values
        self.emit(UpdateEvent(**self.position(), loss=self.last_loss, avg_loss=avg.get("avg_loss"),
                              avg_loss_text_ce=avg.get("avg_loss_text_ce"), avg_loss_mel_ce=avg.get("avg_loss_mel_ce"),
                              lr=self.optimizer[0].param_groups[0]["lr"]))
        self.saves_done(self.writer.poll())
        reached_max = self.control.max_steps is not None and self.updates >= self.control.max_steps
        stop = self.control.stop_requested()
        early = self.control.quality.at_update(self, last=reached_max or self.updates >= self.total_updates())
        if self.updates % self.control.save_step == 0 or reached_max or stop or early:
            self.save_checkpoint()
        if early:
            raise StopTraining(self.control.quality.stop_reason())
        if reached_max:
            raise StopTraining(f"reached --max_steps {self.control.max_steps}")
        if stop:
            raise StopTraining("stop requested")

    def after_skipped_update(self) -> None:
        """A skipped update (NaN guard): warn; stop as diverged after K in a row (nothing saved), else honour a
        stop request (the weights are the last good ones, the data position has moved on)."""
        self.emit(WarningEvent(**self.position(), message=self.guard.warning(self.guard.streak[-1])))
        if self.guard.diverged:
            raise self.guard.divergence()
        if self.control.stop_requested():
            self.save_checkpoint()
            raise StopTraining("stop requested")

    def _model_train_step(self, batch: dict[str, Any], criterion: Any, optimizer_idx: int | None = None) -> Any:
        """The forward: through DDP when ranks train together (the backward that follows averages gradients),
        this rank's share of an uneven global batch weighted by its size."""
        if self.ddp is None:
            outputs, losses = super()._model_train_step(batch, criterion, optimizer_idx)
        else:
            outputs, losses = ddp_forward(self.ddp, batch, criterion, sync=self.sync_gradients)
        if losses and self.batch_weight != 1.0:
            losses["loss"] = weight_gradient(losses["loss"], self.batch_weight)
        return outputs, losses

    # --- the optimizer step (NaN guard, grad scaler) -----------------------------------------------------
    def optimize(self, batch: dict[str, Any], optimizer: torch.optim.Optimizer, scaler: Any, criterion: Any,
                 scheduler: Any, *, optimizer_idx: int | None = None, step_optimizer: bool = True,
                 num_optimizers: int = 1) -> tuple[dict[str, Any] | None, dict[str, Any], float]:
        """Forward and backward of one batch, then, at an update boundary, the step unless the NaN guard skips
        it. Backward always runs (under DDP every rank must join the gradient all-reduce). A batch whose loss is
        not finite returns no losses, so the running averages stay finite."""
        started = time.time()
        scaler = scaler if self.use_amp_scaler else None  # as coqui: a scaler scales only where AMP asked for one
        outputs, loss_dict = self._compute_loss(batch=batch, criterion=criterion, optimizer_idx=optimizer_idx)
        if not loss_dict:
            return outputs, {}, time.time() - started
        self.callbacks.before_backward_pass(self, loss_dict)
        loss_dict["loss"] = loss_dict["loss"] / float(self.grad_accum_steps)
        finite = self.guard.note_batch(loss_dict["loss"], batch.get("filenames"))
        (scaler.scale(loss_dict["loss"]) if scaler is not None else loss_dict["loss"]).backward()
        grad_norm: torch.Tensor | float = 0.0
        if step_optimizer:
            grad_norm = self.step_or_skip(optimizer, scaler, scheduler)
        if not finite:
            return outputs, {}, time.time() - started
        detached = self.detach_loss_dict(loss_dict, step_optimizer=step_optimizer, optimizer_idx=optimizer_idx,
                                         grad_norm=grad_norm)
        return outputs, detached, time.time() - started

    def step_or_skip(self, optimizer: torch.optim.Optimizer, scaler: Any, scheduler: Any) -> torch.Tensor | float:
        """Clip, ask the guard, then step the optimizer, scaler and schedule, or leave all three as they were (the
        scaler alone lowers its scale when only the scaled gradients overflowed: that is its job in fp16)."""
        if scaler is not None:
            scaler.unscale_(optimizer)
        self.callbacks.before_gradient_clipping(self)
        params = list(self.master_params(optimizer))
        grad_clip = self._set_grad_clip_per_optimizer(config=self.config, optimizer_idx=None)
        if grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        reason = self.guard.decide(grad_norm)
        self.guard.after_update(self.updates, reason)
        update_lr = True
        if reason is not None:
            if scaler is not None:  # finite loss, overflowed scaled gradients: back off; else keep the scale
                scaler.update(None if reason == GRADIENT_NOT_FINITE else scaler.get_scale())
        elif scaler is not None:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            update_lr = scale <= scaler.get_scale()
        else:
            optimizer.step()
        if reason is None:
            self._stepped_optimizers.add(None)
            if scheduler is not None and update_lr and not self.config.scheduler_after_epoch:
                scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return 0.0 if reason is not None else grad_norm.item()

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
            self.control.quality.at_start(self)
            self._fit()
            reason = "completed"
            self.save_checkpoint()  # the final state, after the last evaluation and best-model decision
        except StopTraining as stop:
            reason = stop.reason
        except TrainingDiverged as diverged:
            self.saves_done(self.writer.wait())  # what was saved before the streak is durable, then named
            diverged.last_good = self.last_checkpoint or (Path(self.control.source) if self.control.source else None)
            raise
        finally:
            try:
                self.saves_done(self.writer.wait())  # the last files are durable before fit returns
            finally:
                self.dashboard_logger.finish()
                release_log_files()
                if self.scratch is not None:  # the temporary folder of a rank that does not write (see for_run)
                    self.scratch.cleanup()
        return reason

    # --- saving ------------------------------------------------------------------------------------------
    def training_state(self, *, model_loss: dict[str, Any], rng_ranks: list[Any] | None = None) -> dict[str, Any]:
        """Everything needed to continue exactly, in the coqui trainer's layout plus our keys (with several ranks:
        the global data position and every rank's RNG)."""
        keep = self.keep_avg_train
        return {
            KEY_CONFIG: self.config.to_dict(),
            KEY_MODEL: self.model.state_dict(),
            KEY_OPTIMIZER: [o.state_dict() for o in self.optimizer],
            KEY_OPTIMIZER_NAME: optimizer_name(self.optimizer[0]),
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
                "epoch_position": self.epoch_position,
                "world_size": self.dist.size,
                **({"rng_ranks": rng_ranks} if rng_ranks else {}),
                "best_loss": self.best_loss,
                "keep_avg_train": {"avg_values": dict(keep.avg_values), "iters": dict(keep.iters)} if keep else None,
                RUN_STATE_QUALITY: self.control.quality.state(),
                **self.control.extra_state,
            },
        }

    def save_checkpoint(self) -> None:
        """checkpoint_<updates>.pth, atomically; made durable in the background (CheckpointWriter) and
        announced, then the older ones pruned, once it is. Every rank calls it at the same update (it gathers
        their RNG states); rank 0 writes."""
        rng_ranks = self.dist.gather(rng_state())
        if self.args.rank not in (0, None):
            return
        loss = {"train_loss": self._pick_target_avg_loss(self.keep_avg_train),
                "eval_loss": self._pick_target_avg_loss(self.keep_avg_eval)}
        path = checkpoint_path(self.output_path, self.updates)
        self.save(path, loss, CheckpointEvent(**self.position(), path=str(path)), rng_ranks=rng_ranks)

    def save(self, path: Path, loss: dict[str, Any], event: CheckpointEvent | BestEvent,
             rng_ranks: list[Any] | None = None) -> None:
        """Hand the training state to the writer; its event, stamped with this moment's step, follows once the
        file is durable."""
        state = self.training_state(model_loss=loss, rng_ranks=rng_ranks)
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
        self.control.quality.at_eval(self, eval_loss)
        if self.control.quality.by_quality:
            return
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

    def save_best(self, scores: dict[str, Any]) -> None:
        """best_model.pth chosen by quality scores (--best_by quality)."""
        path = self.output_path / BEST_MODEL
        loss = {"train_loss": self._pick_target_avg_loss(self.keep_avg_train), "eval_loss": None}
        self.save(path, loss, BestEvent(**self.position(), path=str(path), **scores))

    def early_stop_at_epoch_end(self) -> None:
        """After the epoch's evaluation and best-model decision, on every rank: stop when patience ran out."""
        if self.control.quality.at_epoch_end():
            self.save_checkpoint()
            raise StopTraining(self.control.quality.stop_reason())

    def position(self) -> dict[str, Any]:
        """Where training stands, as every event records it."""
        return {"step": self.updates, "total": self.total_updates(), "epoch": self.epochs_done}

    def emit(self, event: Event) -> None:
        self.control.on_event(event)


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("inf")


def release_log_files() -> None:
    """Close and detach the file handlers coqui's trainer added to its logger."""
    trainer_log = logging.getLogger("trainer")
    for handler in [h for h in trainer_log.handlers if isinstance(h, logging.FileHandler)]:
        trainer_log.removeHandler(handler)
        handler.close()


__all__ = ["PositionSeededDataset", "RunControl", "RunTrainer", "StopTraining"]
