"""The NaN guard: an optimizer update whose loss or gradient is not finite is skipped (weights, optimizer moments
and LR schedule stay as they were) and reported; after `max_bad_updates` in a row training stops as diverged
(exit 3), saving nothing new, and names the last good checkpoint and the likely causes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DIVERGED_EXIT = 3  # the CLI's exit status for a divergence stop (automatic restarts leave it alone)
LOSS_NOT_FINITE = "the loss was not finite"
GRADIENT_NOT_FINITE = "the gradient was not finite"


@dataclass
class BadUpdate:
    """One skipped update: where, why, and the clips of the batches that went into it."""

    step: int  # updates applied before it
    reason: str
    clips: list[str]


class TrainingDiverged(Exception):
    """K updates in a row were not finite; nothing new was saved. `last_good` is set once pending saves are
    durable, so the message can name the newest checkpoint on disk."""

    exit_code = DIVERGED_EXIT

    def __init__(self, streak: list[BadUpdate], causes: list[str]) -> None:
        super().__init__("training diverged")
        self.streak = streak
        self.causes = causes
        self.last_good: Path | None = None

    def __str__(self) -> str:
        first, last = self.streak[0], self.streak[-1]
        clips = sorted({Path(c).name for bad in self.streak for c in bad.clips})
        shown = ", ".join(clips[:8]) + (f" and {len(clips) - 8} more" if len(clips) > 8 else "")
        last_good = (f"the last good checkpoint is {self.last_good}" if self.last_good
                     else "no checkpoint was saved by this run")
        return (f"Training diverged: {len(self.streak)} updates in a row had a non-finite loss or gradient (the "
                f"update after step {first.step}, {last.reason}), so training stopped and saved nothing new; "
                f"{last_good}. Likely causes: {'; '.join(self.causes)}; the failing batches held {shown}.")


@dataclass
class NanGuard:
    """Tracks the batches of the current update and decides, at its end, whether the update is applied."""

    max_bad: int
    precision: str = "fp32"
    lr: float = 0.0
    window_clips: list[str] = field(default_factory=list)
    window_loss_ok: bool = True
    streak: list[BadUpdate] = field(default_factory=list)
    skipped: bool = False  # the latest update boundary skipped its update

    def note_batch(self, loss: torch.Tensor, clips: Any) -> bool:
        """Record one batch of the update; True when its loss is finite (its losses then count in averages)."""
        ok = bool(torch.isfinite(loss.detach()).all())
        self.window_loss_ok = self.window_loss_ok and ok
        self.window_clips += [str(c) for c in (clips or [])]
        return ok

    def decide(self, grad_norm: torch.Tensor) -> str | None:
        """At the update boundary: why the update must be skipped, or None. The gradient norm is taken after the
        all-reduce (DDP averages gradients in backward), and the flag is all-reduced too, so every rank decides
        alike."""
        loss_ok = self.window_loss_ok
        grad_ok = bool(torch.isfinite(grad_norm))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flags = torch.tensor([float(not loss_ok), float(not grad_ok)], device=grad_norm.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            loss_ok, grad_ok = not bool(flags[0]), not bool(flags[1])
        if not loss_ok:
            return LOSS_NOT_FINITE
        if not grad_ok:
            return GRADIENT_NOT_FINITE
        return None

    def after_update(self, step: int, reason: str | None) -> BadUpdate | None:
        """Close the update's window: a skip extends the streak, an applied update ends it."""
        clips, self.window_clips, self.window_loss_ok = self.window_clips, [], True
        self.skipped = reason is not None
        if reason is None:
            self.streak.clear()
            return None
        bad = BadUpdate(step, reason, clips)
        self.streak.append(bad)
        return bad

    @property
    def diverged(self) -> bool:
        return len(self.streak) >= self.max_bad

    def warning(self, bad: BadUpdate) -> str:
        """The warning event's message for one skipped update."""
        clips = ", ".join(Path(c).name for c in bad.clips) or "unknown clips"
        return (f"Skipped the update after step {bad.step}: {bad.reason} (batch: {clips}); weights, optimizer and "
                f"learning-rate schedule are unchanged ({len(self.streak)} in a row; training stops as diverged "
                f"at {self.max_bad}).")

    def divergence(self) -> TrainingDiverged:
        return TrainingDiverged(list(self.streak), self.likely_causes())

    def likely_causes(self) -> list[str]:
        causes = []
        if self.precision == "fp16":
            causes.append("fp16 overflow (train with --precision bf16 on a GPU that has it, or fp32)")
        causes.append(f"a learning rate too high for this data (--lr {self.lr:g}: try a lower one)")
        causes.append("a bad clip (silent, corrupt or non-finite audio) in the batches named here: check or remove "
                      "them")
        return causes
