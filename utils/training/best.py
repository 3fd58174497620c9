"""What "better" means for best_model.pth and early stopping: a lower eval loss, or (`--best_by quality`) better
quality scores. The tracker's state is plain values saved in each checkpoint, so a resumed run continues the
patience count exactly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SIMILARITY_MARGIN = 0.05  # a candidate whose speaker similarity falls further below the best seen never wins
TIE = 1e-9


def quality_better(new: dict[str, Any], best: dict[str, Any], best_similarity: float | None) -> bool:
    """The quality rule: the lowest CER among evaluations whose speaker similarity stays within
    SIMILARITY_MARGIN of the best similarity seen; equal CERs are decided by the higher MOS."""
    cer = new.get("cer")
    if cer is None or not math.isfinite(cer):
        return False
    similarity = new.get("speaker_similarity")
    if best_similarity is not None and (similarity is None or similarity < best_similarity - SIMILARITY_MARGIN):
        return False
    if not best:
        return True
    if cer < best["cer"] - TIE:
        return True
    return abs(cer - best["cer"]) <= TIE and (new.get("mos") or -1.0) > (best.get("mos") or -1.0) + TIE


@dataclass
class BestTracker:
    """The best evaluation so far by `metric` ("eval_loss" or "quality") and how many have not beaten it."""

    metric: str = "eval_loss"
    best: dict[str, Any] | None = None  # {"eval_loss": x} or the quality means, with the step
    best_similarity: float | None = None  # the highest speaker similarity of any quality evaluation
    stale: int = 0  # evaluations since the last improvement

    def offer(self, step: int, scores: dict[str, Any]) -> bool:
        """Record one evaluation of this tracker's metric; True when it is the new best."""
        if self.metric == "quality":
            improved = quality_better(scores, self.best or {}, self.best_similarity)
            similarity = scores.get("speaker_similarity")
            if similarity is not None and (self.best_similarity is None or similarity > self.best_similarity):
                self.best_similarity = similarity
        else:
            loss = scores.get("eval_loss")
            improved = loss is not None and math.isfinite(loss) and (
                self.best is None or loss < self.best["eval_loss"] - TIE)
        if improved:
            self.best, self.stale = {**scores, "step": step}, 0
        else:
            self.stale += 1
        return improved

    def exhausted(self, patience: int) -> bool:
        """True once `patience` (> 0) evaluations in a row did not improve."""
        return patience > 0 and self.stale >= patience

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, metric: str) -> BestTracker:
        """The tracker a checkpoint recorded; a fresh one when it has none or followed another metric."""
        if not state or state.get("metric") != metric:
            return cls(metric=metric)
        return cls(**{k: state[k] for k in ("metric", "best", "best_similarity", "stale") if k in state})
