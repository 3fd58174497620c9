"""GPU memory: gradient checkpointing of the GPT, `--batch_size auto` (the largest batch that fits, found by trial
steps with the dataset's longest clips); the estimate shown before Start is in memory_estimate.py."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from utils.errors import InvalidValue
from utils.training.memory_estimate import AUTO

GIB = 1024**3


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute the GPT blocks' activations in the backward pass (what coqui's `GPT(checkpointing=True)` asks
    transformers for at construction, and XTTS never passes): torch's non-reentrant checkpoint, which replays dropout
    with the forward's RNG state. transformers' public `activation_checkpointing_enable` also hooks the input
    embedding, which XTTS deletes (it feeds its own embeddings), so the per-block switch is set directly."""
    from torch.utils.checkpoint import checkpoint

    gpt2 = model.xtts.gpt.gpt
    gpt2._set_gradient_checkpointing(enable=True, gradient_checkpointing_func=partial(checkpoint, use_reentrant=False))
    gpt2.config.use_cache = False  # a cache is meaningless when training, and transformers refuses both at once


def check_batch_size(batch_size: int | str, cuda: bool | None = None, ranks: int = 1) -> None:
    """`auto` needs a GPU to measure on, and one process (trial steps on several ranks would have to run in lockstep):
    refused in one sentence otherwise, before anything is built."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if batch_size == AUTO and not cuda:
        raise InvalidValue("--batch_size auto measures GPU memory with trial steps and needs a CUDA GPU, and none is "
                           "visible: give a number, e.g. --batch_size 2.")
    if batch_size == AUTO and ranks > 1:
        raise InvalidValue(f"--batch_size auto measures one GPU and this launch has {ranks} ranks: find the batch "
                           f"with a one-GPU start (it prints the choice), then give that number.")


# --- --batch_size auto on a GPU -------------------------------------------------------------------------------
@dataclass
class BatchSearch:
    """The trial steps' outcome: the batch chosen and the peak memory each tried size reached (None: out of memory)."""

    chosen: int
    peaks: dict[int, float | None]

    def describe(self) -> str:
        tried = ", ".join(f"{b}: " + ("out of memory" if p is None else f"{p / GIB:.1f} GiB")
                          for b, p in self.peaks.items())
        return f"--batch_size auto chose {self.chosen} (peak GPU memory per tried batch, with optimizer state: {tried})"


def longest_samples(samples: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The `count` longest clips of the dataset (repeated when it has fewer)."""
    import soundfile as sf

    ranked = sorted(samples, key=lambda s: sf.info(s["audio_file"]).duration, reverse=True)
    return [ranked[i % len(ranked)] for i in range(count)]


def find_batch_size(trainer: Any, samples: list[dict[str, Any]], limit: int, margin: float = 0.9) -> BatchSearch:
    """Double the batch from 1 while a forward and backward pass on the longest clips, plus the optimizer's state,
    stays within `margin` of the GPU's memory; the weights, optimizer and every RNG are left as they were."""
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    state_bytes = optimizer_state_bytes(trainer.optimizer)
    peaks: dict[int, float | None] = {}
    batch = 1
    with _rng_kept():
        while batch <= limit:
            peak = _trial_peak(trainer, longest_samples(samples, batch))
            peaks[batch] = None if peak is None else peak + state_bytes
            if peak is None or peak + state_bytes > margin * total:
                break
            batch *= 2
    fitting = [b for b, p in peaks.items() if p is not None and p <= margin * total]
    if not fitting:
        raise InvalidValue(f"--batch_size auto: not even a batch of 1 with the longest clips fits this GPU "
                           f"({total / GIB:.1f} GiB); try --gradient_checkpointing, --precision bf16, --optimizer "
                           f"adamw8bit, or a lower --max_audio_length.")
    return BatchSearch(max(fitting), peaks)


def _trial_peak(trainer: Any, samples: list[dict[str, Any]]) -> float | None:
    """Peak GPU bytes of one forward and backward on `samples` (None: out of memory); gradients are dropped."""
    loader = trainer.model.get_data_loader(config=trainer.config, is_eval=True, samples=samples, verbose=False)
    dataset = loader.dataset
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        batch = trainer.format_batch(dataset.collate_fn([dataset[i] for i in range(len(samples))]))
        _, losses = trainer._compute_loss(batch=batch, criterion=trainer.criterion[0], optimizer_idx=None)
        losses["loss"].backward()
        return float(torch.cuda.max_memory_allocated())
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        trainer.model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()


class _rng_kept:
    """Python's, numpy's, torch's and CUDA's RNG are the same after the block as before it."""

    def __enter__(self) -> None:
        self.states = (random.getstate(), np.random.get_state(), torch.get_rng_state(), torch.cuda.get_rng_state_all())

    def __exit__(self, *exc: object) -> None:
        py, npy, cpu, cuda = self.states
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        torch.cuda.set_rng_state_all(cuda)


def optimizer_state_bytes(optimizers: list[torch.optim.Optimizer]) -> int:
    """What the optimizer's state will take once its first step made it: two fp32 moments per trained weight
    (AdamW), or about two bytes per weight (8-bit AdamW)."""
    from utils.training.optimizers import ADAMW_8BIT, optimizer_name

    total = 0
    for opt in optimizers:
        per_weight = 2 if optimizer_name(opt) == ADAMW_8BIT else 8
        total += per_weight * sum(p.numel() for g in opt.param_groups for p in g["params"])
    return total
