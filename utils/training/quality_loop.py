"""The trainer's side of quality evaluation and of `--best_by` / `--early_stop`: when to listen, what to report
and record, and when patience runs out. Its state is saved in each checkpoint's run_state, so a resumed run
evaluates at the same steps and continues the patience count exactly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import RUN_STATE_QUALITY
from utils.training.best import BestTracker
from utils.training.events import QualityEvent
from utils.training.quality_eval import QualityEvaluator, QualityReport, QualitySetup, build_evaluator
from utils.xtts import OUTPUT_SAMPLE_RATE


@dataclass
class QualitySchedule:
    """What the options ask: evaluate every `every` updates (0: never), follow `best_by`, stop after
    `early_stop` evaluations without improvement (0: never)."""

    every: int = 0
    best_by: str = "eval_loss"
    early_stop: int = 0


class QualityLoop:
    """Bookkeeping between RunTrainer and QualityEvaluator (which only rank 0 holds). The trainer calls the
    `at_*` hooks on every rank; rank 0 evaluates, reports and saves best_model.pth, and its early-stop decision
    reaches every rank."""

    def __init__(self, schedule: QualitySchedule | None = None, evaluator: QualityEvaluator | None = None) -> None:
        self.schedule = schedule or QualitySchedule()
        self.evaluator = evaluator
        self.tracker = BestTracker(metric=self.schedule.best_by)
        self.latest: dict[str, Any] | None = None  # the latest evaluation's means, with its step
        self.reference: str | None = str(evaluator.reference) if evaluator else None

    @property
    def by_quality(self) -> bool:
        return self.schedule.best_by == "quality"

    def due(self, step: int) -> bool:
        """Every `every` updates, and never twice at one step."""
        return self.schedule.every > 0 and step % self.schedule.every == 0 and not self.done_at(step)

    def done_at(self, step: int) -> bool:
        return self.latest is not None and self.latest.get("step") == step

    # --- hooks the trainer calls ------------------------------------------------------------------------
    def at_start(self, trainer: Any) -> None:
        """A fresh run scores its starting weights (step 0): the zero-shot baseline fine-tuning should beat."""
        if self.schedule.every > 0 and trainer.updates == 0 and not self.done_at(0):
            self.listen(trainer)

    def at_update(self, trainer: Any, *, last: bool) -> bool:
        """After an update: evaluate when due (or at the run's `last` update); True when patience ran out."""
        if not (self.due(trainer.updates) or (last and self.schedule.every > 0 and not self.done_at(trainer.updates))):
            return False
        self.listen(trainer)
        return self.by_quality and self.out_of_patience()

    def at_eval(self, trainer: Any, eval_loss: float | None) -> None:
        """After an evaluation of the eval loss (rank 0): count it when best_model.pth follows the loss."""
        if not self.by_quality and eval_loss is not None:
            self.tracker.offer(trainer.updates, {"eval_loss": eval_loss})

    def at_epoch_end(self) -> bool:
        """True on every rank when the eval loss ran out of patience."""
        return not self.by_quality and self.out_of_patience()

    # --- the work ----------------------------------------------------------------------------------------
    def listen(self, trainer: Any) -> None:
        """Synthesise and score (rank 0), report, and follow the scores for best_model.pth if asked."""
        step = trainer.updates
        self.latest = {"step": step}
        if self.evaluator is None or not trainer.dist.writes:
            return
        report = self.evaluator.evaluate(unwrapped(trainer.model).xtts, step)
        self.latest.update(report.scores())
        trainer.emit(quality_event(report, trainer.position()))
        log_to_dashboard(trainer.dashboard_logger, report, trainer.total_steps_done)
        if self.by_quality and self.tracker.offer(step, report.scores()):
            trainer.save_best(report.scores())

    def out_of_patience(self) -> bool:
        return from_rank0(self.tracker.exhausted(self.schedule.early_stop))

    def stop_reason(self) -> str:
        best = (self.tracker.best or {}).get("step")
        return (f"early stop: {self.schedule.early_stop} evaluations of {self.schedule.best_by} without improvement "
                f"(best at step {best})")

    def state(self) -> dict[str, Any]:
        """What a checkpoint records: the latest scores, the tracker and the reference clip."""
        return {"latest": self.latest, "tracker": self.tracker.to_state(), "reference": self.reference}

    def restore(self, run_state: dict[str, Any]) -> None:
        state = run_state.get(RUN_STATE_QUALITY) or {}
        self.latest = state.get("latest")
        self.tracker = BestTracker.from_state(state.get("tracker"), self.schedule.best_by)


def unwrapped(model: Any) -> Any:
    """The model itself, also when a DDP wrapper holds it."""
    return getattr(model, "module", model)


def recorded_reference(run_state: dict[str, Any] | None) -> str | None:
    """The reference clip a checkpoint's run chose, so a resume scores against the same one."""
    return ((run_state or {}).get(RUN_STATE_QUALITY) or {}).get("reference")


def latest_scores(run_state: dict[str, Any] | None) -> dict[str, Any]:
    """The latest quality means a checkpoint records ({} without any): for listings."""
    return ((run_state or {}).get(RUN_STATE_QUALITY) or {}).get("latest") or {}


def quality_event(report: QualityReport, position: dict[str, Any]) -> QualityEvent:
    data = report.to_dict()
    data.pop("step")
    return QualityEvent(**position, **data)


def log_to_dashboard(logger: Any, report: QualityReport, step: int) -> None:
    """TensorBoard scalars (the means) and audio (each sample), at `step` in the dashboard's own count (batches)."""
    import numpy as np
    import soundfile as sf

    for name, value in report.scores().items():
        if value is not None:
            logger.add_scalar(f"quality/{name}", value, step)
    for i, sample in enumerate(report.samples):
        wav, _ = sf.read(sample.path, dtype="float32")
        logger.add_audio(f"quality/sample_{i:02d}", np.asarray(wav), step, OUTPUT_SAMPLE_RATE)


def from_rank0(value: bool) -> bool:
    """Rank 0's decision on every rank (all ranks stop together); the value itself without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def quality_for_run(opts: Any, run_dir: Path, writes: bool, train_samples: list[dict], eval_samples: list[dict],
                    run_state: dict[str, Any] | None) -> QualityLoop:
    """The run's QualityLoop from its TrainOptions; only the rank that writes loads the scorers (once)."""
    schedule = QualitySchedule(every=opts.quality_every, best_by=opts.best_by, early_stop=opts.early_stop)
    evaluator = None
    if opts.quality_every and writes:
        setup = QualitySetup(opts.whisper_model, opts.quality_sentences, opts.reference_wav, opts.language,
                             opts.seed, run_dir)
        evaluator = build_evaluator(setup, train_samples, eval_samples, recorded_reference(run_state))
    return QualityLoop(schedule, evaluator)
